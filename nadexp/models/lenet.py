"""LeNet-5 as in the NAD reference, optionally without its two max-pooling layers."""

from torch import nn

from nadexp.errors import ConfigError


class LeNet(nn.Module):
    """conv5x5(6) - ReLU - [maxpool2] - conv5x5(16) - ReLU - [maxpool2] - fc 120 - fc 84 - fc out.

    With ``pool=False`` the pooling layers are dropped and the first fully connected layer is
    widened to the larger feature map (16 x 24 x 24 = 9216 inputs on 32 x 32 images).

    Each ReLU runs after its pooling layer: max-pooling and ReLU commute (ReLU is monotone), so the
    function is the reference's conv-ReLU-pool exactly, with a quarter of the ReLU work.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, pool: bool = True):
        super().__init__()
        channels, height, width = input_shape
        pooling = (lambda: [nn.MaxPool2d(2)]) if pool else (lambda: [])  # a module per place, so hooks can tell them apart
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5),
            *pooling(),
            nn.ReLU(inplace=True),
            nn.Conv2d(6, 16, 5),
            *pooling(),
            nn.ReLU(inplace=True),
        )
        for _ in range(2):  # each stage: a valid 5x5 conv, then the optional 2x2 pool
            height, width = height - 4, width - 4
            if pool:
                height, width = height // 2, width // 2
        if height < 1 or width < 1:
            raise ConfigError(
                f"dataset.shape={list(input_shape)} is too small for LeNet: its two 5 x 5 convolutions"
                f"{' and 2 x 2 pools' if pool else ''} need images of at least {16 if pool else 9} x "
                f"{16 if pool else 9}"
            )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * height * width, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
