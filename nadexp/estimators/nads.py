"""Neural Anisotropy Directions: principal directions of input gradients over random initialisations."""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from nadexp.errors import ConfigError
from nadexp.estimators.devices import OnDevice
from nadexp.estimators.gradients import autograd_gradients, eval_points, finite_difference_gradients

METHODS = ("finite_difference", "autograd")
EVAL_POINTS = ("fixed", "zero", "per_network")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}
OVERLAP_KS = (1, 10, 100)


def principal_directions(gradients: torch.Tensor, k: Optional[int] = None):
    """PCA of the mean-centred (N, D) gradients, as sklearn's PCA computes it.

    Returns (directions (k, D) with orthonormal rows in decreasing order of eigenvalue, eigenvalues
    = variance of the gradients along each direction, singular values of the centred matrix). Each
    direction's sign is fixed so that its largest-magnitude entry is positive.
    """
    g = gradients.double()
    centred = g - g.mean(0)
    n, dim = centred.shape
    k = min(k or dim, dim)
    covariance = centred.T @ centred / max(n - 1, 1)
    eigenvalues, vectors = torch.linalg.eigh(covariance)
    eigenvalues, vectors = eigenvalues.flip(0)[:k].clamp_min(0), vectors.flip(1)[:, :k].T
    signs = torch.sign(vectors.gather(1, vectors.abs().argmax(1, keepdim=True)))
    vectors = vectors * signs
    singular_values = (eigenvalues * max(n - 1, 1)).sqrt()
    return vectors.float(), eigenvalues, singular_values


def subspace_overlap(a, b, k: int) -> float:
    """Mean squared cosine of the principal angles between the spans of the first k rows of a and b.

    1 for equal spans, 0 for orthogonal ones, about k / D for random k-dimensional subspaces of R^D.
    Rows are flattened and need to be orthonormal (as NADs are).
    """
    a = torch.as_tensor(np.asarray(a)).reshape(len(a), -1)[:k].double()
    b = torch.as_tensor(np.asarray(b)).reshape(len(b), -1)[:k].double()
    return float((a @ b.T).pow(2).sum() / k)


def convergence(gradients: torch.Tensor, ks=OVERLAP_KS) -> dict[str, float]:
    """Overlap of the top-k NADs estimated from two independent halves of the networks."""
    half = len(gradients) // 2
    first, _, _ = principal_directions(gradients[:half])
    second, _, _ = principal_directions(gradients[half:2 * half])
    usable = min(first.shape[1], half - 1)  # a centred half has rank at most half - 1
    return {f"top{k}": round(subspace_overlap(first, second, k), 4) for k in ks if 0 < k <= usable}


@dataclass
class NADEstimator(OnDevice):
    """`estimator=nads`: estimate the NADs of the configured architecture (options in conf/estimator/nads.yaml)."""

    name: str = "nads"
    method: str = "finite_difference"
    num_networks: int = 10_000
    eval_point: str = "fixed"
    scale: float = 100.0
    seed: int = 0
    num_components: Optional[int] = None
    chunk_size: Union[int, str] = "auto"
    networks_per_batch: Union[int, str] = "auto"
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self):
        for option, value, allowed in (("method", self.method, METHODS), ("eval_point", self.eval_point, EVAL_POINTS),
                                       ("dtype", self.dtype, ("auto", *DTYPES))):
            if value not in allowed:
                raise ConfigError(f"estimator.{option}={value!r} is unknown: choose one of {', '.join(allowed)}")
        if self.num_networks < 4:
            raise ConfigError(f"estimator.num_networks must be >= 4 (two halves for the diagnostic), got {self.num_networks}")
        if not self.scale > 0:
            raise ConfigError(f"estimator.scale must be > 0, got {self.scale}")
        for option in ("chunk_size", "networks_per_batch"):
            value = getattr(self, option)
            if value != "auto" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ConfigError(f"estimator.{option} must be auto or an integer >= 1, got {value!r}")
        if self.num_components is not None and self.num_components < 1:
            raise ConfigError(f"estimator.num_components must be >= 1 or null (all), got {self.num_components}")

    def resolved_dtype(self, device: torch.device) -> torch.dtype:
        """auto: bfloat16 where it is fast (CUDA, CPUs with AMX) for finite differences, else float32."""
        if self.dtype != "auto":
            return DTYPES[self.dtype]
        fast_bf16 = device.type == "cuda" or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        return torch.bfloat16 if self.method == "finite_difference" and fast_bf16 else torch.float32

    def gradients(self, make_net: Callable[[], torch.nn.Module], shape) -> torch.Tensor:
        """The (N, D) gradient matrix of ``num_networks`` fresh initialisations of ``make_net()``."""
        device = self.resolved_device()
        torch.manual_seed(self.seed)
        points = eval_points(self.eval_point, tuple(shape), self.num_networks, torch.Generator().manual_seed(self.seed))
        template = make_net().to(device).eval()
        if self.method == "finite_difference":
            return finite_difference_gradients(template, points, self.scale, self.chunk_size,
                                               self.resolved_dtype(device), device, make_net, self.networks_per_batch)
        return autograd_gradients(template, points, self.networks_per_batch, device, make_net)

    def estimate(self, make_net: Callable[[], torch.nn.Module], shape) -> dict:
        start = time.perf_counter()
        gradients = self.gradients(make_net, shape)
        gradient_time = time.perf_counter() - start
        if not gradients.abs().max() > 0:
            raise ConfigError("every input gradient is zero: the network is constant at initialisation, so it has no NADs "
                              "(timm zero-initialises some classifiers, e.g. the MLP-Mixer's: add arch.reset_head=true)")
        nads, eigenvalues, singular_values = principal_directions(gradients, self.num_components)
        diagnostic = convergence(gradients)
        return {
            "nads": nads.reshape(len(nads), *shape).numpy(),
            "eigenvalues": eigenvalues.numpy(),
            "singular_values": singular_values.numpy(),
            "diagnostic": diagnostic,
            "gradient_time_s": round(gradient_time, 3),
            "total_time_s": round(time.perf_counter() - start, 3),
        }


