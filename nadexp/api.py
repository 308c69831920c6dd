"""The Python API: the NADs, trained directions and sweeps of any network, from a notebook or a script. Each call runs
the config `python run.py ...` composes for the same settings (the same numbers for a seed); ``model`` is a zoo name,
a dotted path or the class or function itself; ``run_dir`` keeps what the command line writes (else a temporary
folder, removed). Bad arguments raise nadexp.ConfigError (docs/custom_architectures.md)."""

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
from omegaconf import OmegaConf

from nadexp.config import CONFIG_DIR, compose_config
from nadexp.console import quiet_lightning
from nadexp.data.nad_file import eigenvalues_of, load_nads
from nadexp.errors import ConfigError
from nadexp.models.custom import GIVEN, import_target, target_name

Model = Union[str, type, object]
SWEEP_BASES = ("fourier", "pixel", "nad")
LIGHTNING_SEED_VARIABLES = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")  # what Lightning's seed_everything sets
QUIET = ("callbacks=none", "trainer.enable_progress_bar=false")  # a notebook cell prints results, not epochs


@dataclass
class NADs:
    """An NAD estimate: ``nads`` (k, C, H, W) with orthonormal rows in decreasing order of ``eigenvalues``, the
    split-half ``diagnostic`` (overlap of the top-k NADs of two halves of the networks) and the ``settings``."""

    nads: np.ndarray
    eigenvalues: np.ndarray
    diagnostic: dict
    settings: dict
    run_dir: Optional[Path] = None

    def plot(self, out_dir, count: int = 16) -> dict[str, Path]:
        """The figures `experiment=nads` draws (the first ``count`` NADs, their Fourier magnitudes, the spectrum)
        as PNGs in ``out_dir``; returns {name: path}."""
        from nadexp.reports.nad_figures import nad_figures

        Path(out_dir).mkdir(parents=True, exist_ok=True)
        return nad_figures(self.nads, self.eigenvalues, Path(out_dir), label=f"({self.settings.get('arch', '')})", count=count)


@dataclass
class Sweep:
    """A direction sweep: one record per trained direction (``cells``: direction, test_acc, train_acc, status, ...)."""

    basis: str
    shape: tuple
    cells: list[dict]
    settings: dict
    stride: int = 1
    run_dir: Optional[Path] = None
    eigenvalues: Optional[np.ndarray] = field(default=None, repr=False)

    def accuracy(self) -> dict[tuple, float]:
        """{direction: test accuracy} of the cells that trained."""
        return {tuple(c["direction"]): c["test_acc"] for c in self.cells if c.get("status") == "ok"}

    def plot(self, out_dir) -> list[Path]:
        """The sweep's figure as the report command draws it, PNG and PDF in ``out_dir``: the Fourier heat map
        (basis fourier), accuracy along the NADs beside their spectrum (nad) or the pixel map (pixel)."""
        from nadexp.reports.sweep_report import FIGURE_NAMES, basis_figure

        Path(out_dir).mkdir(parents=True, exist_ok=True)
        sweep = {**self.__dict__, "name": f"{self.settings.get('arch', '')}", "shape": list(self.shape)}
        return basis_figure(sweep, Path(out_dir) / FIGURE_NAMES[self.basis])


