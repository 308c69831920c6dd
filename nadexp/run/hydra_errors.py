"""Hydra's own errors (a config group's unknown option, an unknown key, an override it cannot parse) as the one
line nadexp prints for every bad input, with the close matches and, for a group, where its options are listed."""

import re

from hydra.errors import HydraException, MissingConfigException, OverrideParseException

from nadexp.errors import did_you_mean

INTERNAL = re.compile(r".*_schema$")  # typed schemas stored beside a group's options: not options to pick


def first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def unknown_key(key: str, overrides) -> str:
    """``key`` is not in the config: the close keys beside it, from the config composed without that override."""
    from nadexp.config import compose_config

    parent, _, leaf = key.rpartition(".")
    try:
        node = compose_config([o for o in overrides if o.lstrip("+~").split("=", 1)[0] != key])
        for part in parent.split(".") if parent else []:
            node = node[part]
        keys = list(node.keys())
    except Exception:  # noqa: BLE001 - no suggestions when the rest of the command does not compose either
        keys = []
    where = f" of {parent}" if parent else ""
    return f"{key} is not a setting{where}{did_you_mean(leaf, keys, f'{parent}.' if parent else '')} (every setting: nadexp --cfg job)"


def failure_line(error: BaseException) -> str:
    """The one line for a run that failed once it started (its result.json keeps the reason too)."""
    return f"{type(error).__name__}: {first_line(error)} (HYDRA_FULL_ERROR=1 shows where)"


def hydra_error_line(error: HydraException, overrides) -> str:
    """The one line for ``error``, raised while Hydra composed the config of a command with ``overrides``."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options is not None:
        group, _, option = str(error.missing_cfg_file).rpartition("/")
        options = sorted(o for o in error.options if not INTERNAL.match(o))
        return f"{group}={option} is not an option of {group}{did_you_mean(option, options)} (its options: nadexp --help, or conf/{group}/)"
    if isinstance(error, OverrideParseException):
        return f"{error.override} is not an override: write group=option, key=value or +key=value ({first_line(error)})"
    unknown = re.match(r"Could not override '([^']+)'", str(error))
    if unknown:
        return unknown_key(unknown.group(1), overrides)
    cause = f": {first_line(error.__cause__)}" if error.__cause__ is not None else ""
    return f"{first_line(error).removeprefix('Error merging override ').rstrip(':')}{cause}"
