"""CIFAR-10 (and CIFAR-100, Fashion-MNIST) as tensors in the representation a ``variant`` asks for (docs/cifar10.md):
plain (normalised), nad_flip (x' = U flip(U^T x), U the NADs completed to a basis), fourier_flip (the same in the
DCT basis: the control) or poison (training images keyed by class along NADs); computed once per run."""

from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import torch

from nadexp.data import fashion_mnist_files, variants
from nadexp.data.cifar10_files import files_present, load_split, require_files
from nadexp.data.settings import CIFARSettings, poison_carriers
from nadexp.devices import full_float32
from nadexp.errors import ConfigError

MEAN = (0.4914, 0.4822, 0.4465)  # the reference normalisation
STD = (0.247, 0.243, 0.261)
NORMALISATION = {"cifar10": (MEAN, STD), "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}
NORMALISATION["fashion_mnist"] = ((0.2860,), (0.3530,))  # the training images' mean and std


def _statistics(images: torch.Tensor, source: str):
    return (torch.tensor(v, dtype=images.dtype, device=images.device)[:, None, None] for v in NORMALISATION[source])


def normalise(images: torch.Tensor, source: str = "cifar10") -> torch.Tensor:
    mean, std = _statistics(images, source)
    return (images - mean) / std


def denormalise(images: torch.Tensor, source: str = "cifar10") -> torch.Tensor:
    mean, std = _statistics(images, source)
    return images * std + mean


@dataclass
class CIFARDataset(CIFARSettings):
    """CIFAR as its settings describe it (checked on construction, the files' presence included); the files
    are read later, in the data module's setup."""

    def __post_init__(self):
        super().__post_init__()
        if self.source == "fashion_mnist":
            if self.download:
                raise ConfigError(f"dataset.download=true: nadexp does not download Fashion-MNIST; {fashion_mnist_files.HOW_TO_GET}")
            fashion_mnist_files.require_files(self.data_dir)
        elif not self.download:  # before anything is written or logged
            require_files(self.data_dir, self.source)
        nads = self._nad_array
        self.nad_rows = None if nads is None else torch.as_tensor(nads.reshape(len(nads), -1), dtype=torch.float64)

    def prepare(self) -> None:
        """Downloads the files when they are missing and ``download`` allows it (once per machine)."""
        if self.download and not files_present(self.data_dir, self.source):  # no need to read them when they are there
            load_split(self.data_dir, train=True, download=True, check_md5=self.check_md5, source=self.source)

    @cached_property
    def flip(self) -> Optional[torch.Tensor]:
        return flip_for(self.variant, self.nad_rows, self.image_shape)

    def load(self, split: str, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The network inputs (N, C, H, W) float32 and labels (N,) of ``split``, on ``device``."""
        if self.source == "fashion_mnist":  # check_md5=false: files of other sizes, built yourself
            images, labels = fashion_mnist_files.load_split(self.data_dir, split == "train", check_sizes=self.check_md5)
        else:
            images, labels = load_split(self.data_dir, split == "train", check_md5=self.check_md5, source=self.source)
        images, labels = images.to(device), labels.to(device)
        poisoned = self.variant == "poison" and split == "train"
        carriers = self.nad_rows[self.nad_index : self.nad_index + poison_carriers(self.image_shape[0])] if poisoned else None
        return represent(images, labels, self.flip, carriers, self.poison_eps, self.source), labels


def flip_for(variant: str, nad_rows=None, shape=(3, 32, 32)):
    """The D x D flip matrix of a flip variant (None for the others) for images of ``shape``, computed once per run."""
    if variant == "nad_flip":
        return variants.flip_matrix(variants.complete_basis(nad_rows))
    if variant == "fourier_flip":
        return variants.flip_matrix(variants.dct_basis(*shape[1:]))
    return None


def represent(images: torch.Tensor, labels: torch.Tensor, flip=None, carriers=None, poison_eps: float = 0.05, source: str = "cifar10"):
    """uint8 images -> float32 network inputs on the images' device: poisoned along ``carriers`` (2, D)
    in [0, 1] if given, normalised, then flipped by ``flip`` if given."""
    with full_float32():  # tf32=true rounds the network's products on a GPU, not the images it is given
        x = images.float() / 255
        if carriers is not None:
            x = variants.poison(x, labels, carriers / carriers.norm(dim=1, keepdim=True), poison_eps)
        x = normalise(x, source)
        if flip is not None:
            x = variants.apply_per_channel(x, flip.to(x.device))
    return x
