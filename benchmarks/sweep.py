"""Direction-sweep speed: nadexp's sweep cells vs the reference style, one direction after another.

The baseline does what the reference code does for each direction: draw D(v), wrap it in a per-sample
TensorDataset and DataLoader (batch 128, shuffled), build LeNet and run a fresh SGD loop with linear
decay and clipping for 20 epochs, then test. nadexp runs the same cells through `sweep=fourier`'s cell
function (Hydra config, DirectionalDataModule, Lightning, channels-last convolutions), and the same cells
as K stacked models in one vectorised loop (`sweep.models_at_once=K`, one row per K). All train the same
directions of a 16 x 16 frequency grid: every cell of 16 x 16 images (`--image-size 16`), or every other cell
of 32 x 32 images (`--image-size 32`, `sweep.stride=2`); the table extrapolates to all 130 real directions of
the grid.

    python benchmarks/sweep.py [--image-size 32|16] [--cells 4] [--epochs 20] [--models-at-once 4 [8 ...]] [--device cpu|cuda]
"""

import argparse
import logging
import threading
import time

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, TensorDataset

from nadexp.config import compose_config
from nadexp.data.directional import DirectionalDataset
from nadexp.data.directions import fourier_cells
from nadexp.models import LeNet
from nadexp.results.machine import cpu_description
from nadexp.sweeps.runner import cell_config, train_cell, train_cells_stacked

GRID = 16  # the frequency grid is 16 x 16: all of 16 x 16 images, every other frequency of 32 x 32 images


def reference_cell(direction, shape: list[int], epochs: int, device: str, seed: int = 0) -> float:
    torch.manual_seed(seed)
    dataset = DirectionalDataset(direction=list(direction), shape=shape, seed=seed)
    train = DataLoader(TensorDataset(*dataset.sample("train")), batch_size=128, shuffle=True)
    test = DataLoader(TensorDataset(*dataset.sample("test")), batch_size=128)
    net = LeNet(tuple(shape), 2).to(device)
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
    parser.add_argument("--image-size", type=int, choices=(16, 32), default=32)
    parser.add_argument("--models-at-once", type=int, nargs="+", default=[4], help="one stacked row per value")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for name in ("pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)  # no Lightning banner per cell
    shape, stride = [1, args.image_size, args.image_size], args.image_size // GRID
    cells = fourier_cells(shape[1], shape[2], stride)
    chosen = cells[1 : 1 + args.cells]
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    cfg = compose_config(
        [
            "experiment=single",
            "sweep=fourier",
            f"sweep.stride={stride}",
            f"dataset.shape={shape}",
            f"trainer.max_epochs={args.epochs}",
            f"trainer.accelerator={accelerator}",
            "logger=none",
        ]
    )
    base, ours = [], []
    rows = {"reference style (per-sample DataLoader, fresh loop)": base, "nadexp sweep cell (Lightning, channels-last)": ours}
    for direction in chosen:  # interleaved, so drift in machine load hits every row alike
        start = time.perf_counter()
        reference_cell(direction, shape, args.epochs, args.device)
        base.append(time.perf_counter() - start)
        start = time.perf_counter()
        train_cell(cell_config(cfg, direction))
        ours.append(time.perf_counter() - start)
    utilisation = {}
    for k in args.models_at_once:
        stacked = rows[f"nadexp stacked cells (sweep.models_at_once={k})"] = []
        with GpuUtilisation() as utilisation[k]:
            for group in range(0, len(chosen), k):
                directions = [list(d) for d in chosen[group : group + k]]
                start = time.perf_counter()
                train_cells_stacked(cfg, directions)
                stacked += [(time.perf_counter() - start) / len(directions)] * len(directions)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{cpu_description()}"
    grid = "every cell" if stride == 1 else "every other cell"
    table = Table(
        title=f"LeNet Fourier sweep cells, 16 x 16 grid ({grid} of {args.image_size} x {args.image_size} images), "
        f"{args.epochs} epochs of 10,000 samples ({device})"
    )
    for column in ("loop", "cells timed", "s / cell", f"all {len(cells)} cells (min)", "directions / min", "speed-up"):
        table.add_column(column, justify="right")
    reference = sum(base) / len(base)
    for name, times in rows.items():
        per_cell = sum(times) / len(times)
        table.add_row(
            name,
            str(len(times)),
            f"{per_cell:.2f}",
            f"{per_cell * len(cells) / 60:.1f}",
            f"{60 / per_cell:.1f}",
            f"{reference / per_cell:.2f}x",
        )
    Console(width=180).print(table)
    if args.device == "cuda":
        for k, used in utilisation.items():
            print(f"GPU utilisation, sweep.models_at_once={k}: {used.mean if used.mean is not None else 'n/a (no pynvml)'} %")


if __name__ == "__main__":
    main()
