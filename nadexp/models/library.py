"""Models from torchvision and timm by name, at a fresh default initialisation (never pretrained: nothing is
downloaded), adapted to the dataset's channels, image size (timm: a patch size that leaves 8 x 8 patches on images
up to 64 x 64) and classes; ``kwargs`` pass through and win (docs/library_models.md)."""

import difflib
import inspect

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nadexp.errors import ConfigError


def torchvision_model(input_shape, num_classes: int, name: str, kwargs=None) -> nn.Module:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)  # the classification builders
    _check_name("torchvision", name, names)
    channels, height, width = input_shape
    options = {"weights": None, "num_classes": num_classes}
    if "image_size" in inspect.signature(torchvision.models.get_model_builder(name)).parameters or name.startswith("vit_"):
        options["image_size"] = height
    options.update(plain_kwargs(kwargs))
    net = _build(f"arch=torchvision arch.name={name}", lambda: torchvision.models.get_model(name, **options))
    if channels != 3:
        _replace_first_conv(net, channels)
    return checked_model(net, input_shape, num_classes, f"arch=torchvision arch.name={name}", ("torchvision", name, options))


def timm_model(input_shape, num_classes: int, name: str, kwargs=None, reset_head: bool = False) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ConfigError('arch=timm needs the timm package: pip install -e ".[timm]" (part of .[dev])') from None
    _check_name("timm", name, timm.list_models())
    channels, height, width = input_shape
    given, base = plain_kwargs(kwargs), {"pretrained": False, "num_classes": num_classes, "in_chans": channels}
    sized = {"img_size": (height, width)}
    patched = {**sized, "patch_size": max(1, min(height, width) // 8)}
    where = f"arch=timm arch.name={name}"
    # Models that know an image size take img_size (and on small images, up to 64 x 64, patch_size); CNNs refuse
    # them with a TypeError. Larger images keep the model's own patch size.
    attempts = (patched, sized, {}) if min(height, width) <= 64 else (sized, {})
    for extra in attempts:
        try:
            net = timm.create_model(name, **{**base, **extra, **given})
            break
        except TypeError as error:
            if extra == {}:
                raise ConfigError(f"{where}: timm refuses these settings ({error}); see arch.kwargs") from None
        except Exception as error:  # noqa: BLE001 - the library's own message is the useful part
            fix = "adjust arch.kwargs, e.g. patch_size, or dataset.shape"
            raise ConfigError(f"{where} cannot be built for images of shape {list(input_shape)}: {error} ({fix})") from None
    if reset_head:  # timm zero-initialises some classifiers (MLP-Mixer): the network is then constant at init
        net.get_classifier().reset_parameters()
    return checked_model(net, input_shape, num_classes, where, ("timm", name, extra, given, reset_head))


def plain_kwargs(kwargs) -> dict:
    """arch.kwargs as plain Python values: the libraries take lists, not OmegaConf's ListConfig."""
    return OmegaConf.to_container(kwargs, resolve=True) if isinstance(kwargs, DictConfig) else dict(kwargs or {})


def _check_name(library: str, name: str, names: list[str]) -> None:
    if name not in names:
        starts = {}  # names by their first len(name) characters: "vit_tinny" is close to "vit_tiny_patch16_224"
        for candidate in names:
            starts.setdefault(candidate[: len(name)], []).append(candidate)
        close = [full for start in difflib.get_close_matches(name, starts, n=3, cutoff=0.75) for full in starts[start][:3]]
        close = list(dict.fromkeys(close + difflib.get_close_matches(name, names, n=5, cutoff=0.5)))[:6]
        hint = f"close matches: {', '.join(close)}" if close else f"{len(names)} names, e.g. {', '.join(names[:5])}"
        raise ConfigError(f"arch.name={name!r} is not a {library} classification model ({hint})")


def _build(where: str, make):
    try:
        return make()
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"{where}: the library refuses these settings ({error}); see arch.kwargs") from None


def _replace_first_conv(net: nn.Module, channels: int) -> None:
    """The first convolution rebuilt for ``channels`` input channels, otherwise as it was."""
    for parent in net.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                geometry = (child.kernel_size, child.stride, child.padding, child.dilation, child.groups if child.groups == 1 else channels)
                conv = nn.Conv2d(channels, child.out_channels, *geometry, child.bias is not None, child.padding_mode)
                setattr(parent, child_name, conv)
                return
    raise ConfigError("the model has no Conv2d layer to take other than 3 input channels: use dataset.shape=[3,H,W]")


FIXES = "arch.kwargs or dataset.shape"
_CHECKED: set[str] = set()  # settings already shown to work in this process


def checked_model(net: nn.Module, input_shape, num_classes: int, where: str, settings) -> nn.Module:
    """The model, after one forward pass of a blank batch shows it takes the input shape and gives num_classes.
    The pass is made once per settings: NAD estimators build the model again for every network."""
    key = repr((settings, tuple(input_shape), num_classes))
    if key in _CHECKED:
        return net.train()
    try:
        with torch.no_grad():
            out = net.eval()(torch.zeros(2, *input_shape))
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"{where} cannot take images of shape {list(input_shape)}: {error} (adjust {FIXES})") from None
    if tuple(out.shape) != (2, num_classes):
        raise ConfigError(f"{where} gives outputs of shape {list(out.shape[1:])} for {num_classes} classes")
    _CHECKED.add(key)
    return net.train()
