"""A direction sweep inside one job: train the arch on D(v) for every v of a basis, resumably."""

import csv
import logging
import math
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nadexp.errors import ConfigError
from nadexp.estimators.nads import load_nads
from nadexp.loggers import build_loggers, finish_wandb, log_outcome
from nadexp.reports.heatmap import fourier_grid, plot_fourier_heatmap
from nadexp.results import machine, package_versions, write_json_atomic
from nadexp.sweeps.directions import sweep_directions
from nadexp.sweeps.store import CELL_COLUMNS, CellStore
from nadexp.training.train import build, fit_and_test

log = logging.getLogger(__name__)


def cell_config(cfg: DictConfig, direction) -> DictConfig:
    """The training config of one cell: the sweep's config at one direction, with no logger of its own."""
    cell = cfg.copy()
    with open_dict(cell):
        cell.dataset.basis = cfg.sweep.basis
        cell.dataset.direction = list(direction)
        cell.logger = {}
        cell.callbacks = {}
        cell.trainer.enable_progress_bar = False
        cell.sweep = {}
    return cell


def train_cell(cfg: DictConfig) -> dict:
    datamodule, model, trainer = build(cfg)
    record = fit_and_test(cfg, datamodule, model, trainer)
    diverged = not all(math.isfinite(record[k] if record[k] is not None else float("nan")) for k in ("train_loss", "test_loss"))
    record["status"] = "failed" if diverged else "ok"
    if diverged:
        record["reason"] = "loss is not finite (training diverged)"
    return record


CELL_DEFINING = ("arch", "dataset", "optimizer", "scheduler", "seed")
TRAINER_COSMETIC = ("enable_progress_bar", "enable_model_summary", "log_every_n_steps", "default_root_dir")


def _cell_defining(config: dict) -> dict:
    """The parts of a config that decide a cell's numbers (not its loggers, paths or the set of cells)."""
    kept = {key: config.get(key) for key in CELL_DEFINING}
    kept["trainer"] = {k: v for k, v in config.get("trainer", {}).items() if k not in TRAINER_COSMETIC}
    kept["dataset"] = {k: v for k, v in (kept["dataset"] or {}).items() if k != "direction"}
    return kept


def _check_same_sweep(cfg: DictConfig, output_dir: Path) -> None:
    """Resuming is only safe into a directory whose cells were trained with the same settings."""
    saved = output_dir / "config.yaml"
    if not saved.is_file():
        return
    ours = _cell_defining(OmegaConf.to_container(cfg, resolve=True))
    theirs = _cell_defining(OmegaConf.to_container(OmegaConf.load(saved)))
    if ours != theirs:
        raise ConfigError(f"hydra.run.dir={output_dir} holds a sweep with a different config (see its config.yaml); "
                          "choose another run directory or sweep name")


def run_sweep(cfg: DictConfig) -> dict:
    output_dir = Path(cfg.paths.output_dir)
    _check_same_sweep(cfg, output_dir)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    shape = tuple(cfg.dataset.shape)
    num_nads = len(load_nads(cfg.dataset.nads, shape)) if cfg.sweep.basis == "nad" else 0
    directions = sweep_directions(cfg.sweep.basis, shape, cfg.sweep.stride, cfg.sweep.get("indices"), num_nads,
                                  cfg.sweep.get("max_frequency"))
    store = CellStore(f"{output_dir}/cells")
    keys = [CellStore.key(cfg.arch_name, cfg.sweep.basis, d, cfg.seed) for d in directions]
    todo = [(d, k) for d, k in zip(directions, keys) if k not in store]
    log.info("%s sweep of %s: %d directions, %d already done, %d to train -> %s",
             cfg.sweep.basis, cfg.arch_name, len(directions), len(directions) - len(todo), len(todo), output_dir)

    start = time.perf_counter()
    quiet = logging.getLogger("pytorch_lightning")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # no per-cell Lightning banners under the progress bar
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    try:
        with Progress(*columns) as progress:
            task = progress.add_task(f"{cfg.arch_name} {cfg.sweep.basis}", total=len(todo))
            for direction, key in todo:
                store.write(key, train_cell(cell_config(cfg, direction)))
                progress.advance(task)
    finally:
        quiet.setLevel(level)

    records = [r for r in store.records() if r.get("arch") == cfg.arch_name and r.get("seed") == cfg.seed]
    return _report(cfg, records, time.perf_counter() - start)


def _report(cfg: DictConfig, records: list[dict], seconds: float) -> dict:
    output_dir = cfg.paths.output_dir
    with open(f"{output_dir}/cells.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CELL_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    files = ["cells.csv"]
    figures = []
    if cfg.sweep.basis == "fourier":
        _, height, width = cfg.dataset.shape
        grid = fourier_grid(records, height, width)
        figures = plot_fourier_heatmap(grid, f"{output_dir}/heatmap", f"{cfg.arch_name}: test accuracy on D(v), Fourier v",
                                       cfg.sweep.stride)
        files += [p.name for p in figures]
    ok = [r for r in records if r["status"] == "ok"]
    result = {
        "task": "sweep",
        "arch": cfg.arch_name,
        "basis": cfg.sweep.basis,
        "seed": cfg.seed,
        "cells": len(records),
        "cells_ok": len(ok),
        "cells_failed": len(records) - len(ok),
        "mean_test_acc": round(sum(r["test_acc"] for r in ok) / len(ok), 6) if ok else None,
        "wall_time_s": round(seconds, 3),  # this invocation; a resumed sweep only counts the cells it trained
        "cells_wall_time_s": round(sum(r.get("wall_time_s") or 0 for r in records), 3),
        "files": files,
        "versions": package_versions(),
        "machine": machine(),
    }
    write_json_atomic(f"{output_dir}/result.json", result)
    _log(cfg, records, figures)
    if figures:
        log.info("heat map: %s", figures[0])
    log.info("%d cells (%d failed), mean test accuracy %s -> %s/cells.csv",
             result["cells"], result["cells_failed"], result["mean_test_acc"], output_dir)
    return result


def _log(cfg: DictConfig, records: list[dict], figures) -> None:
    loggers = build_loggers(cfg)
    columns = ("arch", "basis", "direction", "seed", "status", "test_acc")
    rows = [[str(r.get(c)) if c == "direction" else r.get(c) for c in columns] for r in records]
    try:
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        log_outcome(loggers, images={"sweep/heatmap": f for f in figures if f.suffix == ".png"},
                    tables={"sweep/cells": (columns, rows)})
    finally:
        finish_wandb(loggers)
