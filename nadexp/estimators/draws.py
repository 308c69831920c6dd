"""Many fresh initialisations of one architecture, drawn in order from one generator: network k depends on the
seed alone, whatever the method or batch size. They are drawn on the CPU (a template there, a CPU generator) and
moved after, so one seed gives bitwise the same networks on every device; a template elsewhere is refused."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Optional

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from nadexp.generators import drawing_from


def fresh_networks(template: nn.Module, count: int, make_net=None, *, generator: torch.Generator) -> Iterator[nn.Module]:
    """``count`` initialisations from ``generator``, drawn one after another into ``template`` (no copies): every
    layer reset, children before parents, as the constructor does (VGG's own init has the last word). Networks that
    resets cannot draw (a ViT's embeddings, timm's init schemes) are built again by ``make_net`` and copied in."""
    _on_the_cpu(template, generator)
    if not resettable(template):
        if make_net is None:
            raise ValueError(f"{type(template).__name__} has parameters no reset_parameters draws: pass make_net")
        for _ in range(count):
            with drawing_from(generator):
                net = make_net()
            template.load_state_dict(net.state_dict())
            yield template
        return
    resets = _resets(template)
    for _ in range(count):
        with drawing_from(generator):
            for reset in resets:
                reset()
        yield template


def _on_the_cpu(template: nn.Module, generator: torch.Generator) -> None:
    devices = {t.device.type for t in chain(template.parameters(), template.buffers())} | {generator.device.type}
    if devices != {"cpu"}:
        raise ValueError(f"networks are drawn on the CPU by a CPU generator and then moved; got a template or generator on {devices}")


def resettable(net: nn.Module) -> bool:
    """Whether resetting layers draws ``net`` as its constructor does: true of nadexp's own zoo, whose every
    parameter belongs to a layer with ``reset_parameters``; library models (timm's init schemes) are built again."""
    owners = [m for m in net.modules() if next(m.parameters(recurse=False), None) is not None]
    return type(net).__module__.startswith("nadexp.models.") and all(hasattr(m, "reset_parameters") for m in owners)


def stacked_networks(
    template: nn.Module, count: int, batch: int, make_net=None, *, generator: torch.Generator
) -> Iterator[dict[str, torch.Tensor]]:
    """The same networks as ``fresh_networks``, ``batch`` at a time, as {name: tensor of shape (b, *shape)} for every parameter and buffer.
    Where a reset is a fixed list of in-place tensor ops (the zoo: uniform_, normal_, fill_, zero_), the ops are replayed straight into the
    stacked tensors, which skips the per-layer Python of ``reset_parameters`` (LeNet: 0.42 ms per network, more than its autograd NAD
    gradient); where they are only uniform_ and fills, a batch is one draw (`_one_draw_plan`)."""
    _on_the_cpu(template, generator)
    recipe = init_recipe(template) if resettable(template) else None
    state = dict(chain(template.named_parameters(), template.named_buffers()))
    plan = _one_draw_plan(recipe, state)
    networks = None if recipe is not None else fresh_networks(template, count, make_net, generator=generator)
    draws = None  # reused from batch to batch: fresh memory for every batch costs page faults
    for start in range(0, count, batch):
        size = min(batch, count - start)
        if plan is not None:
            if draws is None or len(draws) != size:
                draws = torch.empty(size, plan[1])
            yield _draw_at_once(plan, state, draws, generator)
            continue
        stacked = {name: torch.empty(size, *t.shape, dtype=t.dtype, device=t.device) for name, t in state.items()}
        with torch.no_grad():
            if recipe is not None:
                with drawing_from(generator):
                    for k in range(size):
                        for op, name, args, kwargs in recipe:
                            op(stacked[name][k], *args, **kwargs)
                for name in state.keys() - {name for _, name, _, _ in recipe}:  # never re-drawn: as built
                    stacked[name].copy_(state[name].expand_as(stacked[name]))
            else:
                for k, net in zip(range(size), networks):
                    for name, t in chain(net.named_parameters(), net.named_buffers()):
                        stacked[name][k] = t
        yield stacked


def _one_draw_plan(recipe: Optional[list], state: dict) -> Optional[tuple[dict, int]]:
    """When a reset only draws uniform_ values into float32 CPU tensors and fills constants (LeNet, ResNet-18), a batch of networks is one
    uniform_ call: torch's CPU generator gives each float one 32-bit draw, in order, so network k's tensors are consecutive pieces of one
    long draw, scaled as uniform_(from, to) scales them. The plan is checked bitwise against the replayed reset, else None."""
    if recipe is None or any(t.device.type != "cpu" for t in state.values()):
        return None
    final, offset = {}, 0
    for op, name, args, kwargs in recipe:
        if op is torch.ops.aten.uniform_.default and state[name].dtype == torch.float32 and kwargs.get("generator") is None:
            low, high = (list(args) + [0.0, 1.0][len(args) :])[:2]
            final[name] = ("uniform", offset, low, high)
            offset += state[name].numel()
        elif op in (torch.ops.aten.fill_.Scalar, torch.ops.aten.zero_.default):
            final[name] = ("set", op, args, kwargs)
        else:
            return None
    plan = (final, offset)
    first, second = _twin_generators()
    drawn = _draw_at_once(plan, state, torch.empty(2, offset), first)
    replayed = {name: torch.full((2, *t.shape), -7, dtype=t.dtype) for name, t in state.items()}
    with torch.no_grad(), drawing_from(second):
        for k in range(2):
            for op, name, args, kwargs in recipe:
                op(replayed[name][k], *args, **kwargs)
    return plan if all(torch.equal(drawn[name], replayed[name]) for name in final) else None


def _twin_generators() -> tuple[torch.Generator, torch.Generator]:
    """Two generators in one random state: the same draws made two ways must agree bitwise."""
    first = torch.Generator()
    first.seed()
    return first, torch.Generator().set_state(first.get_state())


def _draw_at_once(plan: tuple[dict, int], state: dict, draws: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
    final, size = plan[0], len(draws)
    with torch.no_grad():
        draws.uniform_(generator=generator)
        stacked = {}
        for name, t in state.items():
            how = final.get(name)
            if how is None:  # never re-drawn: as built
                stacked[name] = t.detach().expand(size, *t.shape).clone()
            elif how[0] == "uniform":  # from + x (to - from) in float32, one rounding, as torch's kernel computes it
                _, offset, low, high = how
                low32, high32 = torch.tensor(low, dtype=torch.float32), torch.tensor(high, dtype=torch.float32)
                out = torch.empty(size, *t.shape)
                torch.addcmul(low32, draws[:, offset : offset + t.numel()], high32 - low32, out=out.view(size, -1))
                stacked[name] = out
            else:
                _, op, args, kwargs = how
                stacked[name] = op(torch.empty(size, *t.shape, dtype=t.dtype), *args, **kwargs)
    return stacked


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append((func, args, kwargs or {}))
        return func(*args, **(kwargs or {}))


def init_recipe(template: nn.Module) -> Optional[list]:
    """The tensor ops one reset of ``template`` runs, as (op, parameter or buffer name, other args, kwargs), checked to
    replay bitwise what a real reset draws; None when a reset does anything else (reads another tensor, ...)."""
    names = {(t.data_ptr(), t.shape): name for name, t in chain(template.named_parameters(), template.named_buffers())}
    recorder = _Recorder()
    with torch.no_grad(), drawing_from(torch.Generator()), recorder:  # recorded as called: with no generator
        for reset in _resets(template):
            reset()
    recipe = []
    for func, args, kwargs in recorder.calls:
        target = args[0] if args else None
        in_place = isinstance(target, torch.Tensor) and func._schema.name.endswith("_") and func._schema.is_mutable
        reads_others = any(isinstance(a, torch.Tensor) for a in [*args[1:], *kwargs.values()])
        if not in_place or (target.data_ptr(), target.shape) not in names or reads_others:
            return None
        recipe.append((func, names[(target.data_ptr(), target.shape)], args[1:], kwargs))
    return recipe if recipe and _replays_exactly(template, recipe) else None


def _replays_exactly(template: nn.Module, recipe: list) -> bool:
    state = dict(chain(template.named_parameters(), template.named_buffers()))
    first, second = _twin_generators()
    with torch.no_grad():
        with drawing_from(first):
            for reset in _resets(template):
                reset()
        expected = {name: t.clone() for name, t in state.items()}
        drawn = {name for _, name, _, _ in recipe}  # start from garbage, as the stacked tensors do
        replayed = {name: torch.full_like(t, -7) if name in drawn else t.clone() for name, t in state.items()}
        with drawing_from(second):
            for op, name, args, kwargs in recipe:
                op(replayed[name], *args, **kwargs)
    return all(torch.equal(expected[name], replayed[name]) for name in state)


def _resets(template: nn.Module):
    return [m.reset_parameters for m in reversed(list(template.modules())) if hasattr(m, "reset_parameters")]


def drawn_ahead(batches: Iterator):
    """``batches``, drawn one batch ahead in a background thread: the RNG that draws networks runs on one core
    (torch's CPU generator is sequential) while the caller computes with the others."""
    batches, end = iter(batches), object()
    with ThreadPoolExecutor(1, thread_name_prefix="nadexp-draws") as pool:  # its errors re-raised here, by result()
        ahead = pool.submit(next, batches, end)
        while (batch := ahead.result()) is not end:
            ahead = pool.submit(next, batches, end)
            yield batch