def save_nads(run_dir: Path, estimate: dict) -> None:
    run_dir = Path(run_dir)
    np.save(run_dir / "nads.npy", estimate["nads"].astype(np.float32))
    np.save(run_dir / "eigenvalues.npy", estimate["eigenvalues"])
    np.save(run_dir / "singular_values.npy", estimate["singular_values"])


def spectrum_summary(eigenvalues) -> dict[str, float]:
    """How fast the NAD spectrum decays: the number of NADs holding 90 % of its sum, its effective rank
    (exp of the entropy of the normalised spectrum) and the 10th eigenvalue over the first."""
    values = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0, None)
    if not len(values) or values.sum() <= 0:
        return {}
    share = values / values.sum()
    nonzero = share[share > 0]
    summary = {"components_90": int(np.searchsorted(np.cumsum(share), 0.9) + 1),
               "effective_rank": round(float(np.exp(-(nonzero * np.log(nonzero)).sum())), 4)}
    if len(values) > 10:
        summary["eigenvalue_ratio_10"] = float(values[10] / values[0])
    return summary


def eigenvalues_of(nads_path) -> np.ndarray | None:
    """The eigenvalues saved beside a nads.npy (or in the run directory given), if any."""
    path = Path(nads_path)
    path = (path if path.is_dir() else path.parent) / "eigenvalues.npy"
    return np.load(path, allow_pickle=False) if path.is_file() else None


def load_nads(path, shape=None) -> np.ndarray:
    """NADs from ``nads.npy`` or from a run directory that holds one, checked for shape and orthonormality."""
    path = Path(path)
    if path.is_dir():
        path = path / "nads.npy"
    if not path.is_file():
        raise ConfigError(f"dataset.nads={str(path)!r} does not exist: give a nads.npy or the run directory of an estimator=nads run "
                          "(`python run.py experiment=nads arch=ARCH` writes outputs/nads/ARCH-finite_difference-s0)")
    try:
        nads = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ConfigError(f"dataset.nads={str(path)!r} is not a readable .npy file ({error})") from error
    if nads.ndim != 4 or not np.issubdtype(nads.dtype, np.floating):
        raise ConfigError(f"dataset.nads={str(path)!r} holds an array of shape {nads.shape} and dtype {nads.dtype}; "
                          "expected floats of shape (k, C, H, W)")
    if shape is not None and tuple(nads.shape[1:]) != tuple(shape):
        raise ConfigError(f"dataset.nads={str(path)!r} holds NADs of shape {list(nads.shape[1:])}, "
                          f"but dataset.shape is {list(shape)}")
    norms = np.linalg.norm(nads.reshape(len(nads), -1), axis=1)
    if not np.allclose(norms, 1, atol=1e-3):
        raise ConfigError(f"dataset.nads={str(path)!r} does not hold unit vectors (norms {norms.min():.3g} to {norms.max():.3g})")
    return nads
