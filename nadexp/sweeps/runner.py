"""A direction sweep inside one job: train the arch on D(v) for every v of a basis, resumably."""

import logging
import math
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.flop_counter import FlopCounterMode

from nadexp.errors import ConfigError
from nadexp.estimators.nads import load_nads
from nadexp.loggers import build_loggers, finish_wandb, log_outcome
from nadexp.reports.sweep_report import FIGURE_NAMES, basis_figure, load_sweep
from nadexp.results import (check_same_config, machine, package_versions, write_csv_atomic, write_json_atomic,
                            write_text_atomic)
from nadexp.sweeps.directions import sweep_directions
from nadexp.sweeps.store import CELL_COLUMNS, CellStore
from nadexp.training.stacked import fit_stacked
from nadexp.training.train import build, build_data_and_net, fit_and_test

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
    return _with_status(fit_and_test(cfg, datamodule, model, trainer))


def _device(cfg: DictConfig) -> torch.device:
    accelerator = cfg.trainer.get("accelerator", "auto")
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


# On a CPU, stacking pays only for nets whose step is too small to keep the cores busy, where the per-step
# overhead dominates (benchmarks/sweep.py on 2 cores: LeNet on 16 x 16 images, 87 kFLOP per image, 2.3x faster
# with 16 stacked models; logistic regression about 5x per step; LeNet on 32 x 32 images, 0.83 MFLOP, 0.5x).
CPU_STACKING_MAX_FLOPS = 250_000


def forward_flops(cfg: DictConfig) -> int:
    """FLOPs of the sweep's arch on one image of the dataset's shape (a throwaway net; global RNG untouched)."""
    shape = tuple(cfg.dataset.shape)
    with torch.random.fork_rng(devices=[]), FlopCounterMode(display=False) as counter:
        net = instantiate(cfg.arch, input_shape=shape, num_classes=2).eval()
        with torch.no_grad():
            net(torch.zeros(1, *shape))
    return counter.get_total_flops()


def _float32(cfg: DictConfig) -> bool:
    """Whether the trainer trains in float32, the only precision stacked models train in."""
    return str(cfg.trainer.get("precision", "32-true")) in ("32", "32-true")


def models_at_once(cfg: DictConfig) -> int:
    """How many cells one vectorised step trains: ``sweep.models_at_once``; auto is 16 on a GPU, and on a CPU
    16 for nets under CPU_STACKING_MAX_FLOPS per image (float32 only), 1 otherwise."""
    setting = cfg.sweep.get("models_at_once", "auto")
    if setting == "auto":
        if _device(cfg).type == "cuda":
            return 16
        return 16 if _float32(cfg) and forward_flops(cfg) < CPU_STACKING_MAX_FLOPS else 1
    if not isinstance(setting, int) or setting < 1:
        raise ConfigError(f"sweep.models_at_once must be auto or an integer >= 1, got {setting!r}")
    return setting


def _shard(cfg: DictConfig) -> tuple[int, int]:
    shard, num_shards = cfg.sweep.get("shard", 0), cfg.sweep.get("num_shards", 1)
    if not (isinstance(num_shards, int) and num_shards >= 1 and isinstance(shard, int) and 0 <= shard < num_shards):
        raise ConfigError(f"sweep.shard must be an integer in [0, sweep.num_shards) and sweep.num_shards >= 1, "
                          f"got shard={shard!r}, num_shards={num_shards!r}")
    return shard, num_shards


