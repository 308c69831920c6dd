"""CIFAR-style ResNet-18: 3x3 stride-1 stem, no max-pool, basic blocks [2, 2, 2, 2], optionally without its final average pool."""

from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        first = (nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True))
        self.body = nn.Sequential(*first, nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes))
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """Stages exposed as ``stages[0..3]`` (representation analyses read them); an adaptive final pool (the
    reference's 4 x 4 pool on 32 x 32 images), none with ``pool=False``; ``width``: the first stage's channels (64,
    doubling), ``blocks`` per stage (arch=resnet_narrow: width 8, one block each, trains a Fourier map on a CPU)."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, blocks=(2, 2, 2, 2), pool: bool = True, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        stages, in_planes = [], width
        for index, (planes, count) in enumerate(zip((width, 2 * width, 4 * width, 8 * width), blocks)):
            strides = [1 if index == 0 else 2] + [1] * (count - 1)
            stages.append(nn.Sequential(*(BasicBlock(in_planes if k == 0 else planes, planes, s) for k, s in enumerate(strides))))
            in_planes = planes
        self.stages = nn.Sequential(*stages)
        if pool:
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * width, num_classes))
        else:
            rows, cols = input_shape[1:]
            for _ in range(3):  # stages 2-4 each start with a stride-2 3x3 convolution (padding 1)
                rows, cols = (rows + 1) // 2, (cols + 1) // 2
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * width * rows * cols, num_classes))

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))
