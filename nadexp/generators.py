"""Randomness through explicit generators: ``drawing_from(generator)`` runs code that takes no generator (a network's
constructor) with every random op drawing from ``generator``, the global one untouched; a CPU generator seeded s
draws exactly what ``torch.manual_seed(s)`` would, so seeds keep their meaning."""

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode


def seeded(seed: int, *stream: int) -> torch.Generator:
    """A CPU generator for ``seed``; with ``stream`` (small integers), an independent one derived from both."""
    if stream:
        seed = int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])
    return torch.Generator().manual_seed(seed)


class drawing_from(TorchDispatchMode):
    """``with drawing_from(generator): net = make_net()``: the random ops inside draw from ``generator``. Per thread
    (dispatch modes are thread-local), so a thread that draws networks leaves another that computes alone."""

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
