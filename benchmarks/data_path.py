"""Does the data path slow training? LeNet epochs through nadexp vs a bare PyTorch loop.

Both train LeNet on the same pre-generated D(v) tensors (10,000 samples, batch 128, SGD with
linear decay and clipping at 0.5); nadexp goes through Hydra-composed configs, the
DirectionalDataModule and a Lightning Trainer (progress bar on, logger off, no per-epoch test pass).
The target is a ratio within 1.15.

    python benchmarks/data_path.py [--epochs 5] [--repeats 5]
"""

import argparse
import platform
import statistics
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from nadexp.config import compose_config
from nadexp.data import DirectionalDataset
from nadexp.models import LeNet
from nadexp.training import build

class EpochTimer(pl.Callback):
    def __init__(self):
        self.times = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.times.append(time.perf_counter() - self.start)


def bare_loop(epochs: int, seed: int = 0) -> list[float]:
    torch.manual_seed(seed)
    x, y = DirectionalDataset().sample("train")
    net = LeNet((1, 32, 32), 2)
    steps = epochs * ((len(x) + 127) // 128)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=steps)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for idx in torch.randperm(len(x)).split(128):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
            opt.step()
            sched.step()
        times.append(time.perf_counter() - start)
    return times


def nadexp_loop(epochs: int, tmp: str) -> list[float]:
    cfg = compose_config(["experiment=single", "arch=lenet", "logger=none", f"trainer.max_epochs={epochs}",
                          "+trainer.limit_val_batches=0", "trainer.accelerator=cpu"], output_dir=tmp)
    datamodule, model, trainer = build(cfg)
    timer = EpochTimer()
    trainer.callbacks.append(timer)
    trainer.fit(model, datamodule=datamodule)
    return timer.times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import tempfile

    bare, ours = [], []
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both sides alike
        bare += bare_loop(args.epochs)[1:]  # the first epoch carries one-off warm-up costs
        with tempfile.TemporaryDirectory() as tmp:
            ours += nadexp_loop(args.epochs, tmp)[1:]
    b, o = statistics.median(bare), statistics.median(ours)
    b_best, o_best = min(bare), min(ours)
    table = Table(title=f"LeNet epoch of 10,000 samples, batch 128 ({platform.processor() or platform.machine()}, "
                        f"{torch.get_num_threads()} threads, torch {torch.__version__})")
    for column in ("loop", "epochs", "median s/epoch", "best s/epoch", "samples/s (median)", "ratio (median)", "ratio (best)"):
        table.add_column(column, justify="right")
    table.add_row("bare PyTorch, pre-generated tensors", str(len(bare)), f"{b:.3f}", f"{b_best:.3f}", f"{10_000 / b:,.0f}", "1.00", "1.00")
    table.add_row("nadexp (Hydra + DataModule + Lightning)", str(len(ours)), f"{o:.3f}", f"{o_best:.3f}", f"{10_000 / o:,.0f}",
                  f"{o / b:.2f}", f"{o_best / b_best:.2f}")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
