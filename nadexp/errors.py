"""The one exception type for bad user input: run.py turns it into a one-line message and exit code 2; and the close matches it offers."""

import difflib


class ConfigError(ValueError):
    """An option has an impossible value; the message names the option and what is allowed."""


def did_you_mean(word: str, choices, prefix: str = "") -> str:
    """``: did you mean A or B?`` for the close matches of ``word`` among ``choices`` (each after ``prefix``), or ""."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f": did you mean {' or '.join(prefix + c for c in close)}?" if close else ""
