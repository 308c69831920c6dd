"""nadexp: experiments on the inductive bias of network architectures (Neural Anisotropy Directions). The Python
API (nadexp.api: nads, train_direction, sweep, load, NADs, Sweep) loads from here on first use."""

from nadexp.errors import ConfigError

__version__ = "0.1.0"
API = ("NADs", "Sweep", "nads", "train_direction", "sweep", "load")
__all__ = ["ConfigError", *API]


def __getattr__(name: str):
    if name in API:
        import nadexp.api

        return getattr(nadexp.api, name)
    raise AttributeError(f"module 'nadexp' has no attribute {name!r}")
