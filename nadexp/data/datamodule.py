"""The LightningDataModule of D(v): tensors drawn once on the training device, served batch by batch."""

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from nadexp.data.directional import DirectionalDataset
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
        index = torch.as_tensor(indices, device=self.tensors[0].device)
        return tuple(t[index] for t in self.tensors)


def keep_batch(batch):
    """collate_fn for TensorBatches: the batch is already stacked."""
    return batch


class DirectionalDataModule(pl.LightningDataModule):
    """Generates D(v) on the training device in ``setup``; every DDP rank draws the same data."""

    def __init__(self, batch_size: int = 128, eval_batch_size: int = 1024, **dataset):
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError(f"dataset.batch_size and dataset.eval_batch_size must be >= 1, got {batch_size}, {eval_batch_size}")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.dataset = DirectionalDataset(**dataset)
        self.train_set = self.test_set = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.dataset.shape)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    def setup(self, stage=None):
        if self.train_set is None:
            device = self.trainer.strategy.root_device if self.trainer is not None else None
            self.train_set = TensorBatches(*self.dataset.sample("train", device))
            self.test_set = TensorBatches(*self.dataset.sample("test", device))

    def shuffle_generator(self) -> torch.Generator:
        """The training order follows the data seed alone, so K stacked models can reproduce it exactly."""
        return torch.Generator().manual_seed(self.dataset.seed)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, collate_fn=keep_batch,
                          generator=self.shuffle_generator())

    def val_dataloader(self):
        return DataLoader(self.test_set, batch_size=self.eval_batch_size, collate_fn=keep_batch)

    test_dataloader = val_dataloader
