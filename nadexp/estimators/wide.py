"""K networks of one architecture as one network of grouped layers on inputs they share: network k's channels are
block k of every wide layer (grouped convolutions, BatchNorm on K times the channels, batched Linear products after
a Flatten; channel-wise layers shared), returning (K, N, outputs). What this cannot express (a DenseNet's
concatenations, LayerNorm) runs through torch.func.vmap; `side_by_side` picks the first that checks out."""

import copy
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from nadexp.devices import agree
from nadexp.training.keyed_dropout import KeyedDropout

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh)
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
CHANNELWISE = (*ACTIVATIONS, *POOLS, nn.Dropout, KeyedDropout, nn.Identity)  # dropout: the identity in eval mode
CONTAINERS = (nn.Sequential, nn.ModuleList)


class WideConv2d(nn.Module):
    STATE = ("weight", "bias")  # what `load` takes, stacked

    def __init__(self, conv: nn.Conv2d, shared_input: bool):
        super().__init__()
        self.conv, self.shared_input = conv, shared_input  # geometry only; weights come from `load`

    def load(self, weight, bias):
        self.count = len(weight)
        self.weight = weight.reshape(-1, *weight.shape[2:])
        self.bias = None if bias is None else bias.reshape(-1)

    def forward(self, x):
        groups = self.conv.groups * (1 if self.shared_input else self.count)
        return F.conv2d(x, self.weight, self.bias, self.conv.stride, self.conv.padding, self.conv.dilation, groups)


class WideBatchNorm2d(nn.Module):
    STATE = ("weight", "bias", "running_mean", "running_var")

    def __init__(self, norm: nn.BatchNorm2d):
        super().__init__()
        self.eps = norm.eps

    def load(self, weight, bias, running_mean, running_var):
        stacked = (weight, bias, running_mean, running_var)
        self.weight, self.bias, self.mean, self.var = (None if t is None else t.reshape(-1) for t in stacked)

    def forward(self, x):
        return F.batch_norm(x, self.mean, self.var, self.weight, self.bias, False, 0.0, self.eps)


class WideFlatten(nn.Module):
    """(N, K * C, H, W) -> (K, N, C * H * W): each network's features, flattened as nn.Flatten does."""

    count = 1

    def forward(self, x):
        return x.reshape(len(x), self.count, -1).transpose(0, 1)


class WideLinear(nn.Module):
    STATE = ("weight", "bias")

    def __init__(self, shared_input: bool):
        super().__init__()
        self.shared_input = shared_input

    def load(self, weight, bias):
        self.weight, self.bias = weight.transpose(1, 2), bias  # (K, in, out), (K, out)

    def forward(self, x):
        if self.shared_input:  # (N, in), the same for every network
            out = torch.einsum("ni,kio->kno", x, self.weight)
            return out if self.bias is None else out + self.bias[:, None]
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias[:, None], x, self.weight)


class Injected(nn.Module):
    """Stands where the first layer was and returns its output, computed outside (see `first_layer`)."""

    value: Optional[torch.Tensor] = None

    def forward(self, x):
        return self.value


