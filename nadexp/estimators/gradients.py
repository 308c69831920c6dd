"""Input gradients of many random initialisations, the raw material of NADs: an (N, D) float32 matrix, row k from
network k drawn from ``generator`` (nadexp.estimators.draws), computed on ``device`` a batch of networks at a time."""

import copy
import logging
import math

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from nadexp.cores import share
from nadexp.devices import agree
from nadexp.estimators.draws import drawn_ahead, fresh_networks, stacked_networks
from nadexp.estimators.wide import WideNetwork, layer_inputs, perturbed_inputs, side_by_side
from nadexp.progress import Steps

log = logging.getLogger(__name__)


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
    template: nn.Module, points: torch.Tensor, scale: float = 100.0, chunk_size="auto", dtype: torch.dtype = torch.float32,
    device="cpu", make_net=None, networks_per_batch="auto", *, generator: torch.Generator,
) -> torch.Tensor:  # fmt: skip
    """g_k[i] = (f_k(x0 + s e_i) - f_k(x0 - s e_i)) / (2 s) for every pixel axis i (the published NADs). Networks that
    share x0 go K per pass side by side (nadexp.estimators.wide); architectures that run neither as one wide network
    nor through vmap, eval_point=per_network and a vmapped K of 1 go one network at a time. The log says which."""
    count, shape = len(points), tuple(points.shape[1:])
    runner, how = None, "each network has its own x0 (eval_point=per_network)"
    if points.stride(0) == 0:  # one x0 for all networks
        probe = next(stacked_networks(template, 2, 2, make_net, generator=_probe_generator()))
        runner, how = side_by_side(template, shape, probe, dtype, device)
    networks = 1 if runner is None else _resolve(networks_per_batch, lambda: auto_networks_per_batch(template, runner, device))
    if runner is not None and networks == 1 and not runner.first_is_linear:  # nothing to share: the plain network is faster
        runner, how = None, f"one network per pass ({how} would only add overhead)"
    if runner is None:
        activations = layer_inputs(template, shape)
        chunk = _resolve(chunk_size, lambda: 2 * auto_pixels_per_pass(activations, 1, dtype, device))
        log.info("finite differences one network at a time, %d perturbed inputs per pass: %s", chunk, how)
        return _one_network_at_a_time(template, points, scale, chunk, dtype, device, make_net, generator=generator)
    pixels = max(1, _resolve(chunk_size, lambda: 2 * auto_pixels_per_pass(runner.activations, networks, dtype, device)) // 2)
    first = "; first layer from its weights" if runner.first_is_linear else ""
    log.info("finite differences: %d networks per pass (%s), %d perturbed inputs each%s", networks, how, 2 * pixels, first)
    dim = math.prod(shape)
    gradients, done = torch.empty(count, dim), 0
    with torch.inference_mode(), Steps("NADs by finite differences", count, "networks") as progress:
        for stacked in stacked_networks(template, count, networks, make_net, generator=generator):
            share()  # the cores, with the other nadexp processes of the moment (nadexp.cores)
            runner.load(stacked)
            runner.perturb_around(points[0], scale)
            block = torch.empty(runner.count, dim, device=runner.device)  # filled on the device, copied once per batch
            for start in range(0, dim, pixels):
                part = slice(start, min(start + pixels, dim))
                out, n = runner.perturbed_outputs(part).float(), part.stop - part.start
                block[:, part] = (out[:, :n] - out[:, n:]) / (2 * scale)
            gradients[done : done + runner.count] = block.cpu()
            done += runner.count
            progress.advance(runner.count)
    return gradients


def auto_networks_per_batch(template: nn.Module, runner, device) -> int:
    """K for a pass: on a GPU, as many as a quarter of the free memory holds (parameters and one input's
    activations per network), up to 512; on a CPU, enough first-layer channels to fill the vector registers (64:
    LeNet's 6 give 11) and no more (more slowed LeNet down), within 1 GiB of parameters and activations."""
    params = sum(p.numel() for p in template.parameters())
    per_network = 4 * (params + 64 * runner.activations)
    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(1, min(512, int(free // 4 // per_network)))
    first = runner.first_module
    channels = getattr(first, "out_channels", getattr(first, "out_features", 1))
    return max(1, min(64, math.ceil(64 / channels), 2**30 // per_network))


def auto_pixels_per_pass(activations: int, networks: int, dtype: torch.dtype, device) -> int:
    """Pixels per pass, each one two perturbed inputs: the pass's activations near 16 MB on a CPU (the caches of a few cores), a tenth of
    the free memory on a GPU; but at least 64 inputs in all per pass, which large models need to keep their layers busy (a DenseNet with 2
    inputs per pass ran 5 times slower). ``activations``: the elements one network's layers read per input (`wide.layer_inputs`)."""
    budget = torch.cuda.mem_get_info(device)[0] // 10 if torch.device(device).type == "cuda" else 16 * 2**20
    per_pixel = 2 * networks * activations * torch.finfo(dtype).bits // 8
    return max(math.ceil(32 / networks), budget // max(per_pixel, 1))


def _resolve(value, auto) -> int:
    return auto() if value in (None, "auto") else int(value)


def _probe_generator() -> torch.Generator:
    """Two networks to check a runner with come from a stream of their own, not from the estimate's."""
    return torch.Generator().manual_seed(2**31 - 1)


def _one_network_at_a_time(template, points, scale, chunk_size, dtype, device, make_net, *, generator: torch.Generator) -> torch.Tensor:
    """Network by network: drawn into ``template``, copied into a channels-last twin in ``dtype``, its 2 D inputs in ``chunk_size``s."""
    count, shape = len(points), points.shape[1:]
    dim = math.prod(shape)
    # a channels-last copy in eval mode and ``dtype`` that receives each network's weights
    worker = copy.deepcopy(template).eval().to(device=device, dtype=dtype, memory_format=torch.channels_last)
    gradients = torch.empty(count, dim)
    shared = bool(points.stride(0) == 0)  # one x0 for all networks: build the perturbed batch once
    batch = None
    with torch.inference_mode(), Steps("NADs by finite differences", count, "networks") as progress:
        for k, net in enumerate(fresh_networks(template, count, make_net, generator=generator)):
            share()
            for source, target in zip(net.parameters(), worker.parameters()):
                target.copy_(source)
            if batch is None or not shared:
                batch = perturbed_inputs(points[k], scale, device, dtype)(slice(0, dim))
            out = torch.cat([worker(part).float().reshape(-1) for part in batch.split(chunk_size)])
            gradients[k] = ((out[:dim] - out[dim:]) / (2 * scale)).cpu()
            progress.advance(1)
    return gradients


def autograd_gradients(
    template: nn.Module, points: torch.Tensor, networks_per_batch="auto", device="cpu", make_net=None, *, generator
) -> torch.Tensor:
    """grad_x f_k(x0) for many networks at once, drawn straight into stacked tensors (one batch ahead, in a
    background thread): K networks as one wide network, each on its own copy of x0, and one backward pass; or,
    for architectures that cannot run as one, vmap over the stacked parameters (torch.func)."""
    count, shape = len(points), points.shape[1:]
    networks = _resolve(networks_per_batch, lambda: auto_autograd_networks(template, shape, device))
    probe = next(stacked_networks(template, 2, 2, make_net, generator=_probe_generator()))
    batches = drawn_ahead(stacked_networks(template, count, networks, make_net, generator=generator))
    try:
        wide = WideNetwork(template, shape, torch.float32, device, own_inputs=True)
        _check_own_inputs(wide, template, shape, probe)
        gradient = wide.input_gradients
    except Exception as error:  # noqa: BLE001 - whatever stops the wide network, vmap runs it
        log.info("autograd NADs through torch.func.vmap: %s", str(error).splitlines()[0] if str(error) else error)
        gradient = _vmapped_input_gradients(template, device)
    gradients, start = torch.empty(count, math.prod(shape)), 0
    with Steps("NADs by autograd", count, "networks") as progress:
        for stacked in batches:
            share()
            stop = start + len(next(iter(stacked.values())))
            gradients[start:stop] = gradient(stacked, points[start:stop].to(device)).reshape(stop - start, -1).cpu()
            progress.advance(stop - start)
            start = stop
    return gradients


def _check_own_inputs(wide: WideNetwork, template: nn.Module, shape, probe: dict) -> None:
    """The wide network's gradients on its device equal vmap's on the CPU, in float32, within the device's tolerance."""
    x = torch.randn(len(next(iter(probe.values()))), *shape, generator=torch.Generator().manual_seed(0))
    got = wide.input_gradients(probe, x.to(wide.device))
    want = _vmapped_input_gradients(template, "cpu")(probe, x)
    if not agree(got, want, torch.float32, wide.device):
        raise ValueError("the networks as one wide network give other gradients than one by one")


def _vmapped_input_gradients(template: nn.Module, device):
    skeleton = copy.deepcopy(template).eval().to("meta")  # structure only; parameters come from the stacked ones
    buffers = {name: t.to(device) for name, t in template.named_buffers()}  # eval-mode BatchNorm statistics, as built
    names = {name for name, _ in template.named_parameters()}

    def output(params, x):
        return functional_call(skeleton, (params, buffers), (x[None],)).squeeze()

    batched = vmap(grad(output, argnums=1), in_dims=(0, 0))
    return lambda stacked, x: batched({name: t.to(device) for name, t in stacked.items() if name in names}, x.to(device))


def auto_autograd_networks(template: nn.Module, shape, device) -> int:
    """Networks per vmap call: 256, or fewer where their stacked parameters would pass a quarter of the free GPU
    memory or 1 GiB of a CPU's (a 17 M-parameter MLP-Mixer: 15)."""
    params = sum(p.numel() for p in template.parameters())
    budget = torch.cuda.mem_get_info(device)[0] // 4 if torch.device(device).type == "cuda" else 2**30
    return max(1, min(256, budget // (4 * params * 4)))  # the stacked copy, its vmap temporaries and gradients
