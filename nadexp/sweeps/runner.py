"""A direction sweep inside one job: train the arch on D(v) for every v of a basis, resumably."""

import gc
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch.utils.flop_counter import FlopCounterMode

from nadexp.cores import share
from nadexp.data.directions import sweep_directions
from nadexp.data.nad_file import eigenvalues_of, load_nads
from nadexp.devices import auto_device, job_index
from nadexp.errors import ConfigError
from nadexp.estimators.wide import layer_inputs
from nadexp.generators import drawing_from
from nadexp.loggers import log_cell, log_outcome
from nadexp.progress import Steps
from nadexp.reports.comparison import comparable, write_comparison
from nadexp.reports.metrics import cell_row, cell_rows, summary_metrics
from nadexp.reports.sweep_report import FIGURE_NAMES, basis_figure, load_sweep
from nadexp.results.atomic import write_csv_atomic, write_json_atomic
from nadexp.results.schema import CELL_COLUMNS, result_record, training_fields
from nadexp.run.context import Run
from nadexp.sweeps.store import CellStore
from nadexp.training.stacked import fit_stacked, stacking_failure, trainer_options, unsupported_trainer_settings
from nadexp.training.train import build, build_data_and_net, fit_and_test, optimization

log = logging.getLogger(__name__)
CLAIM_POLL_S = 2.0  # how often a process looks again at groups that another process is training


def cell_config(cfg: DictConfig, direction) -> DictConfig:
    """The training config of one cell: the sweep's config at one direction, with no logger of its own, on the
    sweep's device (shard i of a sweep on GPU i of the machine's, modulo their number)."""
    cell, device = cfg.copy(), _device(cfg)
    with open_dict(cell):
        cell.dataset.update(basis=cfg.sweep.basis, direction=list(direction))
        cell.update(logger={}, callbacks={}, sweep={})
        cell.trainer.enable_progress_bar = False
        if device.type == "cuda":
            cell.trainer.accelerator, cell.trainer.devices = "gpu", [device.index]
    return cell


def train_cell(cfg: DictConfig) -> dict:
    """One cell trained by Lightning, as a single run of the same config is."""
    datamodule, model, trainer = build(cfg)
    return _with_status({**fit_and_test(cfg, datamodule, model, trainer), "engine": "lightning", "models_at_once": 1})


def _device(cfg: DictConfig) -> torch.device:
    """Where the cells train: the CPU, or the GPU of the sweep's shard or of its job in a local multirun of whole sweeps."""
    accelerator = cfg.trainer.get("accelerator", "auto")
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={accelerator} asks for a GPU, but CUDA sees none: use trainer.accelerator=cpu or auto")
        sharded = (cfg.sweep.get("num_shards") or 1) > 1
        return auto_device(cfg.sweep.get("shard", 0) if sharded else job_index())
    return torch.device("cpu")


# On a CPU, stacking pays only for nets whose step is too small to keep the cores busy, where the per-step
# overhead dominates (benchmarks/sweep.py on 2 cores: LeNet on 16 x 16 images, 87 kFLOP per image, 2.3x faster
# with 16 stacked models; logistic regression about 5x per step; LeNet on 32 x 32 images, 0.83 MFLOP, 0.5x).
CPU_STACKING_MAX_FLOPS = 250_000


def forward_flops(cfg: DictConfig) -> int:
    """FLOPs of the sweep's arch on one image of the dataset's shape (a throwaway net, from a generator of its own)."""
    shape = tuple(cfg.dataset.shape)
    with drawing_from(torch.Generator()):
        net = instantiate(cfg.arch, input_shape=shape, num_classes=2).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, *shape))
    return counter.get_total_flops()


# On a GPU, stacked models share the device's memory: K is what half of the free memory holds, up to this.
GPU_MAX_MODELS_AT_ONCE = 64


