"""nadexp: experiments on the inductive bias of network architectures (Neural Anisotropy Directions)."""

__version__ = "0.1.0"
