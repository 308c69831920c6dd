"""The LightningModule that trains any architecture of the zoo as a classifier."""

from collections.abc import Callable
from typing import Optional

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from nadexp.cores import share
from nadexp.generators import seeded
from nadexp.training.keyed_dropout import draws_of

RANK_STREAM, CUDA_STREAM = 1, 2  # seeded(seed, stream, rank): the random layers' streams of DDP ranks and GPUs


class Classifier(pl.LightningModule):
    """Cross-entropy training of ``net`` (logs train/loss, train/acc, test/loss, test/acc) with the config groups'
    ``optimizer`` and ``scheduler`` partials (the scheduler steps every step, told the total). Dropout is keyed; other
    random layers draw from torch's generators: rank 0 continues the run's CPU stream, every other DDP rank and each
    GPU's generator start streams of their own from ``seed``, so no two ranks draw alike and a seed draws again alike."""

    def __init__(self, net: nn.Module, optimizer: Callable, scheduler: Optional[Callable] = None, channels_last=False, seed=0):
        super().__init__()
        # inputs follow the net's memory format (see build_data_and_net)
        self.net, self.seed, self.channels_last = net, seed, channels_last
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        # Epoch sums kept as tensors on the device: logging a scalar per step would sync every step.
        self._sums: dict[str, tuple[torch.Tensor, int]] = {}
        self.history: list[dict] = []  # one dict of epoch metrics per training epoch, for result.json

    def forward(self, x):
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # a no-op for 1-channel images
        return self.net(x)

    def _accumulate(self, split: str, x, y):
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            stats = torch.stack([loss.detach() * len(y), (logits.argmax(1) == y).sum()])
        sums, count = self._sums.get(split, (0, 0))
        self._sums[split] = (sums + stats, count + len(y))
        return loss

    def _log_epoch(self, split: str):
        if split not in self._sums:
            return
        sums, count = self._sums.pop(split)
        totals = torch.cat([sums, sums.new_tensor([count])])
        loss, correct, count = self.trainer.strategy.reduce(totals, reduce_op="sum")  # summed over DDP ranks
        metrics = {f"{split}/loss": loss / count, f"{split}/acc": correct / count}
        self.log_dict(metrics, prog_bar=True)
        if not self.trainer.testing:
            if not self.history or self.history[-1]["epoch"] != self.current_epoch:
                self.history.append({"epoch": self.current_epoch})
            self.history[-1].update({key: round(value.item(), 6) for key, value in metrics.items()})

    def on_train_epoch_start(self):
        share()  # another nadexp process may have started or ended on this machine (nadexp.cores)

    def on_fit_start(self):
        rank = self.global_rank
        if (draws := draws_of(self.net)) is not None:
            draws.on_rank(rank)
        if rank > 0:
            torch.set_rng_state(seeded(self.seed, RANK_STREAM, rank).get_state())
        if self.device.type == "cuda":
            torch.cuda.default_generators[self.device.index or 0].manual_seed(seeded(self.seed, CUDA_STREAM, rank).initial_seed())

    def training_step(self, batch, batch_idx):
        draws, batches = draws_of(self.net), self.trainer.num_training_batches
        if draws is not None:  # the step that keys dropout masks: epoch and batch, so a resumed run draws as before
            draws.step = self.current_epoch * int(batches) + batch_idx if batches != float("inf") else draws.step + 1
        return self._accumulate("train", *batch)

    def on_train_epoch_end(self):
        self._log_epoch("train")

    def validation_step(self, batch, batch_idx):
        self._accumulate("test", *batch)

    def on_validation_epoch_end(self):
        self._log_epoch("test")

    test_step = validation_step
    on_test_epoch_end = on_validation_epoch_end

    # The epoch history travels in checkpoints, so a resumed run's result.json covers every epoch.
    def on_save_checkpoint(self, checkpoint):
        checkpoint["history"] = self.history

    def on_load_checkpoint(self, checkpoint):
        self.history = checkpoint.get("history", [])

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer, total_iters=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
