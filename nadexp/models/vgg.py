"""VGG for 32 x 32 images, with the reference's initialisation (conv weights ~ N(0, 2/(k*k*out)))."""

import math

from torch import nn

from nadexp.errors import ConfigError

CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, depth="vgg11", batch_norm=False, dropout=0.5):
        super().__init__()
        if depth not in CONFIGS:
            raise ConfigError(f"arch.depth must be one of {sorted(CONFIGS)}, got {depth!r}")
        channels, height, width = input_shape
        layers: list[nn.Module] = []
        for item in CONFIGS[depth]:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            else:
                norm = [nn.BatchNorm2d(item)] if batch_norm else []
                layers += [nn.Conv2d(channels, item, 3, padding=1), *norm, nn.ReLU(inplace=True)]
                channels = item
        if height < 1 or width < 1:
            raise ConfigError(f"dataset.shape={list(input_shape)} is too small for VGG: its five pools need images of at least 32 x 32")
        self.features = nn.Sequential(*layers)
        first = (nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * height * width, 512), nn.ReLU(inplace=True))
        second = (nn.Dropout(dropout), nn.Linear(512, 512), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(*first, *second, nn.Linear(512, num_classes))
        self.reset_parameters()

    def reset_parameters(self):
        """The reference's conv init; re-initialising a network calls this after its layers' own resets."""
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.classifier(self.features(x))
