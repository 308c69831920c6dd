"""The trainer, callbacks and logger settings, checked by the classes they build before a run writes anything: keys
and types against each class's signature, then the values given to the real Trainer and callbacks. A misspelt key,
a wrong type, a ``_target_`` that does not import or a refused value is one line naming the key."""

import collections.abc
import difflib
import importlib
import inspect
import logging
import re
import types
import typing
import warnings
from contextlib import contextmanager

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nadexp.errors import ConfigError
from nadexp.run.tasks import TASKS

# The lowest values of the counts that Lightning takes without a check when it is built and then gets wrong while
# it trains (a negative clip value flips the gradients, 0 batches to accumulate divides by zero); every other
# range is the Trainer's own (tests/test_faults.py checks that Lightning still leaves these unchecked).
UNCHECKED_BY_LIGHTNING = dict(gradient_clip_val=0, accumulate_grad_batches=1, check_val_every_n_epoch=1, log_every_n_steps=1)
UNCHECKED_BY_LIGHTNING.update(num_sanity_val_steps=-1, min_epochs=0, min_steps=0, refresh_rate=0)
# The hardware a config asks for is checked by name (check_accelerator): the trial Trainer runs on this CPU.
HARDWARE = {"accelerator": "cpu", "devices": 1, "strategy": "auto", "num_nodes": 1, "precision": None, "plugins": None}
# How a plain config value is checked against a scalar annotation.
SCALARS = {type(None): lambda v: v is None, bool: lambda v: isinstance(v, bool), str: lambda v: isinstance(v, str)}
SCALARS[int] = lambda v: isinstance(v, int) and not isinstance(v, bool)  # True is no number here
SCALARS[float] = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)


def fits(value, annotation) -> bool:
    """Whether ``value`` (a plain config value) is of the type ``annotation`` says; types it cannot judge pass."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in (typing.Any, inspect.Parameter.empty):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if annotation in SCALARS:
        return SCALARS[annotation](value)
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        return isinstance(value, (list, tuple)) and (not args or all(fits(v, args[0]) for v in value))
    if origin in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    if isinstance(annotation, type) and annotation.__module__ == "builtins":
        return isinstance(value, annotation)
    return True  # a class, callable or protocol: only the library can tell


def check_settings(where: str, node: DictConfig) -> type | None:
    """Every key of ``node`` (a config with a ``_target_``) against its target's signature: known and of its type.
    ``where`` names the node in messages (trainer, callbacks.snapshots, ...). Returns the target."""
    values = OmegaConf.to_container(node, resolve=True)
    path = values.pop("_target_")
    module, _, attribute = str(path).rpartition(".")
    try:
        target = getattr(importlib.import_module(module), attribute)
    except Exception as error:  # noqa: BLE001 - an import error of any kind is one line
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ConfigError(f"{where}._target_={path} does not import ({type(error).__name__}: {reason})") from None
    function = target.__init__ if isinstance(target, type) else target
    parameters = inspect.signature(function).parameters
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - annotations that do not resolve: keys and values are still checked
        hints = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    name = getattr(target, "__name__", path)
    for key, value in values.items():
        if key not in parameters and not takes_any:
            close = difflib.get_close_matches(key, [p for p in parameters if p != "self"], n=3)
            hint = f"close: {', '.join(close)}" if close else f"see {name}'s arguments"
            raise ConfigError(f"{where}.{key} is not a setting of {name} ({hint})")
        if key in hints and not fits(value, hints[key]):
            text = str(hints[key]).replace("typing.", "").replace("NoneType", "null").replace("<class '", "").replace("'>", "")
            raise ConfigError(f"{where}.{key}={value!r} is not what {name} takes: {text}")
        low = UNCHECKED_BY_LIGHTNING.get(key)
        if low is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value < low:
            raise ConfigError(f"{where}.{key} must be >= {low}, got {value}")
    return target


@contextmanager
def _quiet_lightning():
    """The trial Trainer's notices (GPU available, ...) are the real one's to print."""
    logger = logging.getLogger("pytorch_lightning")
    level, logger.level = logger.level, logging.ERROR
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def refused(where: str, node: DictConfig, error: Exception) -> ConfigError:
    """``error`` of a class given ``node``'s values, as one line naming the key it is about where it says."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    key = next((k for k in node if k != "_target_" and re.search(rf"\b{re.escape(str(k))}\b", text)), None)
    named = f"{where}.{key}={OmegaConf.select(node, str(key))!r}" if key else where
    return ConfigError(f"{named}: {str(node._target_).rsplit('.', 1)[-1]} refuses it ({text})")


def build_to_check(where: str, node: DictConfig, **replaced):
    """The object ``node`` describes, built once with ``replaced`` values, to let the class refuse what it refuses."""
    try:
        with _quiet_lightning():
            return instantiate(node, **replaced)
    except Exception as error:  # noqa: BLE001 - Lightning's MisconfigurationException, ValueError, TypeError, ...
        cause = error.__cause__ if error.__cause__ is not None else error  # Hydra wraps what the constructor raised
        raise refused(where, node, cause) from None


def check_accelerator(trainer: DictConfig) -> None:
    """trainer.accelerator among Lightning's registered accelerators (or auto, gpu)."""
    accelerator = trainer.get("accelerator")
    if not isinstance(accelerator, str):
        return
    from pytorch_lightning.accelerators import AcceleratorRegistry

    known = sorted({"auto", "gpu", *AcceleratorRegistry.available_accelerators()})
    if accelerator not in known:
        raise ConfigError(f"trainer.accelerator={accelerator!r} is unknown: choose one of {', '.join(known)}")


def check_run_settings(cfg: DictConfig, task: str) -> None:
    """The logger's settings for every task; the trainer's and the callbacks' for a task that trains, each given to
    its real class. Before anything is written."""
    trains = "trainer" in TASKS[task].reads
    for group in ("callbacks", "logger") if trains else ("logger",):
        for name, node in (cfg.get(group) or {}).items():
            if isinstance(node, DictConfig) and "_target_" in node:
                check_settings(f"{group}.{name}", node)
                if group == "callbacks":
                    build_to_check(f"callbacks.{name}", node)
    if trains and cfg.get("trainer"):
        check_settings("trainer", cfg.trainer)
        check_accelerator(cfg.trainer)
        build_to_check("trainer", cfg.trainer, **HARDWARE, logger=False, callbacks=[], enable_checkpointing=False)
