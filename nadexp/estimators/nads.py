"""`estimator=nads`: Neural Anisotropy Directions, the principal directions of input gradients over random
initialisations; written as nads.npy (nadexp.data.nad_file) with figures of the first NADs and the spectrum."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from nadexp.data.nad_file import save_nads
from nadexp.errors import ConfigError
from nadexp.estimators.base import Estimator
from nadexp.estimators.gradients import autograd_gradients, eval_points, finite_difference_gradients
from nadexp.generators import drawing_from, seeded
from nadexp.loggers import log_outcome
from nadexp.reports.nad_figures import nad_figures, spectrum_summary
from nadexp.results.schema import UnreadableRecord, read_record
from nadexp.run.context import Run

log = logging.getLogger(__name__)

METHODS = ("finite_difference", "autograd")
# dtype=auto: bfloat16 only for arch families whose bfloat16 NADs were measured to keep float32's (top-10 overlap
# at least BFLOAT16_KEEPS, same networks and x0: benchmarks/bfloat16_nads.py, docs/benchmarks.md); float32 elsewhere.
BFLOAT16_KEEPS = 0.99
BFLOAT16_FAMILIES = ("lenet", "vgg", "resnet", "convnext", "mixer")  # not densenet (0.956), vit (0.438)
FAMILIES = ("logreg", "lenet", "vgg", "resnet", "densenet", "vit", "convnext", "mixer")


def arch_family(arch_name: str) -> str:
    """The family of an arch's run name (lenet_nopool -> lenet, timm-vit_tiny_patch16_224 -> vit), or "other"."""
    name = str(arch_name).lower().split("-")[-1]
    return next((family for family in FAMILIES if name.startswith(family)), "other")


EVAL_POINTS = ("fixed", "zero", "per_network")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}
OVERLAP_KS = (1, 10, 100)


def principal_directions(gradients: torch.Tensor, k: Optional[int] = None):
    """PCA of the mean-centred (N, D) gradients, as sklearn's PCA computes it: (directions (k, D), orthonormal, by
    decreasing eigenvalue and signed so their largest entry is positive; eigenvalues; singular values)."""
    g = gradients.double()
    centred = g - g.mean(0)
    n, dim = centred.shape
    k = min(k or dim, dim)
    covariance = centred.T @ centred / max(n - 1, 1)
    eigenvalues, vectors = torch.linalg.eigh(covariance)
    eigenvalues, vectors = eigenvalues.flip(0)[:k].clamp_min(0), vectors.flip(1)[:, :k].T
    signs = torch.sign(vectors.gather(1, vectors.abs().argmax(1, keepdim=True)))
    vectors, singular_values = vectors * signs, (eigenvalues * max(n - 1, 1)).sqrt()
    return vectors.float(), eigenvalues, singular_values


def subspace_overlap(a, b, k: int) -> float:
    """Mean squared cosine of the principal angles between the spans of the first k (orthonormal, flattened) rows of
    a and b: 1 for equal spans, 0 for orthogonal ones, about k / D for random k-dimensional subspaces of R^D."""
    a = torch.as_tensor(np.asarray(a)).reshape(len(a), -1)[:k].double()
    b = torch.as_tensor(np.asarray(b)).reshape(len(b), -1)[:k].double()
    return float((a @ b.T).pow(2).sum() / k)


def convergence(gradients: torch.Tensor, ks=OVERLAP_KS) -> dict[str, float]:
    """Overlap of the top-k NADs estimated from two independent halves of the networks."""
    half = len(gradients) // 2
    first, _, _ = principal_directions(gradients[:half])
    second, _, _ = principal_directions(gradients[half : 2 * half])
    usable = min(first.shape[1], half - 1)  # a centred half has rank at most half - 1
    return {f"top{k}": round(subspace_overlap(first, second, k), 4) for k in ks if 0 < k <= usable}


