"""Per-epoch weight snapshots for analyses of how weights move during training (estimator=hyperplanes)."""

from pathlib import Path

import pytorch_lightning as pl

SNAPSHOT_PATTERN = "epoch_*.ckpt"


class EpochSnapshots(pl.Callback):
    """Saves the weights (a weights-only Lightning checkpoint) before training as epoch_000.ckpt and after
    every epoch e as epoch_<e>.ckpt, e counting completed epochs. A resumed run keeps the files it finds."""

    def __init__(self, dirpath: str):
        self.dirpath = dirpath

    def _save(self, trainer: pl.Trainer, epochs_done: int) -> None:
        path = Path(self.dirpath) / f"epoch_{epochs_done:03d}.ckpt"
        # save_checkpoint is collective under DDP (it ends in a barrier): every rank must make the same choice,
        # so rank zero's view of the file decides, not each rank's view of a file that rank zero may be writing.
        if not trainer.strategy.broadcast(path.exists(), src=0):
            trainer.save_checkpoint(path, weights_only=True)  # writes on rank zero only

    def on_train_start(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            self._save(trainer, 0)

    def on_train_epoch_end(self, trainer, pl_module):
        self._save(trainer, trainer.current_epoch + 1)