def _value(value) -> str:
    """A Python value as a Hydra override value."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):  # plain names stay bare (a config group's option); anything else is quoted
        if re.fullmatch(r"[A-Za-z_][\w.\-/]*", value) and value not in ("true", "false", "null"):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"{value!r} cannot be a setting: give numbers, strings, lists or dicts of them")


def arch_overrides(model: Model, model_kwargs: Optional[dict] = None) -> list[str]:
    """The overrides that choose ``model``: arch=<zoo name>, or arch=custom with its target (a class or function
    given as an object is remembered in this process, so it needs no import)."""
    if isinstance(model, str) and (CONFIG_DIR / "arch" / f"{model}.yaml").is_file():
        return [f"arch={model}", *(f"arch.{key}={_value(value)}" for key, value in (model_kwargs or {}).items())]
    if isinstance(model, str):
        if "." not in model:
            zoo = sorted(p.stem for p in (CONFIG_DIR / "arch").glob("*.yaml"))
            raise ConfigError(f"model={model!r} is neither an arch of the zoo ({', '.join(zoo)}) nor a dotted path (mynet.TinyConv)")
        target = model
    elif callable(model):
        target = target_name(model)
        try:
            importable = import_target(target) is model
        except ConfigError:  # defined inside a function, or in a module that is gone
            importable = False
        if importable:  # found by its path, as the command line finds it
            GIVEN.pop(target, None)
        else:
            GIVEN[target] = model
    else:
        raise ConfigError(f"model must be a zoo name, a dotted path, or a class or function; got a {type(model).__name__}")
    return ["arch=custom", f"arch.target={_value(target)}", *([f"arch.kwargs={_value(dict(model_kwargs))}"] if model_kwargs else [])]


def _shape(input_shape) -> list[int]:
    shape = list(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if not shape or len(shape) != 3 or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ConfigError(f"input_shape must be (channels, height, width) of positive integers, got {input_shape!r}")
    return shape


def _settings(settings: Optional[dict]) -> list[str]:
    """Further settings as dotted keys, e.g. {"trainer.max_epochs": 5, "dataset.sigma": 1.0}."""
    return [f"{key}={_value(value)}" for key, value in (settings or {}).items()]


@contextmanager
def process_as_found():
    """The caller's process as it was before a call: the TF32 flags, the random generators (Python's, NumPy's, torch's CPU and CUDA ones,
    Lightning's seed variables), and the GPU allocator's cache emptied after a call that used the GPU (so the next automatic K sees the
    memory free). Torch's threads: nadexp.cores.sharing, around every run."""
    import random

    import torch

    from nadexp.devices import tf32_kept

    python, numpy, seeds = random.getstate(), np.random.get_state(), {k: os.environ.get(k) for k in LIGHTNING_SEED_VARIABLES}
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with tf32_kept(), torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
        os.environ.update({key: value for key, value in seeds.items() if value is not None})
        for key in (key for key, value in seeds.items() if value is None):
            os.environ.pop(key, None)
        if devices:
            torch.cuda.empty_cache()


def run(overrides: list[str], run_dir=None) -> tuple[dict, Path]:
    """Runs `python run.py OVERRIDES` in this process, in ``run_dir`` (a temporary directory when None, removed
    by the caller); returns its result.json and the directory."""
    directory = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="nadexp-"))
    overrides = [*overrides, *(["logger=none"] if not any(o.startswith("logger=") for o in overrides) else [])]
    try:
        with process_as_found():  # around Lightning's first import too, which reseeds from PL_GLOBAL_SEED
            from nadexp.run.execute import execute

            with quiet_lightning():  # on Lightning's loggers, which that import makes
                result = execute(compose_config(overrides, output_dir=directory), overrides)
    except BaseException:
        if run_dir is None:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return result, directory


def _run_with(experiment: str, model, model_kwargs, input_shape, seed, settings, keys: dict, extra=()) -> list[str]:
    """The overrides of a call: its experiment, model, input shape, ``keys`` ({dotted key: value}), seed and settings."""
    keys = {"dataset.shape": _shape(input_shape), **keys, "seed": seed}
    return [f"experiment={experiment}", *arch_overrides(model, model_kwargs), *_settings(keys), *extra, *_settings(settings)]


def nads(
    model: Model, input_shape=(1, 32, 32), *, method: str = "finite_difference", num_networks: int = 10_000, seed: int = 0,
    model_kwargs: Optional[dict] = None, run_dir=None, settings: Optional[dict] = None,
) -> NADs:  # fmt: skip
    """The NADs of ``model`` for inputs of ``input_shape`` (`python run.py experiment=nads`): ``method``
    finite_difference (the published NADs) or autograd (seconds); ``settings`` takes further estimator.* keys."""
    keys = {"estimator.method": method, "estimator.num_networks": num_networks}
    return _run_and_load(_run_with("nads", model, model_kwargs, input_shape, seed, settings, keys), run_dir)


