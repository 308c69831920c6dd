"""`arch=custom arch.target=mypkg.MyNet`: a user's own network, built as the zoo's are: a class or function taking
``(input_shape, num_classes, **arch.kwargs)``, found by its dotted path (the current directory included) or among
the factories handed to the Python API, and checked by one forward pass (docs/custom_architectures.md)."""

import importlib
import inspect
import os
import sys

from torch import nn

from nadexp.errors import ConfigError
from nadexp.models.library import checked_model, plain_kwargs

GIVEN: dict[str, object] = {}  # factories handed to the Python API, by the name their runs carry


def target_name(factory) -> str:
    """The dotted path that names ``factory`` in configs: module.qualname (``__main__.TinyConv`` in a notebook)."""
    return f"{factory.__module__}.{factory.__qualname__}"


def import_target(target: str):
    """The class or function at the dotted path ``target`` (the current directory counts as on the path, as it does for `python -c`)."""
    module_name, _, attribute = str(target).rpartition(".")
    if not module_name:
        raise ConfigError(f"arch.target={target!r} is not a dotted path: give module.ClassName, e.g. mynet.TinyConv")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - a missing module or one that fails on import: say which
        fix = f"put {module_name.split('.')[0]} on PYTHONPATH, install it, or run from its folder"
        raise ConfigError(f"arch.target={target!r} does not import ({type(error).__name__}: {error}): {fix}") from None
    found = module
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise ConfigError(f"arch.target={target!r}: module {module_name} has no {attribute}")
    if not callable(found):
        raise ConfigError(f"arch.target={target!r} is not a class or function (a {type(found).__name__})")
    return found


def custom_model(input_shape, num_classes: int, target: str, kwargs=None) -> nn.Module:
    """``target(input_shape=..., num_classes=..., **kwargs)``, checked on a blank batch of ``input_shape``."""
    factory = GIVEN[target] if target in GIVEN else import_target(target)  # handed to the API in this process, else imported
    given = plain_kwargs(kwargs)
    where = f"arch=custom arch.target={target}"
    try:
        inspect.signature(factory).bind(input_shape=tuple(input_shape), num_classes=num_classes, **given)
    except TypeError as error:
        raise ConfigError(f"{where} must take (input_shape, num_classes) and arch.kwargs as keywords: {error}") from None
    except ValueError:  # no signature to read (some builtins): the call itself tells
        pass
    try:
        net = factory(input_shape=tuple(input_shape), num_classes=num_classes, **given)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's constructor: its own message is the useful part
        raise ConfigError(f"{where} fails to build for images of shape {list(input_shape)}: {type(error).__name__}: {error}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"{where} returned a {type(net).__name__}, not a torch.nn.Module")
    return checked_model(net, input_shape, num_classes, where, ("custom", target, given, id(factory)))
