"""What a run does, decided in one place from the chosen config groups (``sweep=<basis>``: a direction sweep;
``estimator=<name>``: an estimate; neither: one training run; both: refused), and what each task reads (its
identity, nadexp.run.identity) and uses: a command-line override outside both stops the run, since it would do nothing."""

import contextlib
import netrc
import os
from dataclasses import dataclass
from urllib.parse import urlparse

from omegaconf import DictConfig

from nadexp.errors import ConfigError


@dataclass(frozen=True)
class Task:
    what: str  # for messages: "a direction sweep"
    reads: tuple[str, ...]  # config parts (a group or a dotted key) that decide the numbers
    uses: tuple[str, ...] = ()  # further parts it honours: where and how it runs, what it writes
    sets: tuple[str, ...] = ()  # keys inside ``reads`` that the task sets itself, per cell
    objective: str = "objective"  # the result.json key that run.py returns to Hydra's sweepers


TRAINING = ("arch", "dataset", "optimizer", "scheduler", "trainer", "seed", "tf32")
ESTIMATORS = ("nads", "hyperplanes", "class_density", "fourier_prediction")
TASKS = {
    "train": Task("one training run", TRAINING, uses=("callbacks", "channels_last", "resume"), objective="test_acc"),
    "sweep": Task("a direction sweep", (*TRAINING, "sweep"), ("channels_last",), ("dataset.basis", "dataset.direction"), "mean_test_acc"),
    "nads": Task("estimator=nads", ("arch", "dataset.shape", "estimator", "seed", "tf32"), uses=("resume",)),
    "hyperplanes": Task("estimator=hyperplanes", ("arch", "dataset", "estimator", "seed", "tf32"), uses=("resume",)),
    "class_density": Task("estimator=class_density", ("arch", "estimator", "seed", "tf32"), uses=("resume",)),
    # With spot checks (estimator.spot_checks > 0) it trains a few cells: their training settings decide its numbers too.
    "fourier_prediction": Task("a predicted Fourier map", (*TRAINING, "estimator"), uses=("channels_last", "resume")),
}
# Honoured by every task: which experiment, where outputs go, what is logged, how many CPU threads.
EVERY_TASK = ("experiment", "hydra", "logger", "paths", "threads", "tags")


def decide_task(cfg: DictConfig) -> str:
    """train, sweep or an estimator's name, from the ``sweep`` and ``estimator`` groups."""
    sweep, estimator = cfg.get("sweep") or {}, cfg.get("estimator") or {}
    if sweep and estimator:
        both = f"sweep={sweep.get('basis')} and estimator={estimator.get('name')} both decide what the run does"
        why = "a sweep trains on every direction of a basis; an estimator analyses an architecture"
        raise ConfigError(f"{both} ({why}): choose one, with sweep=none or estimator=none")
    task = "sweep" if sweep else estimator.get("name", "train") if estimator else "train"
    if task not in TASKS:
        raise ConfigError(f"estimator.name={task!r} is unknown: choose one of {', '.join(ESTIMATORS)}")
    return task


def _covers(part: str, key: str) -> bool:
    return key == part or key.startswith(part + ".")


def check_overrides(overrides, task: str) -> None:
    """Every command-line override takes effect in ``task``, or the run stops naming the one that would not."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    spec = TASKS[task]
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group.replace("/", ".")
        if key in ("sweep", "estimator") or any(_covers(part, key) for part in EVERY_TASK):
            continue  # choosing the task's groups is checked by decide_task
        line = override.input_line
        if key == "task":
            raise ConfigError(f"{line}: the task follows from the chosen groups (sweep=..., estimator=...); remove {line}")
        if any(_covers(part, key) for part in spec.sets):
            choose = "choose the cells with sweep.stride, sweep.max_frequency or sweep.indices"
            raise ConfigError(f"{line} has no effect in {spec.what}: the sweep sets each cell's {key.split('.')[-1]} ({choose}); remove it")
        if not any(_covers(part, key) or _covers(key, part) for part in (*spec.reads, *spec.uses)):
            settings = ", ".join(spec.reads + spec.uses)
            raise ConfigError(f"{line} has no effect on {spec.what}, whose settings are {settings}: remove it{_hint(key, task)}")


def _hint(key: str, task: str) -> str:
    if key.split(".")[0] == "trainer" and task in ESTIMATORS:
        return " (estimators choose their device with estimator.device: auto takes a GPU when one is visible)"
    if key.split(".")[0] == "sweep":
        return " (a direction sweep needs sweep=fourier, pixel or nad)"
    if key.split(".")[0] == "estimator":
        return " (choose an estimator with estimator=nads, hyperplanes, class_density or fourier_prediction)"
    return ""


def check_credentials(cfg: DictConfig) -> None:
    """Online W&B without credentials would prompt in a terminal; refuse up front instead."""
    if not (cfg.get("logger") and "wandb" in cfg.logger and not cfg.logger.wandb.get("offline", True)):
        return
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    with contextlib.suppress(FileNotFoundError, netrc.NetrcParseError):
        if os.environ.get("WANDB_API_KEY") or netrc.netrc().authenticators(host):
            return
    keep = "or keep the default logger.wandb.offline=true and `wandb sync` later"
    raise ConfigError(f"logger.wandb.offline=false needs W&B credentials: run `wandb login` or set WANDB_API_KEY ({keep})")


def check_command(cfg: DictConfig, overrides=()) -> str:
    """The task of ``cfg`` after the checks that need neither torch nor files: the chosen groups, every command-line override (it takes
    effect), the precision setting, logger credentials. ConfigError names what to change."""
    task = decide_task(cfg)
    check_overrides(overrides, task)
    if not isinstance(cfg.get("tf32", False), bool):
        raise ConfigError(f"tf32={cfg.tf32!r} must be true or false (TF32 in float32 GPU products)")
    check_credentials(cfg)
    return task