@dataclass
class NADEstimator(Estimator):
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
    dtype: str = "float32"
    arch, family = "this arch", "other"  # set by prepare (not fields): what dtype=auto goes by

    def __post_init__(self):
        for option, value, allowed in (("method", self.method, METHODS), ("eval_point", self.eval_point, EVAL_POINTS)):
            if value not in allowed:
                raise ConfigError(f"estimator.{option}={value!r} is unknown: choose one of {', '.join(allowed)}")
        if self.dtype not in ("auto", *DTYPES):
            raise ConfigError(f"estimator.dtype={self.dtype!r} is unknown: choose one of auto, {', '.join(DTYPES)}")
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
        """auto: bfloat16 where it is fast (CUDA, CPUs with AMX), for finite differences, of an arch family measured
        to keep its NADs in bfloat16 (BFLOAT16_FAMILIES); float32 elsewhere."""
        if self.dtype != "auto":
            return DTYPES[self.dtype]
        fast_bf16 = device.type == "cuda" or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        kept = self.family in BFLOAT16_FAMILIES
        return torch.bfloat16 if self.method == "finite_difference" and fast_bf16 and kept else torch.float32

    def say_dtype(self, device: torch.device) -> None:
        if self.dtype == "auto":
            dtype = str(self.resolved_dtype(device)).removeprefix("torch.")
            why = "measured to keep" if self.family in BFLOAT16_FAMILIES else "not measured to keep"
            log.info("estimator.dtype=auto: %s for %s on %s (bfloat16 %s the %s family's NADs)", dtype, self.arch, device, why, self.family)

    def gradients(self, make_net: Callable[[], torch.nn.Module], shape) -> torch.Tensor:
        """The (N, D) gradient matrix of ``num_networks`` fresh initialisations of ``make_net()``."""
        device = self.resolved_device()
        networks = seeded(self.seed)  # the template first, then network 0, 1, ...
        points = eval_points(self.eval_point, tuple(shape), self.num_networks, seeded(self.seed))
        with drawing_from(networks):  # every network is drawn on the CPU and moved to the device to compute
            template = make_net().eval()
        if self.method == "finite_difference":
            self.say_dtype(device)
            dtype, per_batch = self.resolved_dtype(device), self.networks_per_batch
            options = (self.scale, self.chunk_size, dtype, device, make_net, per_batch)
            return finite_difference_gradients(template, points, *options, generator=networks)
        return autograd_gradients(template, points, self.networks_per_batch, device, make_net, generator=networks)

    def estimate(self, make_net: Callable[[], torch.nn.Module], shape) -> dict:
        start = time.perf_counter()
        gradients = self.gradients(make_net, shape)
        gradient_time = time.perf_counter() - start
        if not gradients.abs().max() > 0:
            hint = "timm zero-initialises some classifiers, e.g. the MLP-Mixer's: add arch.reset_head=true"
            raise ConfigError(f"every input gradient is zero: the network is constant at initialisation, so it has no NADs ({hint})")
        nads, eigenvalues, singular_values = principal_directions(gradients, self.num_components)
        found = dict(nads=nads.reshape(len(nads), *shape).numpy(), eigenvalues=eigenvalues.numpy(), singular_values=singular_values.numpy())
        times = dict(gradient_time_s=round(gradient_time, 3), total_time_s=round(time.perf_counter() - start, 3))
        return {**found, "diagnostic": convergence(gradients), **times}

    def prepare(self, cfg: DictConfig) -> Callable[[], torch.nn.Module]:
        """The network factory of cfg.arch for inputs of dataset.shape and one output; a bad arch fails here."""
        if cfg.dataset.get("shape") is None:  # images read from files: the NADs are drawn, of a shape given
            source = cfg.dataset.get("source")
            fix = "keep the default dataset and set dataset.shape (e.g. [1,28,28] for Fashion-MNIST's images)"
            needs = f"estimator={self.name} needs dataset.shape, the [C, H, W] of the inputs it draws"
            raise ConfigError(f"{needs}; dataset={source} gives none: {fix}")
        shape = tuple(cfg.dataset.shape)
        self.arch, self.family = cfg.arch_name, arch_family(cfg.arch_name)  # for dtype=auto
        make_net = lambda: instantiate(cfg.arch, input_shape=shape, num_classes=1)  # noqa: E731
        with drawing_from(torch.Generator()):  # a throwaway network: the estimate's stream is untouched
            make_net()
        self._check_earlier_dtype(Path(cfg.paths.output_dir))
        return make_net

    def _check_earlier_dtype(self, output_dir: Path) -> None:
        """dtype=auto resolves by device: an estimate resumed on another device must not change its precision unseen."""
        earlier = output_dir / "result.json"
        if not earlier.is_file():
            return
        try:
            found = read_record(earlier).get("dtype")
        except UnreadableRecord:
            return
        dtype = str(self.resolved_dtype(self.resolved_device())).removeprefix("torch.")
        if found and found != dtype:
            fix = f"set estimator.dtype={found} to resume it, or estimator.dtype={dtype} for a run directory of its own"
            raise ConfigError(f"estimator.dtype={self.dtype} is {dtype} on this device, but {output_dir} holds a {found} estimate: {fix}")

    def run(self, run: Run, make_net) -> dict:
        cfg, output_dir, loggers = run.cfg, run.folder, run.loggers
        shape = tuple(cfg.dataset.shape)
        found = self.estimate(make_net, shape)
        save_nads(output_dir, found)
        figures = nad_figures(found["nads"], found["eigenvalues"], output_dir, label=f"({cfg.arch_name}, {self.method})")
        spectrum = spectrum_summary(found["eigenvalues"])
        metrics = {f"nads/overlap_{key}": value for key, value in found["diagnostic"].items()}
        metrics.update({f"nads/{key}": value for key, value in spectrum.items()}, **{"nads/gradient_time_s": found["gradient_time_s"]})
        images = {f"nads/{name.removesuffix('.png')}": path for name, path in figures.items()}
        table = (("nad_index", "eigenvalue"), [[index, float(value)] for index, value in enumerate(found["eigenvalues"])])
        log_outcome(loggers, cfg, metrics, images, {"nads/spectrum_table": table})
        device = self.resolved_device()
        message = "%s NADs of %s from %d networks in %.1f s; split-half overlap %s -> %s"
        numbers = (self.num_networks, found["total_time_s"], found["diagnostic"])
        log.info(message, self.method, cfg.arch_name, *numbers, output_dir / "nads.npy")
        summary = {key.removeprefix("nads/"): value for key, value in metrics.items()}
        fields = dict(objective=found["diagnostic"].get("top10"), summary=summary, seed=self.seed, method=self.method)
        scale = self.scale if self.method == "finite_difference" else None
        fields.update(num_networks=self.num_networks, eval_point=self.eval_point, scale=scale)
        fields.update(shape=list(shape), dtype=str(self.resolved_dtype(device)).removeprefix("torch."), device=str(device))
        top = [round(float(v), 8) for v in found["eigenvalues"][:10]]
        fields.update(num_components=len(found["nads"]), diagnostic={"split_half_overlap": found["diagnostic"]}, top_eigenvalues=top)
        files = ["nads.npy", "eigenvalues.npy", "singular_values.npy", *figures]
        return {**fields, "gradient_time_s": found["gradient_time_s"], "files": files}
