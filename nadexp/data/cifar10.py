"""CIFAR-10 read through torchvision, as tensors, in the representation a variant asks for.

``variant`` (protocol section 1.4):
- ``plain``: the images, normalised with the reference mean and std.
- ``nad_flip``: x' = U flip(U^T x) with U the NADs of ``nads`` completed to an orthonormal basis,
  applied to each colour channel when the NADs are 1-channel (H x W), to the whole image when they
  have 3 channels; train and test alike, on the normalised images (the space the NADs live in).
- ``fourier_flip``: the same flip in the 2-D DCT basis ordered by frequency: the control that tells a
  NAD effect from a mere frequency-order effect.
- ``poison``: training images (in [0, 1], before normalisation) carry +-``poison_eps`` along NAD
  ``nad_index`` or ``nad_index + 1`` in one channel, keyed by class; the test set stays clean.
Every variant is computed once per run on the training device, not per sample per epoch. The files are
read by nadexp.data.cifar10_files (torchvision, imported when a run first needs it).
"""

from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import torch

from nadexp.data import variants
from nadexp.errors import ConfigError
from nadexp.estimators.nads import load_nads

MEAN = (0.4914, 0.4822, 0.4465)  # the reference normalisation
STD = (0.247, 0.243, 0.261)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHAPE = (3, 32, 32)
VARIANTS = ("plain", "nad_flip", "fourier_flip", "poison")
# CIFAR-100 (dataset=cifar100, the data of the class-density paper) with its usual channel statistics.
SOURCES = ("cifar10", "cifar100")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
NORMALISATION = {"cifar10": (MEAN, STD), "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}


def _statistics(images: torch.Tensor, source: str):
    return (torch.tensor(v, dtype=images.dtype, device=images.device)[:, None, None] for v in NORMALISATION[source])


def normalise(images: torch.Tensor, source: str = "cifar10") -> torch.Tensor:
    mean, std = _statistics(images, source)
    return (images - mean) / std


def denormalise(images: torch.Tensor, source: str = "cifar10") -> torch.Tensor:
    mean, std = _statistics(images, source)
    return images * std + mean


@dataclass
class CIFARSpec:
    """What `dataset=cifar10` (or `cifar100`) reads and how it represents it (conf/dataset/cifar10.yaml).
    Validated on construction; the files are read later, in the data module's setup."""

    source: str = "cifar10"  # cifar10 | cifar100
    data_dir: str = "data"
    download: bool = False  # fetch the archive when it is missing (the machine must be online)
    check_md5: bool = True  # compare the files with CIFAR-10's checksums (false for files built yourself)
    variant: str = "plain"  # plain | nad_flip | fourier_flip | poison
    nads: Optional[str] = None  # nad_flip, poison: a nads.npy or an estimator=nads run directory
    nad_index: int = 0  # poison: the carriers are NADs nad_index and nad_index + 1
    poison_eps: float = 0.05
    augment: bool = False  # random crop (padding 4) and horizontal flip of training batches
    name: str = "cifar10"  # the dataset's part of run names

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ConfigError(f"dataset.source={self.source!r} is unknown: choose one of {', '.join(SOURCES)}")
        if self.variant == "poison" and self.source != "cifar10":
            raise ConfigError("dataset.variant=poison follows the reference's 10-class table: it needs dataset=cifar10")
        if self.variant not in VARIANTS:
            raise ConfigError(f"dataset.variant={self.variant!r} is unknown: choose one of {', '.join(VARIANTS)}")
        if self.variant in ("nad_flip", "poison") and not self.nads:
            raise ConfigError(f"dataset.variant={self.variant} needs dataset.nads: a nads.npy or the run directory of "
                              "`python run.py experiment=nads arch=ARCH`")
        if not self.poison_eps > 0:
            raise ConfigError(f"dataset.poison_eps must be > 0, got {self.poison_eps}")
        if self.nad_index < 0:
            raise ConfigError(f"dataset.nad_index must be >= 0, got {self.nad_index}")
        if not self.download:  # before anything is written or logged
            from nadexp.data.cifar10_files import require_files

            require_files(self.data_dir, self.source)
        self.nad_rows = load_nad_rows(self.nads, self.variant, self.nad_index) if self.variant in ("nad_flip", "poison") else None

    def prepare(self) -> None:
        """Downloads the files when they are missing and ``download`` allows it (once per machine)."""
        from nadexp.data.cifar10_files import files_present, load_split

        if self.download and not files_present(self.data_dir, self.source):  # no need to read them when they are there
            load_split(self.data_dir, train=True, download=True, check_md5=self.check_md5, source=self.source)

    @cached_property
    def flip(self) -> Optional[torch.Tensor]:
        return flip_for(self.variant, self.nad_rows)

    def load(self, split: str, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The network inputs (N, 3, 32, 32) float32 and labels (N,) of ``split``, on ``device``."""
        from nadexp.data.cifar10_files import load_split

        images, labels = load_split(self.data_dir, split == "train", check_md5=self.check_md5, source=self.source)
        images, labels = images.to(device), labels.to(device)
        poisoned = self.variant == "poison" and split == "train"
        carriers = self.nad_rows[self.nad_index:self.nad_index + 2] if poisoned else None
        return represent(images, labels, self.flip, carriers, self.poison_eps, self.source), labels


def load_nad_rows(nads, variant: str, nad_index: int) -> torch.Tensor:
    """The NADs as rows (k, D): D = 32 * 32 (per channel) or 3 * 32 * 32 (whole image)."""
    array = load_nads(nads)
    shape = tuple(array.shape[1:])
    if shape not in ((1, 32, 32), SHAPE) or (variant == "poison" and shape != (1, 32, 32)):
        allowed = "(k, 1, 32, 32)" if variant == "poison" else "(k, 1, 32, 32) or (k, 3, 32, 32)"
        raise ConfigError(f"dataset.nads={str(nads)!r} holds NADs of shape {list(shape)}; variant={variant} needs {allowed}")
    if variant == "poison" and not nad_index + 1 < len(array):
        raise ConfigError(f"dataset.nad_index must be between 0 and {len(array) - 2} (carriers nad_index and nad_index + 1 "
                          f"of the {len(array)} NADs in {nads}), got {nad_index}")
    return torch.as_tensor(array.reshape(len(array), -1), dtype=torch.float64)


def flip_for(variant: str, nad_rows=None):
    """The D x D flip matrix of a flip variant (None for the others), computed once per run."""
    if variant == "nad_flip":
        return variants.flip_matrix(variants.complete_basis(nad_rows))
    if variant == "fourier_flip":
        return variants.flip_matrix(variants.dct_basis(*SHAPE[1:]))
    return None


def represent(images: torch.Tensor, labels: torch.Tensor, flip=None, carriers=None, poison_eps: float = 0.05,
              source: str = "cifar10"):
    """uint8 images -> float32 network inputs on the images' device: poisoned along ``carriers`` (2, D)
    in [0, 1] if given, normalised, then flipped by ``flip`` if given."""
    x = images.float() / 255
    if carriers is not None:
        x = variants.poison(x, labels, carriers / carriers.norm(dim=1, keepdim=True), poison_eps)
    x = normalise(x, source)
    if flip is not None:
        x = variants.apply_per_channel(x, flip.to(x.device))
    return x