def call_order(net: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(name, module, input) of every leaf module, in the order one forward pass calls them (of an eval-mode copy:
    a forward pass in training mode would change BatchNorm's running statistics)."""
    net = copy.deepcopy(net).eval()
    calls, handles = [], []
    for name, module in net.named_modules():
        if not list(module.children()):
            handles.append(module.register_forward_pre_hook(lambda m, args, name=name: calls.append((name, m, args[0] if args else None))))
    try:
        with torch.no_grad():
            net(example)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def layer_inputs(net: nn.Module, input_shape) -> int:
    """The elements all of one network's layers read for one input: what a pass holds per network and input."""
    return _elements_read(call_order(net, torch.zeros(1, *input_shape, device=_device_of(net))))


def _device_of(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def _elements_read(calls) -> int:
    return sum(x.numel() for _, _, x in calls if isinstance(x, torch.Tensor))


class WideNetwork:
    """K networks of ``template``'s architecture at once. ``first_is_linear``: the first layer is a Linear or plain
    Conv2d on the input itself, whose response to x0 + t e_i `first_layer` builds from one column of its weights.
    ``own_inputs``: each network takes its own input, channel block k of (N, K * C, H, W) (autograd NADs)."""

    def __init__(self, template: nn.Module, input_shape, dtype=torch.float32, device="cpu", own_inputs=False):
        self.input_shape, self.dtype, self.device = tuple(input_shape), dtype, torch.device(device)
        example = torch.zeros(1, *input_shape, device=_device_of(template))
        calls = call_order(template, example)
        first = next((i for i, (_, m, _) in enumerate(calls) if next(m.parameters(), None) is not None), None)
        if first is None:
            raise ValueError(f"{type(template).__name__} has no parameters")
        self.first_name, first_module, first_input = calls[first]
        self.first_module = first_module
        reads_input = first_input is not None and first_input.data_ptr() == example.data_ptr() and first_input.numel() == example.numel()
        conv = isinstance(first_module, nn.Conv2d) and first_module.groups == 1 and first_module.padding_mode == "zeros"
        self.first_is_linear = not own_inputs and (isinstance(first_module, nn.Linear) or conv) and reads_input
        self.activations = _elements_read(calls)  # per network and input; sizes the passes (`estimators.gradients`)
        # parameter-free modules on a shared input (a Flatten) are kept as they are, and the first layer reads it whole
        before = set() if own_inputs else {name for name, _, _ in calls[:first]}
        self.own_inputs = own_inputs
        self.net = copy.deepcopy(template).eval()
        self.injected = Injected() if self.first_is_linear else None
        for name, module in list(self.net.named_modules()):
            if name in before or name == "" or isinstance(module, CONTAINERS):
                continue
            replacement = self._wide(name, module)
            if replacement is not module:
                parent, _, child = name.rpartition(".")
                setattr(self.net.get_submodule(parent) if parent else self.net, child, replacement)
        self.net.to(self.device)
        if self.first_is_linear:
            self._connections(first_module, example)

    def _wide(self, name: str, module: nn.Module) -> nn.Module:
        shared = name == self.first_name and not self.own_inputs
        if shared and self.injected is not None:
            return self.injected
        if isinstance(module, nn.Conv2d):
            if module.padding_mode != "zeros":
                raise NotWidenable(f"{name}: padding_mode {module.padding_mode}")
            return WideConv2d(module, shared)
        if isinstance(module, nn.BatchNorm2d):
            return WideBatchNorm2d(module)
        if isinstance(module, nn.Linear):
            return WideLinear(shared)
        if isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise NotWidenable(f"{name}: Flatten({module.start_dim}, {module.end_dim})")
            return WideFlatten()
        if isinstance(module, CHANNELWISE) or list(module.children()):  # a block: its children widened, its forward kept
            return module
        raise NotWidenable(f"{name}: {type(module).__name__}")

    def load(self, stacked: dict[str, torch.Tensor]) -> None:
        """Takes K networks' parameters and buffers, {name: (K, *shape)} as `draws.stacked_networks` gives them."""
        self.stacked = {name: t.to(self.device, self.dtype) if t.is_floating_point() else t.to(self.device) for name, t in stacked.items()}
        self.count = len(next(iter(stacked.values())))
        for name, module in self.net.named_modules():
            prefix = f"{name}." if name else ""
            if isinstance(module, (WideConv2d, WideBatchNorm2d, WideLinear)):
                module.load(*(self.stacked.get(prefix + key) for key in module.STATE))
            elif isinstance(module, WideFlatten):
                module.count = self.count
        if self.injected is not None:
            self._load_first_layer()

    def _load_first_layer(self) -> None:
        weight, bias = self.stacked[f"{self.first_name}.weight"], self.stacked.get(f"{self.first_name}.bias")
        self.first_weight = weight.reshape(-1, *weight.shape[2:])  # (K * C, ...): one layer with K times the outputs
        self.first_bias = None if bias is None else bias.reshape(-1)
        self.columns = self.first_weight.reshape(len(self.first_weight), -1).T  # (taps, K * C)

    def _connections(self, first_module: nn.Module, example: torch.Tensor):
        """Which output positions each input pixel reaches, through which weight tap: (pixel, position, tap) sorted by
        pixel, and where each pixel's entries start. A Linear layer: pixel i reaches its one output through tap i."""
        if isinstance(first_module, nn.Linear):
            pixel = torch.arange(example.numel())
            self.first_map, position, tap = (1,), torch.zeros_like(pixel), pixel
        else:
            (_, height, width), conv = self.input_shape, first_module
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
            self.first_map = ((height + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1)
            index = torch.arange(1, example.numel() + 1, dtype=torch.float64).view(1, *self.input_shape)  # pixel + 1; 0: padding
            read = F.unfold(index, (kh, kw), (dh, dw), (ph, pw), (sh, sw))[0].long() - 1  # (taps, positions): the pixel each reads
            tap, position = torch.nonzero(read >= 0, as_tuple=True)
            pixel = read[tap, position]
            order = torch.argsort(pixel, stable=True)
            pixel, position, tap = pixel[order], position[order], tap[order]
        starts = torch.zeros(example.numel() + 1, dtype=torch.long)
        starts[1:] = torch.cumsum(torch.bincount(pixel, minlength=example.numel()), 0)
        self.reach = [t.to(self.device) for t in (pixel, position, tap)]
        self.reach_starts = starts.tolist()

    def perturb_around(self, x0: torch.Tensor, step: float) -> None:
        """Sets the point and step of `perturbed_outputs` for the networks loaded."""
        if not self.first_is_linear:
            self.perturbed = perturbed_inputs(x0, step, self.device, self.dtype)
            return
        x0 = x0.to(self.device, self.dtype)[None]
        if isinstance(self.first_module, nn.Conv2d):
            conv = self.first_module
            base = F.conv2d(x0, self.first_weight, self.first_bias, conv.stride, conv.padding, conv.dilation)
            self.base = base[0].permute(1, 2, 0).reshape(-1, base.shape[1])  # (L, K * C), channels last
        else:
            self.base = F.linear(x0.reshape(1, -1), self.first_weight, self.first_bias)  # (1, K * out)
        self.steps = self.columns * step
        self.buffer = None

    def first_layer(self, pixels: slice) -> torch.Tensor:
        """The first layer's output for x0 + step e_i, then for x0 - step e_i, for the pixels i of ``pixels``, in the
        layout the next wide layer takes: (2 n, K * C, H, W) channels-last for a convolution, (K, 2 n, out) for a
        Linear. No convolution: the output at x0, plus or minus step times the weight taps that pixel i reaches."""
        n, (positions, width) = pixels.stop - pixels.start, self.base.shape
        if self.buffer is None or len(self.buffer) != 2 * n:  # reused: the pass that read it is over
            self.buffer = self.base.new_empty(2 * n, positions, width)
        out = self.buffer
        out.view(2, n, positions, width).copy_(self.base.expand(2, n, positions, width))
        lo, hi = self.reach_starts[pixels.start], self.reach_starts[pixels.stop]
        pixel, position, tap = (t[lo:hi] for t in self.reach)
        rows, moved = (pixel - pixels.start) * positions + position, self.steps[tap]
        flat = out.view(-1, width)
        flat.index_add_(0, rows, moved)
        flat.index_add_(0, rows + n * positions, moved, alpha=-1)
        if isinstance(self.first_module, nn.Conv2d):
            return out.view(2 * n, *self.first_map, width).permute(0, 3, 1, 2)
        return out.view(2 * n, self.count, -1).transpose(0, 1)

    def perturbed_outputs(self, pixels: slice) -> torch.Tensor:
        """(K, 2 n): every network's output at x0 + step e_i, then at x0 - step e_i, for the pixels i of ``pixels``."""
        out = self(first=self.first_layer(pixels)) if self.first_is_linear else self(self.perturbed(pixels))
        return out.reshape(self.count, -1)

    def input_gradients(self, stacked: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """(K, *input shape): network k's gradient at its own input x[k], for K networks as one (``own_inputs``)."""
        self.load(stacked)
        inputs = x.to(self.device, self.dtype).reshape(1, -1, *x.shape[2:]).requires_grad_()
        with torch.enable_grad():
            out = self.net(inputs)
            (gradient,) = torch.autograd.grad(out.sum(), inputs)
        return gradient.reshape(x.shape)

    def __call__(self, x: Optional[torch.Tensor] = None, first: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(K, N, outputs) for the shared inputs ``x``, or from the first layer's output ``first``."""
        if first is not None:
            self.injected.value = first
            count = len(first) if first.dim() == 4 else first.shape[1]
            x = torch.empty(count, *self.input_shape, device=self.device, dtype=self.dtype)  # never read: the first layer is injected
        try:
            return self.net(x.to(self.dtype))
        finally:
            if self.injected is not None:
                self.injected.value = None


class NotWidenable(Exception):
    pass


class VmappedNetworks:
    """K networks side by side through torch.func.vmap over their stacked parameters, for architectures that
    `WideNetwork` cannot express (a DenseNet's concatenations): vmap runs the first layer on the shared inputs as
    one layer with K times the outputs, and the later ones as grouped convolutions."""

    first_is_linear = False

    def __init__(self, template: nn.Module, input_shape, dtype=torch.float32, device="cpu"):
        self.input_shape, self.dtype, self.device = tuple(input_shape), dtype, torch.device(device)
        calls = call_order(template, torch.zeros(1, *input_shape, device=_device_of(template)))
        self.activations = _elements_read(calls)
        self.first_module = next((m for _, m, _ in calls if next(m.parameters(), None) is not None), None)
        skeleton = copy.deepcopy(template).eval().to("meta")
        self.parameter_names = {name for name, _ in template.named_parameters()}
        self.batched = vmap(lambda params, buffers, x: functional_call(skeleton, (params, buffers), (x,)), in_dims=(0, 0, None))

    def load(self, stacked: dict[str, torch.Tensor]) -> None:
        self.count = len(next(iter(stacked.values())))
        moved = {name: t.to(self.device, self.dtype) if t.is_floating_point() else t.to(self.device) for name, t in stacked.items()}
        self.params = {name: t for name, t in moved.items() if name in self.parameter_names}
        self.buffers = {name: t for name, t in moved.items() if name not in self.parameter_names}

    def perturb_around(self, x0: torch.Tensor, step: float) -> None:
        self.perturbed = perturbed_inputs(x0, step, self.device, self.dtype)

    def perturbed_outputs(self, pixels: slice) -> torch.Tensor:
        return self.batched(self.params, self.buffers, self.perturbed(pixels)).reshape(self.count, -1)


def perturbed_inputs(x0: torch.Tensor, step: float, device, dtype):
    """pixels -> the inputs x0 + step e_i, then x0 - step e_i, for the pixels i of that slice (channels-last)."""
    x0 = x0.to(device)
    flat = x0.reshape(-1)

    def inputs(pixels: slice) -> torch.Tensor:
        n = pixels.stop - pixels.start
        batch, rows = flat.repeat(2 * n, 1), torch.arange(n, device=device)
        batch[rows, rows + pixels.start] += step
        batch[rows + n, rows + pixels.start] -= step
        return batch.reshape(2 * n, *x0.shape).to(dtype).contiguous(memory_format=torch.channels_last)

    return inputs


def side_by_side(template: nn.Module, input_shape, probe: dict, dtype=torch.float32, device="cpu"):
    """(runner, how): a `WideNetwork` of ``template``'s architecture, else `VmappedNetworks`, each checked on the
    networks of ``probe`` ({name: (K, *shape)}) against running them one by one, or (None, why neither works)."""
    reasons = []
    for build in (WideNetwork, VmappedNetworks):
        try:
            runner = build(template, input_shape, dtype, device)
            _check(runner, template, input_shape, probe)
            return runner, "one wide network" if build is WideNetwork else "torch.func.vmap"
        except Exception as error:  # noqa: BLE001 - whatever stops a runner means it cannot run this architecture
            reasons.append(f"{build.__name__}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
    return None, "; ".join(reasons)


def _check(runner, template: nn.Module, input_shape, probe: dict) -> None:
    """The runner's outputs at x +- e_i for two pixels equal each probe network's own, computed one by one by the
    template where it lives (the CPU), within the float32 tolerance of the runner's device; or ValueError."""
    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        dtype, runner.dtype = runner.dtype, torch.float32  # checked in float32, where equal means equal
        try:
            runner.load(probe)
            runner.perturb_around(x, 1.0)
            got = runner.perturbed_outputs(slice(0, 2)).float()
        finally:
            runner.dtype = dtype
        inputs = perturbed_inputs(x, 1.0, _device_of(template), torch.float32)(slice(0, 2))  # the probe lives there too
        want = torch.stack([functional_call(template, {n: t[k] for n, t in probe.items()}, (inputs,)).reshape(-1) for k in range(len(got))])
    if not agree(got, want, torch.float32, runner.device):
        raise ValueError("the networks side by side compute something else than one by one (e.g. they concatenate maps)")