def train_direction(
    model: Model, direction, *, basis: str = "fourier", input_shape=(1, 32, 32), seed: int = 0,
    model_kwargs: Optional[dict] = None, run_dir=None, settings: Optional[dict] = None,
) -> dict:  # fmt: skip
    """Trains ``model`` once on D(v) for one ``direction`` of ``basis`` (`python run.py experiment=single`);
    returns the run's result record (test_acc, train_acc, history, ...). ``settings``: further keys, e.g.
    {"trainer.max_epochs": 5, "dataset.nads": "outputs/nads/lenet-finite_difference-s0"} for basis nad."""
    keys = {"dataset.basis": basis, "dataset.direction": list(direction)}
    result, directory = run(_run_with("single", model, model_kwargs, input_shape, seed, settings, keys, QUIET), run_dir)
    if run_dir is None:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def sweep(
    model: Model, basis: str = "fourier", *, stride: int = 1, input_shape=(1, 32, 32), seed: int = 0, run_dir=None,
    model_kwargs: Optional[dict] = None, settings: Optional[dict] = None,
) -> Sweep:  # fmt: skip
    """Trains ``model`` on every ``stride``-th direction of ``basis`` (`python run.py experiment=single
    sweep=<basis>`); into ``run_dir`` the command line resumes it, and `python -m nadexp.reports` draws it."""
    if basis not in SWEEP_BASES:
        raise ConfigError(f"basis={basis!r} cannot be swept: choose one of {', '.join(SWEEP_BASES)}")
    overrides = _run_with("single", model, model_kwargs, input_shape, seed, settings, {"sweep.stride": stride}, [f"sweep={basis}"])
    return _run_and_load(overrides, run_dir)


def _run_and_load(overrides: list[str], run_dir):
    """The run's outputs as an object; without ``run_dir``, read from the temporary directory, which then goes."""
    _, directory = run(overrides, run_dir)
    if run_dir is not None:
        return load(directory)
    try:
        found = load(directory)
        found.run_dir = None
        return found
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def load(run_dir) -> Union[NADs, Sweep, dict]:
    """A run directory as written by the command line or this API: NADs (estimator=nads), a Sweep (sweep=...),
    else its result record (training runs, other estimators)."""
    from nadexp.reports.sweep_report import is_sweep_dir, load_sweep

    directory = Path(run_dir)
    if not (directory / "config.yaml").is_file():
        raise ConfigError(f"run_dir={str(directory)!r} is not a run directory (no config.yaml)")
    config = OmegaConf.load(directory / "config.yaml")
    settings = {"arch": config.get("arch_name"), "seed": config.get("seed")}
    if (directory / "nads.npy").is_file():
        result, estimator = _result(directory), OmegaConf.to_container(config.estimator, resolve=True)
        diagnostic, settings = (result.get("diagnostic") or {}).get("split_half_overlap", {}), {**settings, **estimator}
        nads = load_nads(directory, option="run_dir")
        return NADs(nads, eigenvalues_of(directory), diagnostic, {**settings, "shape": list(config.dataset.shape)}, run_dir=directory)
    if is_sweep_dir(directory):
        found = load_sweep(directory)
        settings = {**settings, **OmegaConf.to_container(config.sweep, resolve=True)}
        return Sweep(found["basis"], tuple(found["shape"]), found["cells"], settings, found["stride"], directory, found["eigenvalues"])
    return _result(directory)


def _result(directory: Path) -> dict:
    from nadexp.results.schema import UnreadableRecord, read_record

    path = directory / "result.json"
    if not path.is_file():
        raise ConfigError(f"run_dir={str(directory)!r} holds no result.json: the run has not finished (run it again to resume)")
    try:
        return read_record(path)
    except UnreadableRecord as error:
        raise ConfigError(f"{error}: run it again to redo it") from None


__all__ = ["NADs", "Sweep", "nads", "train_direction", "sweep", "load"]
