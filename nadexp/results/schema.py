"""The record schema: what a finished run leaves behind (docs/outputs.md): its result.json, one schema for every
task, built by ``result_record`` and read by ``read_record``, and the cell records of a sweep (CELL_COLUMNS)."""

import contextlib
import json
import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nadexp.results.atomic import write_json_atomic
from nadexp.results.machine import machine, package_versions
from nadexp.run.tasks import TASKS

log = logging.getLogger(__name__)


def training_fields(cfg: DictConfig) -> dict:
    """What identifies one trained (arch, data, seed): a training run's and a sweep cell's first fields."""
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    variant = dataset.get("variant")
    fields = dict(arch=cfg.arch_name, dataset=cfg.dataset_name, basis=dataset.get("basis"), direction=dataset.get("direction"))
    return {**fields, "variant": variant, "nad_index": dataset.get("nad_index") if variant == "poison" else None, "seed": cfg.seed}


def training_metrics(history: list[dict], test_loss: float, test_acc: float, epochs: int, steps: int, wall_time_s: float) -> dict:
    """A trained cell's metrics, whichever engine trained it: the last epoch's train figures, the test split's."""
    last = history[-1] if history else {}
    trained = {"train_acc": last.get("train/acc"), "train_loss": last.get("train/loss")}
    tested = {"test_acc": round(float(test_acc), 6), "test_loss": round(float(test_loss), 6)}
    return {**trained, **tested, "epochs": epochs, "steps": steps, "wall_time_s": round(wall_time_s, 3), "history": history}


# The fields of a cell record that tables (cells.csv, reports) show.
CELL_COLUMNS = ("arch", "basis", "direction", "seed", "status", "train_acc", "test_acc", "test_loss", "wall_time_s", "engine")
CELL_COLUMNS += ("models_at_once", "reason")


def result_record(task: str, cfg: DictConfig, fields: dict, wall_time_s: float) -> dict:
    """The result.json of a ``task`` run of ``cfg``, in the order docs/outputs.md gives; ``fields`` are
    the task's own, with ``summary`` and, unless the task's objective is a field of its own, ``objective``."""
    fields = dict(fields)
    objective = fields.pop("objective", None) if TASKS[task].objective == "objective" else fields.get(TASKS[task].objective)
    head = dict(task=task, arch=cfg.arch_name, seed=fields.pop("seed", cfg.seed), objective=objective, summary=fields.pop("summary", {}))
    body, tf32 = {}, bool(cfg.get("tf32", False))
    for key, value in fields.items():
        body[key] = value
        if key == "dtype":  # the precision policy beside the task's dtype, if it has one
            body["tf32"] = tf32
    body.setdefault("tf32", tf32)
    machine_record = machine(fields.get("device"))  # the GPU that ran, when the task names its device
    return {**head, **body, "wall_time_s": round(wall_time_s, 3), "versions": package_versions(), "machine": machine_record}


CELL_KEYS = ("arch", "basis", "direction", "seed", "status")  # what every cell record holds


class UnreadableRecord(ValueError):
    """A JSON record (result.json, a cell record) that is empty, cut short, not an object or lacks a key it needs."""


def read_record(path, required=()) -> dict:
    """The JSON object in ``path``; UnreadableRecord, naming the file, when it is not one or lacks ``required``."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UnreadableRecord(f"{path} is unreadable ({type(error).__name__}: {error})") from None
    if not isinstance(record, dict):
        raise UnreadableRecord(f"{path} is not a record (a JSON {type(record).__name__})")
    missing = [key for key in required if key not in record]
    if missing:
        raise UnreadableRecord(f"{path} is not a complete record (no {', '.join(missing)})")
    return record


def set_aside(path: Path, error: UnreadableRecord, then: str) -> None:
    """Moves an unreadable record aside, kept as <name>.unreadable (-2, -3, ...), with a warning naming it and what happens ``then``."""
    target, n = path.with_name(f"{path.name}.unreadable"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.unreadable-{n}")
    try:
        os.replace(path, target)
    except FileNotFoundError:  # another process (of the same sweep) set it aside first
        return
    log.warning("%s: kept as %s; %s", error, target.name, then)


def is_failed(record: dict | None) -> bool:
    """Whether ``record`` is the result.json of a run that failed after it started (``record_failure``)."""
    return record is not None and record.get("status") == "failed"


def finished_record(path) -> dict | None:
    """The result.json at ``path`` if it is a finished run's; None when there is none, when that run failed (the
    same command starts it again) or when it is unreadable (with a warning)."""
    path = Path(path)
    record = read_record_or_warn(path) if path.is_file() else None
    return record if record is not None and not is_failed(record) else None


def read_record_or_warn(path, required=()) -> dict | None:
    """``read_record``, or None with a one-line warning for readers that go on without it (reports, dashboards)."""
    try:
        return read_record(path, required)
    except UnreadableRecord as error:
        log.warning("%s: skipped", error)
        return None


def records_below(directory) -> list[tuple[Path, dict]]:
    """(run directory, result.json) of every readable result in ``directory`` and two levels below it (a sweep
    directory, a folder of runs, a multirun's jobs); unreadable ones are skipped with a warning."""
    directory = Path(directory)
    paths = sorted([*directory.glob("result.json"), *directory.glob("*/result.json"), *directory.glob("*/*/result.json")])
    return [(path.parent, record) for path in paths if (record := read_record_or_warn(path)) is not None]


def record_failure(cfg: DictConfig, task: str, error: BaseException, wall_time_s: float) -> None:
    """A run that started (its directory holds config.yaml) and then failed leaves a result.json that says so,
    with the reason, for the summary and the dashboards; the same command later starts it again."""
    from nadexp.devices import is_rank_zero  # (torch: loaded by then, not by the checks that import this module)

    output_dir = Path(cfg.paths.output_dir)
    if not (output_dir / "config.yaml").is_file() or not is_rank_zero():
        return
    reason = f"{type(error).__name__}: {error}".strip().rstrip(":") if str(error) else type(error).__name__
    head = {"task": task, "arch": cfg.get("arch_name"), "seed": cfg.get("seed"), "status": "failed", "reason": reason}
    with contextlib.suppress(OSError):  # a full disk or a read-only folder: the error itself is what the user sees
        write_json_atomic(output_dir / "result.json", {**head, "wall_time_s": round(wall_time_s, 3), "machine": machine()})
