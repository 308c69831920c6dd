"""Direction-sweep speed: nadexp's sweep cells vs the reference style, one direction after another.

The baseline does what the reference code does for each direction: draw D(v), wrap it in a per-sample
TensorDataset and DataLoader (batch 128, shuffled), build LeNet and run a fresh SGD loop with linear
decay and clipping for 20 epochs, then test. nadexp runs the same cells through `sweep=fourier`'s cell
function (Hydra config, DirectionalDataModule, Lightning). Both train the same directions of the 16 x 16
frequency grid of 32 x 32 images (`sweep.stride=2`); the table extrapolates to all 130 of its real
directions.

    python benchmarks/sweep.py [--cells 3] [--epochs 20]
"""

import argparse
import platform
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
from nadexp.sweeps.runner import cell_config, train_cell

SHAPE = [1, 32, 32]
STRIDE = 2


def reference_cell(direction, epochs: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    dataset = DirectionalDataset(direction=list(direction), shape=SHAPE, seed=seed)
    train = DataLoader(TensorDataset(*dataset.sample("train")), batch_size=128, shuffle=True)
    test = DataLoader(TensorDataset(*dataset.sample("test")), batch_size=128)
    net = LeNet(tuple(SHAPE), 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, total_iters=epochs * len(train))
    for _ in range(epochs):
        for x, y in train:
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
            optimizer.step()
            scheduler.step()
    with torch.no_grad():
        correct = sum((net(x).argmax(1) == y).sum().item() for x, y in test)
    return correct / len(test.dataset)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    cells = fourier_cells(SHAPE[1], SHAPE[2], STRIDE)
    chosen = cells[1:1 + args.cells]
    cfg = compose_config(["experiment=single", "sweep=fourier", f"sweep.stride={STRIDE}",
                          f"trainer.max_epochs={args.epochs}", "trainer.accelerator=cpu", "logger=none"])
    base, ours = [], []
    for direction in chosen:  # interleaved, so drift in machine load hits both sides alike
        start = time.perf_counter()
        reference_cell(direction, args.epochs)
        base.append(time.perf_counter() - start)
        start = time.perf_counter()
        train_cell(cell_config(cfg, direction))
        ours.append(time.perf_counter() - start)
    b, o = sum(base) / len(base), sum(ours) / len(ours)
    table = Table(title=f"LeNet Fourier sweep cells, 16 x 16 grid of 32 x 32 images, {args.epochs} epochs of 10,000 samples "
                        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    for column in ("loop", "cells timed", "s / cell", f"all {len(cells)} cells (min)", "speed-up"):
        table.add_column(column, justify="right")
    table.add_row("reference style (per-sample DataLoader, fresh loop)", str(len(base)), f"{b:.1f}", f"{b * len(cells) / 60:.1f}", "1.00x")
    table.add_row("nadexp sweep cell", str(len(ours)), f"{o:.1f}", f"{o * len(cells) / 60:.1f}", f"{b / o:.2f}x")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
