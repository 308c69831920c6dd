"""The trainer, callbacks and logger settings, checked against the signatures of the classes they build before a
run writes anything: a misspelt key, a value of the wrong type (``trainer.max_epochs=abc``), an unknown
accelerator or an impossible count stop the run with one line naming the key, not a traceback from inside
Lightning once training has started."""

import collections.abc
import difflib
import inspect
import types
import typing

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from nadexp.errors import ConfigError

# Counts that Lightning takes as ints or floats but only within a range (-1: no limit, where Lightning allows it).
MINIMUM = {
    "max_epochs": -1,
    "min_epochs": 0,
    "max_steps": -1,
    "min_steps": 0,
    "check_val_every_n_epoch": 1,
    "log_every_n_steps": 1,
    "accumulate_grad_batches": 1,
    "gradient_clip_val": 0,
    "num_sanity_val_steps": -1,
    "num_nodes": 1,
    "limit_train_batches": 0,
    "limit_val_batches": 0,
    "limit_test_batches": 0,
    "limit_predict_batches": 0,
    "val_check_interval": 0,
    "refresh_rate": 0,
}
NONE = type(None)


def fits(value, annotation) -> bool:
    """Whether ``value`` (a plain config value) is of the type ``annotation`` says; types it cannot judge pass."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in (typing.Any, inspect.Parameter.empty):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if annotation is NONE:
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        return isinstance(value, (list, tuple)) and (not args or all(fits(v, args[0]) for v in value))
    if origin in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    if isinstance(annotation, type) and annotation.__module__ == "builtins":
        return isinstance(value, annotation)
    return True  # a class, callable or protocol: only the library can tell


def _type_text(annotation) -> str:
    return str(annotation).replace("typing.", "").replace("NoneType", "null").replace("<class '", "").replace("'>", "")


def check_settings(where: str, node: DictConfig) -> None:
    """Every key of ``node`` (a config with a ``_target_`` class) against that class's __init__: known, of its
    type, and within MINIMUM. ``where`` names the node in messages (trainer, callbacks.snapshots, ...)."""
    values = OmegaConf.to_container(node, resolve=True)
    try:
        target = get_class(values.pop("_target_"))
    except Exception:  # noqa: BLE001 - not a class (a factory function): its own call checks its arguments
        return
    parameters = inspect.signature(target.__init__).parameters
    try:
        hints = typing.get_type_hints(target.__init__)
    except Exception:  # noqa: BLE001 - annotations that do not resolve: keys and ranges are still checked
        hints = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for key, value in values.items():
        if key not in parameters and not takes_any:
            close = difflib.get_close_matches(key, [p for p in parameters if p != "self"], n=3)
            hint = f"close: {', '.join(close)}" if close else f"see {target.__name__}'s arguments"
            raise ConfigError(f"{where}.{key} is not a setting of {target.__name__} ({hint})")
        if key in hints and not fits(value, hints[key]):
            raise ConfigError(f"{where}.{key}={value!r} is not what {target.__name__} takes: {_type_text(hints[key])}")
        if key in MINIMUM and isinstance(value, (int, float)) and not isinstance(value, bool) and value < MINIMUM[key]:
            raise ConfigError(f"{where}.{key} must be >= {MINIMUM[key]}, got {value}")


def check_accelerator(trainer: DictConfig) -> None:
    """trainer.accelerator among Lightning's registered accelerators (or auto, gpu)."""
    accelerator = trainer.get("accelerator")
    if not isinstance(accelerator, str):
        return
    from pytorch_lightning.accelerators import AcceleratorRegistry

    known = sorted({"auto", "gpu", *AcceleratorRegistry.available_accelerators()})
    if accelerator not in known:
        raise ConfigError(f"trainer.accelerator={accelerator!r} is unknown: choose one of {', '.join(known)}")


def check_run_settings(cfg: DictConfig) -> None:
    """The trainer's settings, and those of every callback and logger, before anything is written."""
    if cfg.get("trainer"):
        check_settings("trainer", cfg.trainer)
        check_accelerator(cfg.trainer)
    for group in ("callbacks", "logger"):
        for name, node in (cfg.get(group) or {}).items():
            if isinstance(node, DictConfig) and "_target_" in node:
                check_settings(f"{group}.{name}", node)
