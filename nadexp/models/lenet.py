"""LeNet-5 as in the NAD reference, optionally without its two max-pooling layers."""

from torch import nn

from nadexp.errors import ConfigError


class LeNet(nn.Module):
    """conv5x5(6) - ReLU - [maxpool2] - conv5x5(16) - ReLU - [maxpool2] - fc 120 - fc 84 - fc out; ``pool=False``
    drops the pools and widens fc 120 (16 x 24 x 24 inputs on 32 x 32 images). Each ReLU runs after its pool: they
    commute (ReLU is monotone), so this is the reference's conv-ReLU-pool exactly, with a quarter of the ReLU work."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, pool: bool = True):
        super().__init__()
        channels, height, width = input_shape
        pooling = (lambda: [nn.MaxPool2d(2)]) if pool else (lambda: [])  # a module per place, so hooks can tell them apart
        first = (nn.Conv2d(channels, 6, 5), *pooling(), nn.ReLU(inplace=True))
        self.features = nn.Sequential(*first, nn.Conv2d(6, 16, 5), *pooling(), nn.ReLU(inplace=True))
        for _ in range(2):  # each stage: a valid 5x5 conv, then the optional 2x2 pool
            height, width = height - 4, width - 4
            if pool:
                height, width = height // 2, width // 2
        if height < 1 or width < 1:
            layers, side = " and 2 x 2 pools" if pool else "", 16 if pool else 9
            small = f"dataset.shape={list(input_shape)} is too small for LeNet"
            raise ConfigError(f"{small}: its two 5 x 5 convolutions{layers} need images of at least {side} x {side}")
        fully_connected = (nn.Linear(16 * height * width, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes))
        self.classifier = nn.Sequential(nn.Flatten(), *fully_connected)

    def forward(self, x):
        return self.classifier(self.features(x))
