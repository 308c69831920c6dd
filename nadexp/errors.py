"""The one exception type for bad user input: run.py turns it into a one-line message and exit code 2."""


class ConfigError(ValueError):
    """An option has an impossible value; the message names the option and what is allowed."""