def train_cells_stacked(cfg: DictConfig, directions) -> list[dict]:
    """Train one cell per direction as K stacked models in one vectorised loop; records as train_cell's."""
    if not _float32(cfg):
        raise ConfigError(f"sweep.models_at_once > 1 trains in float32; trainer.precision={cfg.trainer.precision} "
                          "needs sweep.models_at_once=1")
    device = _device(cfg)
    cells = [cell_config(cfg, d) for d in directions]
    nets, data, orders = [], [], []
    for cell in cells:  # seeded exactly as a single run of the cell is
        datamodule, net = build_data_and_net(cell)
        nets.append(net.to(device))
        data.append((datamodule.load("train", device), datamodule.load("test", device)))
        orders.append(datamodule.shuffle_generator())
    stack = lambda split, i: torch.stack([d[split][i] for d in data])
    trainer = cfg.trainer
    _, metrics = fit_stacked(
        nets, (stack(0, 0), stack(0, 1)), (stack(1, 0), stack(1, 1)), orders,
        instantiate(cfg.optimizer), instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        epochs=trainer.max_epochs, batch_size=cfg.dataset.batch_size, eval_batch_size=cfg.dataset.eval_batch_size,
        clip_norm=trainer.get("gradient_clip_val") if trainer.get("gradient_clip_algorithm", "norm") == "norm" else None,
        test_every=trainer.get("check_val_every_n_epoch") or 0)
    records = []
    for cell, metric in zip(cells, metrics):
        record = {"arch": cell.arch_name, "dataset": cell.dataset_name, "basis": cell.dataset.basis,
                  "direction": list(cell.dataset.direction), "seed": cell.seed, **metric, "models_at_once": len(cells)}
        records.append(_with_status(record))
    return records


def _with_status(record: dict) -> dict:
    diverged = not all(math.isfinite(record[k] if record[k] is not None else float("nan")) for k in ("train_loss", "test_loss"))
    record["status"] = "failed" if diverged else "ok"
    if diverged:
        record["reason"] = "loss is not finite (training diverged)"
    return record


def run_sweep(cfg: DictConfig) -> dict:
    output_dir = Path(cfg.paths.output_dir)
    at_once = models_at_once(cfg)
    shard, num_shards = _shard(cfg)
    check_same_config(cfg, output_dir, dataset_ignore=("direction",))  # resume only a sweep of the same settings
    write_text_atomic(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    shape = tuple(cfg.dataset.shape)
    num_nads = len(load_nads(cfg.dataset.nads, shape)) if cfg.sweep.basis == "nad" else 0
    directions = sweep_directions(cfg.sweep.basis, shape, cfg.sweep.stride, cfg.sweep.get("indices"), num_nads,
                                  cfg.sweep.get("max_frequency"))
    store = CellStore(f"{output_dir}/cells")
    directions = directions[shard::num_shards]  # parallel jobs of one sweep share its directory, not its cells
    keys = [CellStore.key(cfg.arch_name, cfg.sweep.basis, d, cfg.seed) for d in directions]
    todo = [(d, k) for d, k in zip(directions, keys) if k not in store]
    log.info("%s sweep of %s%s: %d directions, %d already done, %d to train -> %s", cfg.sweep.basis, cfg.arch_name,
             f" (shard {shard} of {num_shards})" if num_shards > 1 else "", len(directions), len(directions) - len(todo),
             len(todo), output_dir)

    start = time.perf_counter()
    quiet = logging.getLogger("pytorch_lightning")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # no per-cell Lightning banners under the progress bar
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    try:
        with Progress(*columns) as progress:
            task = progress.add_task(f"{cfg.arch_name} {cfg.sweep.basis}", total=len(todo))
            for group in range(0, len(todo), at_once):
                chunk = todo[group:group + at_once]
                if at_once == 1:
                    records = [train_cell(cell_config(cfg, chunk[0][0]))]
                else:
                    records = train_cells_stacked(cfg, [d for d, _ in chunk])
                for (_, key), record in zip(chunk, records):
                    store.write(key, record)
                progress.advance(task, len(chunk))
    finally:
        quiet.setLevel(level)

    records = [r for r in store.records() if r.get("arch") == cfg.arch_name and r.get("seed") == cfg.seed]
    return _report(cfg, records, time.perf_counter() - start)


def _report(cfg: DictConfig, records: list[dict], seconds: float) -> dict:
    output_dir = cfg.paths.output_dir
    write_csv_atomic(f"{output_dir}/cells.csv", CELL_COLUMNS, records)
    files = ["cells.csv"]
    figures = basis_figure(load_sweep(output_dir, records), Path(output_dir) / FIGURE_NAMES[cfg.sweep.basis])
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
        log.info("figure: %s", figures[0])
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
        log_outcome(loggers, images={f"sweep/{f.stem}": f for f in figures if f.suffix == ".png"},
                    tables={"sweep/cells": (columns, rows)})
    finally:
        finish_wandb(loggers)
