"""Direction-sweep speed: nadexp's sweep cells vs the reference style, one direction after another.

The baseline does what the reference code does for each direction: draw D(v), wrap it in a per-sample
TensorDataset and DataLoader (batch 128, shuffled), build LeNet and run a fresh SGD loop with linear
decay and clipping for 20 epochs, then test. nadexp runs the same cells through `sweep=fourier`'s cell
function (Hydra config, DirectionalDataModule, Lightning, channels-last convolutions), and the same cells
as K stacked models in one vectorised loop (`sweep.models_at_once=K`). All train the same directions of the
16 x 16 frequency grid of 32 x 32 images (`sweep.stride=2`); the table extrapolates to all 130 of its real
directions.

    python benchmarks/sweep.py [--cells 4] [--epochs 20] [--models-at-once 4] [--device cpu|cuda]
"""

import argparse
import platform
import threading
import time

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, TensorDataset

from nadexp.config import compose_config
from nadexp.data import DirectionalDataset
from nadexp.models import LeNet
from nadexp.sweeps.directions import fourier_cells
from nadexp.sweeps.runner import cell_config, train_cell, train_cells_stacked

SHAPE = [1, 32, 32]
STRIDE = 2


def reference_cell(direction, epochs: int, device: str, seed: int = 0) -> float:
    torch.manual_seed(seed)
    dataset = DirectionalDataset(direction=list(direction), shape=SHAPE, seed=seed)
    train = DataLoader(TensorDataset(*dataset.sample("train")), batch_size=128, shuffle=True)
    test = DataLoader(TensorDataset(*dataset.sample("test")), batch_size=128)
    net = LeNet(tuple(SHAPE), 2).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, total_iters=epochs * len(train))
    for _ in range(epochs):
        for x, y in train:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
            optimizer.step()
            scheduler.step()
    with torch.no_grad():
        correct = sum((net(x.to(device)).argmax(1).cpu() == y).sum().item() for x, y in test)
    return correct / len(test.dataset)


class GpuUtilisation:
    """Mean GPU utilisation (%) while the block runs, polled every 0.5 s (needs pynvml; None without it)."""

    def __enter__(self):
        self.samples, self.stop = [], threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while not self.stop.wait(0.5):
            try:
                self.samples.append(torch.cuda.utilization())
            except Exception:  # no GPU, or no pynvml
                return

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    @property
    def mean(self):
        return sum(self.samples) / len(self.samples) if self.samples else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=4, help="cells timed per row (the stacked row trains them together)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--models-at-once", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cells = fourier_cells(SHAPE[1], SHAPE[2], STRIDE)
    chosen = cells[1:1 + args.cells]
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    cfg = compose_config(["experiment=single", "sweep=fourier", f"sweep.stride={STRIDE}", f"trainer.max_epochs={args.epochs}",
                          f"trainer.accelerator={accelerator}", "logger=none"])
    rows = {"reference style (per-sample DataLoader, fresh loop)": [], "nadexp sweep cell (Lightning, channels-last)": [],
            f"nadexp stacked cells (sweep.models_at_once={args.models_at_once})": []}
    base, ours, stacked = rows.values()
    for direction in chosen:  # interleaved, so drift in machine load hits every row alike
        start = time.perf_counter()
        reference_cell(direction, args.epochs, args.device)
        base.append(time.perf_counter() - start)
        start = time.perf_counter()
        train_cell(cell_config(cfg, direction))
        ours.append(time.perf_counter() - start)
    with GpuUtilisation() as utilisation:
        for group in range(0, len(chosen), args.models_at_once):
            directions = [list(d) for d in chosen[group:group + args.models_at_once]]
            start = time.perf_counter()
            train_cells_stacked(cfg, directions)
            stacked += [(time.perf_counter() - start) / len(directions)] * len(directions)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    table = Table(title=f"LeNet Fourier sweep cells, 16 x 16 grid of 32 x 32 images, {args.epochs} epochs of 10,000 samples ({device})")
    for column in ("loop", "cells timed", "s / cell", f"all {len(cells)} cells (min)", "directions / min", "speed-up"):
        table.add_column(column, justify="right")
    reference = sum(base) / len(base)
    for name, times in rows.items():
        per_cell = sum(times) / len(times)
        table.add_row(name, str(len(times)), f"{per_cell:.2f}", f"{per_cell * len(cells) / 60:.1f}", f"{60 / per_cell:.1f}",
                      f"{reference / per_cell:.2f}x")
    Console(width=180).print(table)
    if args.device == "cuda":
        print(f"GPU utilisation during the stacked row: {utilisation.mean if utilisation.mean is not None else 'n/a (no pynvml)'} %")


if __name__ == "__main__":
    main()
