import pytest
import torch
from hydra.utils import instantiate

from conftest import ARCHS


def conv(c_in, c_out, k, bias=True):
    return c_in * c_out * k * k + (c_out if bias else 0)


def linear(n_in, n_out):
    return n_in * n_out + n_out


def bn(c):
    return 2 * c


def reference_count(arch, channels, classes):
    """Parameter counts written out from the reference structure (protocol, section 1.5)."""
    if arch == "logreg":
        return linear(channels * 32 * 32, classes)
    if arch in ("lenet", "lenet_nopool"):
        side = 5 if arch == "lenet" else 24
        return conv(channels, 6, 5) + conv(6, 16, 5) + linear(16 * side * side, 120) + linear(120, 84) + linear(84, classes)
    if arch in ("vgg11", "vgg11_bn"):
        widths = [channels, 64, 128, 256, 256, 512, 512, 512, 512]
        convs = sum(conv(a, b, 3) + (bn(b) if arch == "vgg11_bn" else 0) for a, b in zip(widths, widths[1:]))
        return convs + linear(512, 512) + linear(512, 512) + linear(512, classes)
    if arch in ("resnet18", "resnet18_nopool", "resnet_narrow"):
        width, blocks = (8, 1) if arch == "resnet_narrow" else (64, 2)
        total, planes_in = conv(channels, width, 3, bias=False) + bn(width), width
        for planes, stride in [(width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)]:
            for block in range(blocks):
                total += conv(planes_in, planes, 3, False) + bn(planes) + conv(planes, planes, 3, False) + bn(planes)
                if block == 0 and (stride != 1 or planes_in != planes):
                    total += conv(planes_in, planes, 1, False) + bn(planes)
                planes_in = planes
        return total + linear(8 * width * (16 if arch == "resnet18_nopool" else 1), classes)
    if arch == "densenet121":
        growth, planes = 32, 64
        total = conv(channels, planes, 3, bias=False)
        for index, blocks in enumerate([6, 12, 24, 16]):
            for _ in range(blocks):
                total += bn(planes) + conv(planes, 4 * growth, 1, False) + bn(4 * growth) + conv(4 * growth, growth, 3, False)
                planes += growth
            if index < 3:
                total += bn(planes) + conv(planes, planes // 2, 1, False)
                planes //= 2
        return total + bn(planes) + linear(planes, classes)
    raise AssertionError(f"no reference count for {arch}")


def test_reference_counts_match_published_figures():
    # Well-known CIFAR-10 parameter counts of these reference implementations.
    assert reference_count("lenet", 3, 10) == 62_006
    assert reference_count("resnet18", 3, 10) == 11_173_962
    assert reference_count("densenet121", 3, 10) == 6_956_298


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("channels, classes", [(1, 2), (3, 10), (1, 10), (3, 2)])
def test_every_arch_builds_with_the_right_output_shape_and_size(compose, arch, channels, classes):
    cfg = compose(f"arch={arch}")
    net = instantiate(cfg.arch, input_shape=(channels, 32, 32), num_classes=classes).eval()
    with torch.no_grad():
        out = net(torch.randn(3, channels, 32, 32))
    assert out.shape == (3, classes)
    assert sum(p.numel() for p in net.parameters()) == reference_count(arch, channels, classes)


def test_vgg_initialisation_follows_the_reference(compose):
    net = instantiate(compose("arch=vgg11").arch, input_shape=(3, 32, 32), num_classes=10)
    last_conv = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    expected_std = (2.0 / (3 * 3 * 512)) ** 0.5
    assert last_conv.weight.std().item() == pytest.approx(expected_std, rel=0.02)
    assert torch.all(last_conv.bias == 0)


@pytest.mark.parametrize("arch", ["lenet_nopool", "resnet18_nopool"])
def test_the_no_pooling_variants_have_no_pooling_layer(compose, arch):
    pooling = (torch.nn.MaxPool2d, torch.nn.AvgPool2d, torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d)
    with_pools = instantiate(compose(f"arch={arch.removesuffix('_nopool')}").arch, input_shape=(1, 32, 32), num_classes=2)
    without = instantiate(compose(f"arch={arch}").arch, input_shape=(1, 32, 32), num_classes=2)
    assert any(isinstance(m, pooling) for m in with_pools.modules())
    assert not any(isinstance(m, pooling) for m in without.modules())
