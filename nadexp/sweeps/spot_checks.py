"""Spot checks: a few cells of an arch's Fourier sweep, trained so that its predicted map can be calibrated on the
arch itself (nadexp.reports.calibration). They are cells of the sweep of the map's grid with the run's training
settings, in that sweep's own directory (trained there by the sweep runner, so the sweep later skips them), or
read from any sweep of the same training settings that holds them already."""

import logging
from functools import partial
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from nadexp.estimators.run import prepare_estimate
from nadexp.run.context import Run
from nadexp.run.identity import CONFIG_DIR, differing, result_settings, settings_suffix
from nadexp.sweeps.runner import SweepPlan, plan, run_sweep
from nadexp.sweeps.store import CellStore

log = logging.getLogger(__name__)


def prepare_prediction(run: Run):
    """estimator=fourier_prediction's prepare step (nadexp.run.execute): the estimator's own checks and, with spot checks,
    the checks of the sweep that trains them (every one before anything is written) and its ``train_cells``."""
    cfg = run.cfg
    estimator, inputs = prepare_estimate(run)
    if estimator.spot_checks:
        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
        sweep_cfg = spot_check_config(cfg, overrides)
        at_once = plan(Run(sweep_cfg, "sweep")).models_at_once
        inputs.update(train_cells=partial(train_spot_checks, sweep_cfg, at_once=at_once), sweep_dir=sweep_cfg.paths.output_dir)
    return estimator, inputs


def spot_check_config(cfg: DictConfig, overrides) -> DictConfig:
    """The Fourier sweep config whose cells a predicted map's spot checks are: the run's own settings (arch,
    dataset, optimizer, trainer, seed) with conf/sweep/fourier.yaml on the map's grid, no estimator, no logger of its
    own; paths.output_dir is the sweep directory of those settings on that grid (outputs/sweeps/<arch>-fourier-
    stride<n>-s<seed>[-<digest>]: experiment=fourier_lenet's for LeNet's default settings)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweep_defaults = OmegaConf.load(CONFIG_DIR / "sweep" / "fourier.yaml")
    sweep_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    stride, max_frequency = cfg.estimator.stride, cfg.estimator.get("max_frequency")
    with open_dict(sweep_cfg):
        sweep_cfg.sweep = OmegaConf.merge(sweep_defaults.sweep, {"stride": stride, "max_frequency": max_frequency})
        sweep_cfg.sweep.label = f"stride{stride}"
        sweep_cfg.trainer = OmegaConf.merge(sweep_cfg.trainer, sweep_defaults.trainer)
        # no estimator; no logger of its own: the prediction's run logs the spot checks with its own result
        sweep_cfg.update(estimator=None, task="sweep", logger=None, resume=False)
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    own = ("experiment", "estimator", "sweep", "logger", "resume")
    grid = ["sweep=fourier", f"sweep.stride={stride}", *([f"sweep.max_frequency={max_frequency}"] if max_frequency is not None else [])]
    kept = [o.input_line for o in parsed if o.key_or_group.split(".")[0] not in own and not o.key_or_group.startswith("hydra")]
    as_sweep = [*grid, *kept]
    # The grid is named by the label (stride<n>), as the experiments that sweep it (experiment=fourier_lenet) name
    # theirs: the digest is of the settings beyond it, so the default settings share that experiment's directory.
    with open_dict(sweep_cfg):
        sweep_cfg.hydra = {"sweeper": {"params": {"sweep.stride": stride, "sweep.max_frequency": max_frequency}}}
    suffix = settings_suffix(sweep_cfg, as_sweep, "sweep")
    with open_dict(sweep_cfg):
        del sweep_cfg.hydra
        name = f"{sweep_cfg.arch_name}-fourier-{sweep_cfg.sweep.label}-s{sweep_cfg.seed}{suffix}"
        sweep_cfg.paths.output_dir = str(Path(cfg.paths.log_dir) / "sweeps" / name)
    return sweep_cfg


def training_settings(cfg: DictConfig) -> dict:
    """The settings that decide a cell's numbers, whichever grid its sweep covers."""
    return {key: value for key, value in result_settings(cfg, "sweep").items() if not key.startswith("sweep.")}


def held_elsewhere(sweep_cfg: DictConfig, keys: list[str]) -> dict[str, tuple[dict, Path]]:
    """{cell key: (record, sweep directory)} of the ``keys`` that a sweep of the same training settings already
    holds, in any directory below outputs/sweeps/ (its own first)."""
    root, own = Path(sweep_cfg.paths.output_dir).parent, Path(sweep_cfg.paths.output_dir)
    ours, found = training_settings(sweep_cfg), {}
    candidates = [own, *sorted(d for d in root.glob("*") if d != own)] if root.is_dir() else []
    for directory in candidates:
        saved = directory / "config.yaml"
        if not (saved.is_file() and (directory / "cells").is_dir()):
            continue
        try:
            theirs = OmegaConf.load(saved)
            if theirs.get("task") != "sweep" or theirs.sweep.get("basis") != "fourier" or differing(ours, training_settings(theirs)):
                continue
        except Exception:  # noqa: BLE001 - a directory we cannot read as a sweep is not one to reuse
            continue
        store = CellStore(directory / "cells")
        for key in keys:
            if key not in found and (record := store.read(key)) is not None and record.get("status") == "ok":
                found[key] = (record, directory)
    return found


def train_spot_checks(sweep_cfg: DictConfig, directions: list, at_once: int) -> dict[tuple[int, int], dict]:
    """{direction: cell record} of ``directions`` ([kx, ky] each): reused where a sweep of the same settings holds
    them, the rest trained into ``sweep_cfg``'s directory as the sweep itself would train them, ``at_once`` stacked
    (nadexp.sweeps.runner.plan, called before anything is written)."""
    keys = {tuple(d): CellStore.key(sweep_cfg.arch_name, "fourier", d, sweep_cfg.seed) for d in directions}
    found = held_elsewhere(sweep_cfg, list(keys.values()))
    missing = [list(d) for d, key in keys.items() if key not in found]
    for direction, key in keys.items():
        if key in found:
            log.info("spot check %s: reused from %s (test accuracy %.4f)", list(direction), found[key][1], found[key][0]["test_acc"])
    if missing:
        cells = [(d, keys[tuple(d)]) for d in missing]
        run_sweep(Run(sweep_cfg, "sweep"), SweepPlan([cells[i : i + at_once] for i in range(0, len(cells), at_once)], at_once))
        store = CellStore(Path(sweep_cfg.paths.output_dir) / "cells")
        found.update({keys[tuple(d)]: (store.read(keys[tuple(d)]), Path(sweep_cfg.paths.output_dir)) for d in missing})
    return {d: {**found[key][0], "source": str(found[key][1])} for d, key in keys.items() if found[key][0] is not None}