def gpu_models_at_once(cfg: DictConfig, device: torch.device) -> int:
    """K for a GPU: how many models half of the device's free memory holds, each with its data (both splits, held
    per model), its parameters, gradients and optimiser state, and the activations of a batch kept for backward."""
    shape = tuple(cfg.dataset.shape)
    with drawing_from(torch.Generator()):
        net = instantiate(cfg.arch, input_shape=shape, num_classes=2)
    params, activations = sum(p.numel() for p in net.parameters()), layer_inputs(net, shape)
    samples = cfg.dataset.get("n_train", 0) + cfg.dataset.get("n_test", 0)
    batch = max(3 * cfg.dataset.batch_size, cfg.dataset.eval_batch_size)
    per_model = 4 * (4 * params + samples * math.prod(shape) + batch * activations)
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(GPU_MAX_MODELS_AT_ONCE, int(free // 2 // per_model)))


def models_at_once(cfg: DictConfig) -> int:
    """How many cells one vectorised step trains (``sweep.models_at_once``; 1: Lightning). auto: what a GPU's free
    memory holds; on a CPU 16 for nets under CPU_STACKING_MAX_FLOPS per image, else 1; and 1 (said in the log) for
    trainer settings the stacked engine does not implement, which an explicit K > 1 refuses."""
    setting, unsupported = cfg.sweep.get("models_at_once", "auto"), unsupported_trainer_settings(cfg.trainer)
    if setting == "auto":
        device = _device(cfg)
        if device.type == "cuda":
            wanted = gpu_models_at_once(cfg, device)
        else:
            wanted = 16 if forward_flops(cfg) < CPU_STACKING_MAX_FLOPS else 1
        if wanted > 1 and unsupported:
            one = "sweep.models_at_once=auto: training one cell at a time with Lightning, since the stacked engine does not implement %s"
            log.info(one, ", ".join(unsupported))
            return 1
        return wanted
    if not isinstance(setting, int) or isinstance(setting, bool) or setting < 1:
        raise ConfigError(f"sweep.models_at_once must be auto or an integer >= 1, got {setting!r}")
    if setting > 1 and unsupported:
        engine = f"sweep.models_at_once={setting} trains with the stacked engine, which does not implement {unsupported[0]}"
        raise ConfigError(f"{engine}: set sweep.models_at_once=1 (Lightning) or remove that setting")
    return setting


def _one_process(cfg: DictConfig) -> None:
    trainer = cfg.trainer
    strategy, devices, nodes = str(trainer.get("strategy", "auto")), str(trainer.get("devices", 1)), trainer.get("num_nodes", 1)
    if "ddp" in strategy or devices != "1" or nodes != 1:
        asked = f"trainer.strategy={strategy}, trainer.devices={devices}, trainer.num_nodes={nodes}"
        shards = "with a multirun of shards instead (-m sweep.num_shards=N sweep.shard=0,1,...,N-1)"
        one = "a sweep trains its cells in one process on one device"
        raise ConfigError(f"{one}, but {asked}: spread a sweep over devices or nodes {shards}")


def _shard(cfg: DictConfig) -> tuple[int, int]:
    shard, num_shards = cfg.sweep.get("shard", 0), cfg.sweep.get("num_shards", 1)
    if not (isinstance(num_shards, int) and num_shards >= 1 and isinstance(shard, int) and 0 <= shard < num_shards):
        must = "sweep.shard must be an integer in [0, sweep.num_shards) and sweep.num_shards >= 1"
        raise ConfigError(f"{must}, got shard={shard!r}, num_shards={num_shards!r}")
    return shard, num_shards


def train_cells_stacked(cfg: DictConfig, directions) -> list[dict]:
    """Train one cell per direction as K stacked models in one vectorised loop; records as train_cell's."""
    device, cells = _device(cfg), [cell_config(cfg, d) for d in directions]
    nets, data, orders = [], [], []
    for cell in cells:  # seeded exactly as a single run of the cell is
        datamodule, net = build_data_and_net(cell)
        nets.append(net.to(device))
        data.append((datamodule.load("train", "cpu"), datamodule.load("test", "cpu")))  # on the device once, stacked
        orders.append(datamodule.shuffle_generator())
    stack = lambda split, i: torch.stack([d[split][i] for d in data]).to(device)  # noqa: E731
    # Dropout is keyed per cell (nadexp.training.keyed_dropout); other random layers draw from the group's stream.
    seed = int(hashlib.sha256(repr([(c.seed, list(c.dataset.direction)) for c in cells]).encode()).hexdigest()[:15], 16)
    options = dict(batch_size=cfg.dataset.batch_size, eval_batch_size=cfg.dataset.eval_batch_size, seed=seed)
    options.update(trainer_options(cfg.trainer), channels_last=cfg.get("channels_last", False))
    train, test = (stack(0, 0), stack(0, 1)), (stack(1, 0), stack(1, 1))
    _, metrics = fit_stacked(nets, train, test, orders, *optimization(cfg), **options)
    engine = {"engine": "stacked", "models_at_once": len(cells)}
    return [_with_status({**training_fields(cell), **metric, **engine}) for cell, metric in zip(cells, metrics)]


def _with_status(record: dict) -> dict:
    diverged = not all(math.isfinite(record[k] if record[k] is not None else float("nan")) for k in ("train_loss", "test_loss"))
    record["status"] = "failed" if diverged else "ok"
    if diverged:
        record["reason"] = "loss is not finite (training diverged)"
    return record


@dataclass
class SweepPlan:
    """The cells of one sweep job (direction, cell key), in the groups that are trained together."""

    groups: list[list[tuple[list[int], str]]]
    models_at_once: int


def plan(run: Run) -> SweepPlan:
    """Every check a sweep can fail on its config (sweep options, dataset values, NAD file, arch, optimizer,
    trainer keys), before anything is written: which cells it trains, and how many at once."""
    cfg = run.cfg
    _one_process(cfg)
    shard, num_shards = _shard(cfg)
    shape = tuple(cfg.dataset.shape)
    num_nads = len(load_nads(cfg.dataset.nads, shape)) if cfg.sweep.basis == "nad" else 0
    grid = (cfg.sweep.stride, cfg.sweep.get("indices"), num_nads, cfg.sweep.get("max_frequency"))
    directions = sweep_directions(cfg.sweep.basis, shape, *grid)
    directions = directions[shard::num_shards]  # parallel jobs of one sweep share its directory, not its cells
    at_once = models_at_once(cfg)
    if directions:  # one cell built as it will be trained: its dataset, network, optimizer (and Lightning trainer)
        first = cell_config(cfg, directions[0])
        if at_once > 1:
            datamodule, net = build_data_and_net(first)
            optimization(first)
            failure = stacking_failure(net, datamodule.input_shape, cfg.get("channels_last", False), _device(cfg))
            if failure and cfg.sweep.get("models_at_once", "auto") != "auto":
                fix = "set sweep.models_at_once=1 or auto"
                raise ConfigError(f"sweep.models_at_once={at_once}: {cfg.arch_name} cannot be trained as stacked models ({failure}); {fix}")
            if failure:
                one = "sweep.models_at_once=auto: %s cannot be trained as stacked models (%s); training one cell at a time with Lightning"
                log.info(one, cfg.arch_name, failure)
                at_once = 1
        if at_once == 1:
            build(first)
    cells = [(d, CellStore.key(cfg.arch_name, cfg.sweep.basis, d, cfg.seed)) for d in directions]
    # Groups are fixed by the sweep, not by what is left to do, so a resumed sweep stacks the cells as an
    # uninterrupted one does (and random layers draw the same masks).
    return SweepPlan([cells[i : i + at_once] for i in range(0, len(cells), at_once)], at_once)


def run_sweep(run: Run, prepared: SweepPlan | None = None) -> dict:
    cfg, sweep = run.cfg, prepared or plan(run)
    output_dir = run.open()  # resumes only a sweep of the same settings
    store = CellStore(f"{output_dir}/cells")
    cells = [cell for group in sweep.groups for cell in group]
    recorded = store.checked()
    done = sum(key in recorded for _, key in cells)
    todo = [group for group in sweep.groups if any(key not in recorded for _, key in group)]
    shard, num_shards = _shard(cfg)
    engine = "Lightning" if sweep.models_at_once == 1 else f"{sweep.models_at_once} stacked models per step"
    sharded = f" (shard {shard} of {num_shards})" if num_shards > 1 else ""
    counts = (len(cells), done, len(cells) - done, engine)
    planned = "%s sweep of %s%s: %d directions, %d already done, %d to train (%s) -> %s"
    log.info(planned, cfg.sweep.basis, cfg.arch_name, sharded, *counts, output_dir)
    start = time.perf_counter()
    eigenvalues = eigenvalues_of(cfg.dataset.nads) if cfg.sweep.basis == "nad" else None
    with run.logging() as loggers:
        # Claims are per cell, so processes that plan other groups (another K) never train a cell twice; a cell's
        # numbers do not depend on the cells it is stacked with (keyed dropout), so any subset trains as one group.
        pending = [[cell for cell in group if cell[1] not in recorded] for group in todo]
        with Steps(f"{cfg.arch_name} {cfg.sweep.basis}", sum(map(len, pending)), "cells") as progress:
            trained_here = 0
            while pending:  # each cell once: claimed, trained, recorded; cells that others hold are waited for
                claimed_one = False
                for group in pending:
                    mine = [cell for cell in group if cell[1] not in store and store.claim(cell[1])]
                    for cell in [c for c in group if c[1] in store]:  # recorded by another process (or just before our claim)
                        group.remove(cell)
                        progress.advance(1, "recorded by another process")
                    for cell in [c for c in mine if c not in group]:
                        store.release(cell[1])
                    mine = [cell for cell in mine if cell in group]
                    if not mine:
                        continue
                    claimed_one = True
                    share()  # the cores, with the other nadexp processes of the moment (nadexp.cores)
                    try:
                        for trained, records in trained_groups(cfg, mine, sweep.models_at_once):
                            for (_, key), record in zip(trained, records):
                                store.write(key, record)
                                done, trained_here = done + 1, trained_here + 1
                                log_cell(loggers, cell_row(record, cfg.dataset.shape, eigenvalues), done, len(cells))
                                acc = record.get("test_acc")
                                progress.advance(1, f"{record['direction']}: test acc {acc:.3f}" if acc is not None else record["status"])
                    finally:
                        for _, key in mine:
                            store.release(key)
                    group[:] = [cell for cell in group if cell not in mine]
                pending = [group for group in pending if group]
                if pending and not claimed_one:
                    time.sleep(CLAIM_POLL_S)  # the rest are another process's: wait for their records
            log.info("%d cells trained by this process, %d recorded by others", trained_here, len(cells) - done)
        if all(key in store for _, key in cells):
            store.remove_orphans()
        records = [r for r in store.records() if r.get("arch") == cfg.arch_name and r.get("seed") == cfg.seed]
        return _report(cfg, records, time.perf_counter() - start, loggers)


# What a GPU says when it runs out of memory: PyTorch's allocator, and cuBLAS/cuDNN allocating their workspaces.
OUT_OF_MEMORY = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED", "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE")


def out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or any(s in str(error) for s in OUT_OF_MEMORY)


def trained_groups(cfg: DictConfig, group: list, at_once: int):
    """(cells, records) of a group as they are trained: the group in one stacked loop, or, when that runs out of
    GPU memory, its two halves in turn (and so on down to one model), so no cell is lost to an OOM."""
    if at_once == 1:
        yield group, [train_cell(cell_config(cfg, group[0][0]))]
        return
    records = None
    try:
        records = train_cells_stacked(cfg, [d for d, _ in group])
    except RuntimeError as error:  # torch.cuda.OutOfMemoryError is one
        if not out_of_memory(error) or len(group) == 1:
            raise
    if records is not None:
        yield group, records
        return
    # Out of the handler: its traceback, which held the failed group's networks, data and optimiser state, is
    # gone, so the memory they took can be given back before the halves start.
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = (len(group) + 1) // 2
    log.warning("out of GPU memory training %d stacked models: training them again as %d and %d", len(group), half, len(group) - half)
    yield from trained_groups(cfg, group[:half], at_once)
    yield from trained_groups(cfg, group[half:], at_once)


def _report(cfg: DictConfig, records: list[dict], seconds: float, loggers=()) -> dict:
    output_dir = cfg.paths.output_dir
    write_csv_atomic(f"{output_dir}/cells.csv", CELL_COLUMNS, records)
    files, sweep = ["cells.csv"], load_sweep(output_dir, records)
    figures = basis_figure(sweep, Path(output_dir) / FIGURE_NAMES[cfg.sweep.basis])
    files += [p.name for p in figures]
    agreement = None
    if comparable(sweep):
        compared, agreement, text = write_comparison(sweep, Path(output_dir) / "published_comparison")
        files += [p.name for p in compared]
        figures += [p for p in compared if p.suffix == ".png"]  # logged beside the heat map
        log.info("against the published %s map (%s):\n%s", sweep["arch"], compared[0], text)
    summary = summary_metrics(records, sweep["basis"], sweep["shape"], sweep["eigenvalues"])
    for name, numbers in (agreement or {}).items():  # how far from the published map, per window
        summary[f"published/{name.split(':')[0]}_mean_abs_difference"] = numbers["mean_abs_difference"]
    fields = dict(summary=summary, basis=cfg.sweep.basis, cells=len(records), cells_ok=summary["cells_ok"])
    fields.update(cells_failed=len(records) - summary["cells_ok"], mean_test_acc=summary.get("mean_test_acc"))
    fields.update(cells_wall_time_s=round(sum(r.get("wall_time_s") or 0 for r in records), 3), files=files)
    fields.update(published_comparison=agreement, device=str(_device(cfg)))  # per window; null without a published map
    result = result_record("sweep", cfg, fields, seconds)
    write_json_atomic(f"{output_dir}/result.json", result)
    columns, rows = cell_rows(records, sweep["basis"], sweep["shape"], sweep["eigenvalues"])
    tables = {"sweep/cells_table": (columns, [[row[c] for c in columns] for row in rows])}
    images = {f"sweep/{f.stem}": f for f in figures if f.suffix == ".png"}
    log_outcome(loggers, cfg, {f"sweep/{key}": value for key, value in summary.items()}, images=images, tables=tables)
    if figures:
        log.info("figure: %s", figures[0])
    counts = (result["cells"], result["cells_failed"], result["mean_test_acc"])
    log.info("%d cells (%d failed), mean test accuracy %s -> %s/cells.csv", *counts, output_dir)
    return result
