"""What a dataset is: the typed, checked settings of `dataset=directional` and `dataset=cifar10|cifar100|fashion_mnist`,
plain dataclasses without torch (the config schemas, nadexp.config), so a run checks them before it imports torch."""

from dataclasses import dataclass, field
from typing import Optional

from nadexp.data.nad_file import load_nads
from nadexp.errors import ConfigError

BASES = ("fourier", "pixel", "random", "nad")
FOURIER_PHASES = ("sine", "cosine")


def _address_ranges(basis: str, shape, nads=None) -> dict[str, int]:
    """Name and exclusive upper bound of each integer in a direction address."""
    channels, height, width = shape
    if basis in ("fourier", "pixel"):
        return {"kx": width, "ky": height} if basis == "fourier" else {"row": height, "col": width}
    return {"index": channels * height * width if basis == "random" else 0 if nads is None else len(nads)}


def validate_direction(basis: str, direction, shape, nads=None) -> None:
    """Raise ConfigError unless ``direction`` addresses a vector of ``basis`` on images of ``shape`` (``nads``: the
    (k, C, H, W) array of an NAD estimate, for basis nad)."""
    if basis not in BASES:
        raise ConfigError(f"dataset.basis={basis!r} is unknown: choose one of {', '.join(BASES)}")
    ranges = _address_ranges(basis, shape, nads)
    names = ", ".join(ranges)
    if len(direction) != len(ranges):
        raise ConfigError(f"dataset.direction must be [{names}] for basis={basis}, got {list(direction)}")
    for (name, bound), value in zip(ranges.items(), direction):
        if not 0 <= value < bound:
            need = f"need 0 <= {name} < {bound} for images of shape {list(shape)}"
            raise ConfigError(f"dataset.direction={list(direction)} is outside the {basis} grid: {need}")


@dataclass
class DirectionalSettings:
    """D(v): the direction, the constants and the seed (conf/dataset/directional.yaml)."""

    basis: str = "fourier"  # fourier | pixel | random | nad
    direction: list[int] = field(default_factory=lambda: [1, 0])
    eps: float = 2.0  # the published figures; the authors' code used 1
    sigma: float = 3.0
    n_train: int = 10_000
    n_test: int = 10_000
    shape: list[int] = field(default_factory=lambda: [1, 32, 32])
    seed: int = 0
    basis_seed: int = 0
    fourier_phase: str = "cosine"  # basis=fourier: cosine | sine (the authors' code; cosine where the sine vanishes)
    nads: Optional[str] = None  # basis=nad: a nads.npy, or the run directory of an estimator=nads run

    num_classes = 2

    def __post_init__(self):
        self.shape, self.direction = list(self.shape), list(self.direction)  # plain lists, also from a config
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ConfigError(f"dataset.shape must be [channels, height, width] of positive integers, got {list(self.shape)}")
        if not self.eps > 0:
            raise ConfigError(f"dataset.eps must be > 0, got {self.eps}")
        if not self.sigma >= 0:
            raise ConfigError(f"dataset.sigma must be >= 0, got {self.sigma}")
        for name in ("n_train", "n_test"):
            if getattr(self, name) < 2:
                raise ConfigError(f"dataset.{name} must be >= 2 so that both classes appear, got {getattr(self, name)}")
        if self.fourier_phase not in FOURIER_PHASES:
            raise ConfigError(f"dataset.fourier_phase={self.fourier_phase!r} is unknown: choose one of {', '.join(FOURIER_PHASES)}")
        self._nad_array = None
        if self.basis == "nad":
            if not self.nads:
                raise ConfigError("dataset.basis=nad needs dataset.nads: the path of a nads.npy or of an estimator=nads run directory")
            self._nad_array = load_nads(self.nads, self.shape)
        validate_direction(self.basis, self.direction, self.shape, self._nad_array)


CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHAPE = (3, 32, 32)
VARIANTS = ("plain", "nad_flip", "fourier_flip", "poison")
# CIFAR-100 (dataset=cifar100, the data of the class-density paper) with its usual channel statistics; Fashion-MNIST
# (dataset=fashion_mnist: grey 28 x 28 images from Debian's dataset-fashion-mnist package) for real images on a CPU.
SOURCES = ("cifar10", "cifar100", "fashion_mnist")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "fashion_mnist": 10}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SHAPES = {"cifar10": SHAPE, "cifar100": SHAPE, "fashion_mnist": (1, 28, 28)}
POISON_SOURCES = ("cifar10", "fashion_mnist")  # 10 classes: the reference's table, and its grey-image version


