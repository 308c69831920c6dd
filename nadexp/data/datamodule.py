"""Lightning data modules: whole datasets held as tensors on the training device, served batch by batch. Every
number that decides what a run sees (D(v), the order, CIFAR augmentation) is drawn by a CPU generator and moved
after, so one seed gives the same data on every device."""

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler

from nadexp.data.cifar10 import CIFARDataset
from nadexp.data.directional import DirectionalDataset
from nadexp.data.settings import CLASSES, FASHION_CLASSES, NUM_CLASSES
from nadexp.errors import ConfigError


class TensorBatches(Dataset):
    """Tensors indexed a whole batch at a time: one gather per batch instead of a per-sample collate."""

    def __init__(self, *tensors: torch.Tensor):
        self.tensors = tensors

    def __len__(self):
        return len(self.tensors[0])

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices):
        index = torch.as_tensor(indices)
        if self.tensors[0].is_cuda:  # from pinned memory the copy is queued, not waited for
            index = index.pin_memory().to(self.tensors[0].device, non_blocking=True)
        return tuple(t[index] for t in self.tensors)


def keep_batch(batch):
    """collate_fn for TensorBatches: the batch is already stacked."""
    return batch


class TensorDataModule(pl.LightningDataModule):
    """Batches of a train and a test split held as tensors; subclasses say how a split is made in ``load``."""

    def __init__(self, batch_size: int = 128, eval_batch_size: int = 1024):
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError(f"dataset.batch_size and dataset.eval_batch_size must be >= 1, got {batch_size}, {eval_batch_size}")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.train_set = self.test_set = None

    def load(self, split: str, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The inputs and labels of ``split`` ("train" or "test") on ``device``; analyses that need one split call this directly."""
        raise NotImplementedError

    def setup(self, stage=None):
        if self.train_set is None:
            device = self.trainer.strategy.root_device if self.trainer is not None else None
            self.train_set, self.test_set = (TensorBatches(*self.load(split, device)) for split in ("train", "test"))

    def shuffle_generator(self) -> torch.Generator:
        """The training order follows the data seed alone, so K stacked models can reproduce it exactly."""
        return torch.Generator().manual_seed(self.seed)

    def train_dataloader(self):
        order = self.shuffle_generator()
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, collate_fn=keep_batch, generator=order)

    def val_dataloader(self):
        return DataLoader(self.test_set, batch_size=self.eval_batch_size, sampler=self.eval_sampler(), collate_fn=keep_batch)

    def eval_sampler(self):
        """Under DDP, each test sample on exactly one rank: Lightning's DistributedSampler would pad the split
        to a multiple of the world size with repeated samples, which the summed accuracy would count twice."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return None
        return UnrepeatedDistributedSampler(self.test_set, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False)

    test_dataloader = val_dataloader


class DirectionalDataModule(TensorDataModule):
    """D(v), drawn on the CPU and moved to the training device in ``setup``; every DDP rank draws the same data."""

    def __init__(self, batch_size: int = 128, eval_batch_size: int = 1024, **dataset):
        super().__init__(batch_size, eval_batch_size)
        self.dataset = DirectionalDataset(**dataset)
        self.seed = self.dataset.seed

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.dataset.shape)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    def load(self, split: str, device=None):
        return self.dataset.sample(split, device)


class CIFARDataModule(TensorDataModule):
    """CIFAR-10 or CIFAR-100 in the representation of ``variant`` (see nadexp.data.cifar10), read once per process."""

    def __init__(self, batch_size: int = 128, eval_batch_size: int = 1024, seed: int = 0, **spec):
        super().__init__(batch_size, eval_batch_size)
        self.spec = CIFARDataset(**spec)
        self.seed = seed
        self.input_shape = self.spec.image_shape
        self.num_classes = NUM_CLASSES[self.spec.source]
        self.class_names = {"cifar10": CLASSES, "fashion_mnist": FASHION_CLASSES}.get(self.spec.source)

    def prepare_data(self):
        self.spec.prepare()

    def load(self, split: str, device=None):
        return self.spec.load(split, device)

    def train_dataloader(self):
        order = EpochShuffle(len(self.train_set), self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=order, collate_fn=keep_batch)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        if self.spec.augment and self.trainer is not None and self.trainer.training:
            images, labels = batch
            return random_crop_and_flip(images), labels
        return batch


class EpochShuffle(Sampler):
    """A random order that depends on (seed, epoch) alone: a run resumed from a checkpoint sees the batches
    that an uninterrupted run would have seen. Lightning calls ``set_epoch`` (through its DDP wrapper too)."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return self.size

    def __iter__(self):
        stream = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]
        return iter(torch.randperm(self.size, generator=torch.Generator().manual_seed(int(stream))).tolist())


def random_crop_and_flip(images: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation on a whole batch: a random crop of the zero-padded image and a
    horizontal flip with probability 1/2, drawn per image from torch's global CPU generator (on any device: the
    same crops and flips for a seed) and moved to the images' device."""
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    dy, dx = (torch.randint(0, 2 * padding + 1, (n,)).to(images.device, non_blocking=True) for _ in range(2))
    rows = (dy[:, None] + torch.arange(height, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(width, device=images.device))[:, None, None, :]
    flip = (torch.rand(n) < 0.5).to(images.device, non_blocking=True)
    cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channels, rows, cols]
