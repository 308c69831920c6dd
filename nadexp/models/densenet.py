"""CIFAR-style DenseNet-121: growth 32, blocks [6, 12, 24, 16], compression 0.5."""

import math

import torch
from torch import nn


def _bn_relu_conv(in_planes: int, out_planes: int, kernel: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(in_planes), nn.ReLU(inplace=True), nn.Conv2d(in_planes, out_planes, kernel, padding=kernel // 2, bias=False)]


class Bottleneck(nn.Module):
    def __init__(self, in_planes: int, growth: int):
        super().__init__()
        self.body = nn.Sequential(*_bn_relu_conv(in_planes, 4 * growth, 1), *_bn_relu_conv(4 * growth, growth, 3))

    def forward(self, x):
        return torch.cat([self.body(x), x], 1)


class DenseNet121(nn.Module):
    """The reference ends with a 4 x 4 average pool; the adaptive pool here is the same on 32 x 32."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, growth=32, blocks=(6, 12, 24, 16), reduction=0.5):
        super().__init__()
        planes = 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(input_shape[0], planes, 3, padding=1, bias=False)]
        for index, count in enumerate(blocks):
            for _ in range(count):
                layers.append(Bottleneck(planes, growth))
                planes += growth
            if index < len(blocks) - 1:  # transition: 1x1 conv that compresses, then 2x2 average pool
                out_planes = int(math.floor(planes * reduction))
                layers += [*_bn_relu_conv(planes, out_planes, 1), nn.AvgPool2d(2)]
                planes = out_planes
        layers += [nn.BatchNorm2d(planes), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(planes, num_classes))

    def forward(self, x):
        return self.head(self.features(x))