def poison_carriers(channels: int) -> int:
    """How many consecutive NADs the poison table of images with ``channels`` channels uses
    (nadexp.data.variants.poison_key): 2 for colour images, 5 for grey ones."""
    return 2 if channels >= 3 else 5


@dataclass
class CIFARSettings:
    """What `dataset=cifar10` (or `cifar100`, `fashion_mnist`) reads and how it represents it (conf/dataset/cifar10.yaml)."""

    source: str = "cifar10"  # cifar10 | cifar100 | fashion_mnist
    data_dir: str = "data"
    download: bool = False  # fetch the archive when it is missing (the machine must be online)
    check_md5: bool = True  # compare the files with the published ones (false for files built yourself)
    variant: str = "plain"  # plain | nad_flip | fourier_flip | poison
    nads: Optional[str] = None  # nad_flip, poison: a nads.npy or an estimator=nads run directory
    nad_index: int = 0  # poison: the carriers are NADs nad_index and nad_index + 1 (grey images: to nad_index + 4)
    poison_eps: float = 0.05
    augment: bool = False  # random crop (padding 4) and horizontal flip of training batches
    name: str = "cifar10"  # the dataset's part of run names
    shape: Optional[list[int]] = None  # the images' [C, H, W]: fixed by the source; a value given is checked against it

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ConfigError(f"dataset.source={self.source!r} is unknown: choose one of {', '.join(SOURCES)}")
        if self.shape is not None and tuple(self.shape) != self.image_shape:
            images, image_shape = " x ".join(map(str, self.image_shape)), ",".join(map(str, self.image_shape))
            fix = f"set dataset.shape=[{image_shape}] or leave it out"
            raise ConfigError(f"dataset.shape={list(self.shape)} does not fit {self.source}: its images are {images}; {fix}")
        if self.variant == "poison" and self.source not in POISON_SOURCES:
            needs = f"it needs dataset=cifar10 or fashion_mnist (dataset.source={self.source}: plain, nad_flip or fourier_flip)"
            raise ConfigError(f"dataset.variant=poison keys 10 classes (the reference's table): {needs}")
        if self.variant not in VARIANTS:
            raise ConfigError(f"dataset.variant={self.variant!r} is unknown: choose one of {', '.join(VARIANTS)}")
        if self.variant in ("nad_flip", "poison") and not self.nads:
            run = "`python run.py experiment=nads arch=ARCH`"
            raise ConfigError(f"dataset.variant={self.variant} needs dataset.nads: a nads.npy or the run directory of {run}")
        if not self.poison_eps > 0:
            raise ConfigError(f"dataset.poison_eps must be > 0, got {self.poison_eps}")
        if self.nad_index < 0:
            raise ConfigError(f"dataset.nad_index must be >= 0, got {self.nad_index}")
        self._nad_array = self._checked_nads() if self.variant in ("nad_flip", "poison") else None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The images' (C, H, W)."""
        return SHAPES[self.source]

    def _checked_nads(self):
        """The NADs of nad_flip and poison, of the images' size: 1-channel or all-channel ones (poison: 1-channel, from nad_index on)."""
        array = load_nads(self.nads)
        shape, (channels, height, width) = tuple(array.shape[1:]), self.image_shape
        one_channel = (1, height, width)
        if shape not in (one_channel, self.image_shape) or (self.variant == "poison" and shape != one_channel):
            options = (1,) if self.variant == "poison" or channels == 1 else (1, channels)
            allowed = " or ".join(f"(k, {c}, {height}, {width})" for c in options)
            estimate = f"python run.py experiment=nads dataset.shape=[1,{height},{width}]"
            holds = f"dataset.nads={str(self.nads)!r} holds NADs of shape {list(shape)}"
            raise ConfigError(f"{holds}; variant={self.variant} of {self.source} needs {allowed} ({estimate})")
        carriers = poison_carriers(channels)
        if self.variant == "poison" and not self.nad_index + carriers - 1 < len(array):
            carried = f"carriers nad_index to nad_index + {carriers - 1} of the {len(array)} NADs in {self.nads}"
            raise ConfigError(f"dataset.nad_index must be between 0 and {len(array) - carriers} ({carried}), got {self.nad_index}")
        return array
