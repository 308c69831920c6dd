"""Randomness through explicit generators.

torch's layers draw their initial weights from its global generator, and a network's constructor (or Hydra
instantiating one) takes no generator. ``drawing_from(generator)`` runs such code with every random op it makes
drawing from ``generator``; the global generator is neither read nor changed. A CPU generator seeded s gives
exactly what ``torch.manual_seed(s)`` followed by the same code gives, so seeds keep their meaning.
"""

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode


def seeded(seed: int, *stream: int) -> torch.Generator:
    """A CPU generator for ``seed``; with ``stream`` (small integers), an independent one derived from both."""
    if stream:
        seed = int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])
    return torch.Generator().manual_seed(seed)


class drawing_from(TorchDispatchMode):
    """``with drawing_from(generator): net = make_net()``: the random ops inside draw from ``generator``.

    The mode is per thread (torch keeps dispatch modes in thread-local state), so a thread that draws networks
    does not slow down or redirect another that computes."""

    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.generator = generator

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.Tag.nondeterministic_seeded in func.tags and kwargs.get("generator") is None:
            if not any(argument.name == "generator" for argument in func._schema.arguments):
                # factories (randn, rand, randperm, randint) have an overload of their own that takes one; ops with
                # none (fused attention, whose dropout is off in the networks drawn here) run as they are
                name = "generator" if func._overloadname == "default" else f"{func._overloadname}_generator"
                if name in func.overloadpacket.overloads():
                    func = getattr(func.overloadpacket, name)
            if any(argument.name == "generator" for argument in func._schema.arguments):
                kwargs = {**kwargs, "generator": self.generator}
        return func(*args, **kwargs)
