"""Stage representations of a network: spatially average-pooled outputs of its stages, captured with forward hooks in
one batched pass and reduced by an uncentred SVD (Jamroz & Kurdziel). Automatic stages (docs/analyses.md): each
residual stage, else the end of each resolution (every pooling layer of ``features``, and its output when
parametrised layers follow the last one), a quarter of a ViT's or Mixer's blocks, torchvision ResNets' layer1..4."""

import torch
from torch import nn

from nadexp.errors import ConfigError

POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def auto_stages(net: nn.Module) -> list[str]:
    if isinstance(getattr(net, "stages", None), nn.Sequential):  # our ResNet-18; timm's ConvNeXt, ResNets, ...
        return [f"stages.{i}" for i in range(len(net.stages))]
    blocks = getattr(net, "blocks", None)
    if isinstance(blocks, nn.Sequential) and len(blocks):  # a ViT or MLP-Mixer (timm): the block ending each quarter
        return [f"blocks.{i}" for i in sorted({max(0, round(len(blocks) * q / 4) - 1) for q in (1, 2, 3, 4)})]
    if all(hasattr(net, f"layer{i}") for i in range(1, 5)):  # torchvision's ResNets
        return [f"layer{i}" for i in range(1, 5)]
    features = getattr(net, "features", None)
    if not isinstance(features, nn.Sequential):
        missing = "no stages to analyse (no `stages` or `features` container)"
        raise ConfigError(f"{type(net).__name__} has {missing}; give module names in estimator.stages")
    children = list(features.named_children())
    pools = [i for i, (_, m) in enumerate(children) if isinstance(m, POOLS)]
    names = [f"features.{children[i][0]}" for i in pools]
    after_last = children[pools[-1] + 1 :] if pools else children
    if any(any(True for _ in m.parameters()) for _, m in after_last):
        names.append("features")
    return names


def resolve_stages(net: nn.Module, stages) -> list[str]:
    """``stages`` ("auto" or module names) as module names of ``net``; ConfigError for unknown names."""
    names = auto_stages(net) if stages == "auto" else list(stages)
    modules = dict(net.named_modules())
    unknown = [name for name in names if name not in modules]
    if unknown:
        auto, examples = ", ".join(auto_stages(net)) if stages != "auto" else "none", ", ".join(list(modules)[1:6])
        unknown = f"estimator.stages: {', '.join(unknown)} is not a module of {type(net).__name__}"
        raise ConfigError(f"{unknown}; use auto (here: {auto}) or module names such as {examples}")
    if not names:
        raise ConfigError(f"estimator.stages resolves to no stage for {type(net).__name__}")
    return names


@torch.no_grad()
def stage_representations(net: nn.Module, stages: list[str], images: torch.Tensor, batch_size=1024, device=None) -> dict[str, torch.Tensor]:
    """{stage: (N, C) spatial means of its output} for all ``images``, in one pass of batches on ``device``;
    results are gathered on the CPU in float32."""
    device = torch.device(device or "cpu")
    net = net.to(device).eval()
    modules = dict(net.named_modules())
    captured: dict[str, list] = {name: [] for name in stages}
    handles = []
    for name in stages:

        def hook(module, inputs, output, name=name):
            if output.dim() == 3:  # (N, tokens, C) of a transformer or mixer block: the mean token
                pooled = output.float().mean(dim=1)
            else:  # (N, C, H, W): the spatial mean
                pooled = output.float().mean(dim=tuple(range(2, output.dim()))) if output.dim() > 2 else output.float()
            captured[name].append(pooled.to("cpu", non_blocking=True))

        handles.append(modules[name].register_forward_hook(hook))
    try:
        for start in range(0, len(images), batch_size):
            net(images[start : start + batch_size].to(device, non_blocking=True))
    finally:
        for handle in handles:
            handle.remove()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {name: torch.cat(chunks) for name, chunks in captured.items()}


def svd_reduce(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The uncentred SVD projection of ``x`` (n, d) on its top ``dim`` right singular vectors: returns the
    reduced (n, k) matrix (k = min(dim, d)), the (d, k) basis, and all singular values."""
    x64 = x.double()
    _, singular_values, vh = torch.linalg.svd(x64, full_matrices=False)
    basis = vh[: min(dim, x.shape[1])].T
    return (x64 @ basis).float(), basis.float(), singular_values
