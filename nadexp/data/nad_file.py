"""The NAD file format: an estimate's run directory holds nads.npy (k, C, H, W float32, orthonormal rows in
decreasing order of eigenvalue), eigenvalues.npy and singular_values.npy. Written by estimator=nads, read by
the NAD basis of D(v), the CIFAR-10 variants, sweeps and reports; numpy only, so any layer may read it."""

import math
from pathlib import Path

import numpy as np

from nadexp.errors import ConfigError
from nadexp.results.atomic import write_npy_atomic


def save_nads(run_dir, estimate: dict) -> None:
    """The ``nads``, ``eigenvalues`` and ``singular_values`` arrays of an estimate, into ``run_dir``."""
    run_dir = Path(run_dir)  # each written whole (a reader never sees half an array), nads.npy last
    write_npy_atomic(run_dir / "eigenvalues.npy", np.asarray(estimate["eigenvalues"]))
    write_npy_atomic(run_dir / "singular_values.npy", np.asarray(estimate["singular_values"]))
    write_npy_atomic(run_dir / "nads.npy", np.asarray(estimate["nads"], dtype=np.float32))


def eigenvalues_of(nads_path) -> np.ndarray | None:
    """The eigenvalues saved beside a nads.npy (or in the run directory given), if any."""
    path = Path(nads_path)
    path = (path if path.is_dir() else path.parent) / "eigenvalues.npy"
    return np.load(path, allow_pickle=False) if path.is_file() else None


def load_nads(path, shape=None, option: str = "dataset.nads", rows: bool = False, flat_shape=None) -> np.ndarray:
    """NADs from ``nads.npy`` or from a directory that holds one, checked: a .npy file of floats, (k, C, H, W) of
    ``shape`` if given, unit rows. ``rows``: NADs made elsewhere may be flat rows, reshaped to ``shape`` (else to
    ``flat_shape``). The one reader of NAD files; ConfigError names ``option`` (the setting or flag that gave the path)."""
    path = Path(path)
    if path.is_dir():
        path = path / "nads.npy"
    where = f"{option} {path}" if option.startswith("-") else f"{option}={str(path)!r}"
    if not path.is_file():
        writes = "`python run.py experiment=nads arch=ARCH` writes outputs/nads/ARCH-finite_difference-s0"
        give = "give a nads.npy or the run directory of an estimator=nads run"
        raise ConfigError(f"{where} does not exist: no nads.npy there; {give} ({writes})")
    with open(path, "rb") as handle:
        header = handle.read(6)
    if header != b"\x93NUMPY":  # numpy's own message for this case is advice about pickled data
        raise ConfigError(f"{where} is not a NumPy .npy file (no .npy header): give an estimator=nads run's nads.npy")
    try:
        nads = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ConfigError(f"{where} is not a NumPy .npy file that can be read, it is damaged ({error})") from None
    if rows and np.issubdtype(nads.dtype, np.floating) and nads.ndim >= 2:
        shape = shape if shape is not None else (None if nads.ndim == 4 else flat_shape)
        if shape is not None and len(shape) == 3 and math.prod(nads.shape[1:]) == math.prod(shape):
            nads = nads.reshape(len(nads), *shape)
        elif shape is not None or nads.ndim != 4:
            of = list(shape) if shape is not None and len(shape) == 3 else "(C, H, W)"
            fix = "give --shape C,H,W of the images the NADs are for"
            raise ConfigError(f"{where}: an array of shape {list(nads.shape)} is not rows of NADs of shape {of}: {fix}")
    if nads.ndim != 4 or not np.issubdtype(nads.dtype, np.floating):
        raise ConfigError(f"{where} holds an array of shape {nads.shape} and dtype {nads.dtype}; expected floats of shape (k, C, H, W)")
    if shape is not None and tuple(nads.shape[1:]) != tuple(shape):
        raise ConfigError(f"{where} holds NADs of shape {list(nads.shape[1:])}, but dataset.shape is {list(shape)}")
    norms = np.linalg.norm(nads.reshape(len(nads), -1), axis=1)
    if not np.allclose(norms, 1, atol=1e-3):
        raise ConfigError(f"{where}: its rows are not unit vectors (norms {norms.min():.3g} to {norms.max():.3g}), so they are not NADs")
    return nads
