"""Input gradients of many randomly initialised networks: the raw material of NADs.

Both estimators return an (N, D) float32 matrix, one row per fresh initialisation of the architecture
(one output, eval mode). Network k is a function of the seed alone, so both methods see the same networks.
"""

import copy
import math
from typing import Iterator

import torch
from torch import nn
from torch.func import functional_call, grad, vmap


def fresh_networks(template: nn.Module, count: int, make_net=None) -> Iterator[nn.Module]:
    """``count`` independent initialisations, drawn one after another into ``template`` (no copies).

    Each draw resets every layer as constructing the network again would. Children are reset before
    their parents, so an architecture's own ``reset_parameters`` (VGG's reference init) has the last
    word, as it does in its constructor. Other networks (a ViT's position embedding and class token have
    no ``reset_parameters``; timm has init schemes of its own) are built again by ``make_net`` for each
    draw and copied into ``template``.
    """
    if not resettable(template):
        if make_net is None:
            raise ValueError(f"{type(template).__name__} has parameters no reset_parameters draws: pass make_net")
        for _ in range(count):
            template.load_state_dict(make_net().state_dict())
            yield template
        return
    resets = [m.reset_parameters for m in reversed(list(template.modules())) if hasattr(m, "reset_parameters")]
    for _ in range(count):
        for reset in resets:
            reset()
        yield template


def resettable(net: nn.Module) -> bool:
    """Whether resetting layers draws ``net`` as its constructor does: true of nadexp's own zoo, whose every
    parameter belongs to a layer with ``reset_parameters``; library models (timm's init schemes) are built again."""
    owners = [m for m in net.modules() if next(m.parameters(recurse=False), None) is not None]
    return type(net).__module__.startswith("nadexp.models.") and all(hasattr(m, "reset_parameters") for m in owners)


def eval_points(kind: str, shape, count: int, generator: torch.Generator) -> torch.Tensor:
    """x0 for each network: one shared N(0, I) draw, zero, or a fresh N(0, I) draw per network."""
    if kind == "fixed":
        return torch.randn(1, *shape, generator=generator).expand(count, *shape)
    if kind == "zero":
        return torch.zeros(1, *shape).expand(count, *shape)
    if kind == "per_network":
        return torch.randn(count, *shape, generator=generator)
    raise ValueError(f"eval_point must be fixed, zero or per_network, got {kind!r}")


def finite_difference_gradients(
    template: nn.Module, points: torch.Tensor, scale: float = 100.0, chunk_size: int = 512,
    dtype: torch.dtype = torch.float32, device="cpu", make_net=None,
) -> torch.Tensor:
    """g_k[i] = (f_k(x0 + s e_i) - f_k(x0 - s e_i)) / (2 s) for every pixel axis i (the published NADs).

    One network at a time, drawn into ``template`` (on ``device``) and copied into a channels-last twin
    in ``dtype`` (bfloat16 halves the cost on AMX CPUs and GPUs); its 2 D perturbed inputs go through in
    chunks of ``chunk_size``, small enough to stay in cache.
    """
    count, shape = len(points), points.shape[1:]
    dim = math.prod(shape)
    steps = scale * torch.eye(dim, device=device).reshape(dim, *shape)
    worker = _twin(template, dtype, device)
    gradients = torch.empty(count, dim)
    shared = bool(points.stride(0) == 0)  # one x0 for all networks: build the perturbed batch once
    batch = None
    with torch.inference_mode():
        for k, net in enumerate(fresh_networks(template, count, make_net)):
            _copy_weights(net, worker)
            if batch is None or not shared:
                x0 = points[k].to(device)
                batch = torch.cat([x0 + steps, x0 - steps]).to(dtype).contiguous(memory_format=torch.channels_last)
            out = torch.cat([worker(part).float().reshape(-1) for part in batch.split(chunk_size)])
            gradients[k] = ((out[:dim] - out[dim:]) / (2 * scale)).cpu()
    return gradients


def autograd_gradients(
    template: nn.Module, points: torch.Tensor, networks_per_batch: int = 256, device="cpu", make_net=None,
) -> torch.Tensor:
    """grad_x f_k(x0) for many networks at once: vmap over stacked parameters (torch.func).

    ``template`` lives on ``device``; each batch of networks is drawn into it and stacked.
    """
    count, shape = len(points), points.shape[1:]
    skeleton = copy.deepcopy(template).eval().to("meta")  # structure only; parameters come from `stacked`
    buffers = dict(template.named_buffers())  # eval-mode BatchNorm statistics, as at init

    def output(params, x):
        return functional_call(skeleton, (params, buffers), (x[None],)).squeeze()

    batched = vmap(grad(output, argnums=1), in_dims=(0, 0))
    gradients = torch.empty(count, math.prod(shape))
    networks = fresh_networks(template, count, make_net)
    for start in range(0, count, networks_per_batch):
        stop = min(start + networks_per_batch, count)
        stacked = {name: p.new_empty(stop - start, *p.shape) for name, p in template.named_parameters()}
        with torch.no_grad():
            for k, net in zip(range(stop - start), networks):
                for name, p in net.named_parameters():
                    stacked[name][k] = p
        gradients[start:stop] = batched(stacked, points[start:stop].to(device)).reshape(stop - start, -1).cpu()
    return gradients


def _twin(template: nn.Module, dtype: torch.dtype, device) -> nn.Module:
    """A channels-last copy of ``template`` in eval mode and ``dtype`` that receives each network's weights."""
    return copy.deepcopy(template).eval().to(device=device, dtype=dtype, memory_format=torch.channels_last)


def _copy_weights(source: nn.Module, target: nn.Module) -> None:
    for s, t in zip(source.parameters(), target.parameters()):
        t.copy_(s)
