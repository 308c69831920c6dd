"""Speed of estimator=class_density: stage extraction for ResNet-18 and density fitting, serial vs parallel.

Extraction: ResNet-18 (untrained weights: the cost does not depend on them) over CIFAR-sized images, all four
stages hooked in one batched pass; images/s and the time for 50,000 images. Fitting: the variational
DP-GMM per (class, stage) of 10 classes x 4 stages (dims 16, 16, 64, 64) on 5,000 examples per class, with
one job against every core (joblib).

    python benchmarks/class_density.py [--images 2048] [--device cpu|cuda] [--per-class 5000]
"""

import argparse
import os
import time

import numpy as np
import torch
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from nadexp.config import compose_config
from nadexp.estimators.class_density import ClassDensityEstimator
from nadexp.estimators.representations import auto_stages, stage_representations, svd_reduce
from nadexp.results.machine import cpu_description


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--per-class", type=int, default=5000)
    args = parser.parse_args()
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{cpu_description()}"

    torch.manual_seed(0)
    net = instantiate(compose_config(["experiment=single", "arch=resnet18"]).arch, input_shape=(3, 32, 32), num_classes=10)
    images = torch.randn(args.images, 3, 32, 32)
    stage_representations(net, auto_stages(net), images[:256], 256, args.device)  # warm-up
    start = time.perf_counter()
    reps = stage_representations(net, auto_stages(net), images, 512, args.device)
    extraction = time.perf_counter() - start
    table = Table(title=f"ResNet-18 stage extraction ({where}, torch {torch.__version__})")
    for column in ("images", "seconds", "images/s", "50,000 images (s)"):
        table.add_column(column, justify="right")
    table.add_row(f"{args.images:,}", f"{extraction:.2f}", f"{args.images / extraction:,.0f}", f"{50_000 * extraction / args.images:,.0f}")
    Console(width=150).print(table)

    # Fitting on representation-like data: the extracted stages, tiled with noise to per-class x 10 examples.
    rng = np.random.default_rng(0)
    n = args.per_class * 10
    labels = np.repeat(np.arange(10), args.per_class)
    reduced = {}
    for index, (stage, rep) in enumerate(reps.items()):
        tiled = rep[torch.as_tensor(rng.integers(0, len(rep), n))] + 0.1 * torch.randn(n, rep.shape[1])
        reduced[stage] = svd_reduce(tiled, (16, 16, 64, 64)[index])[0].numpy() + labels[:, None] * 0.05
    table = Table(title=f"DP-GMM fits, 10 classes x 4 stages, {args.per_class:,} examples per class ({os.cpu_count()} cores)")
    for column in ("jobs", "seconds", "speed-up"):
        table.add_column(column, justify="right")
    times = {}
    for jobs in (1, -1):
        start = time.perf_counter()
        ClassDensityEstimator(n_jobs=jobs, kl_samples=0, kl_classes=[]).analyse(reduced, labels)
        times[jobs] = time.perf_counter() - start
    table.add_row("1", f"{times[1]:.1f}", "1.00x")
    table.add_row(f"all ({os.cpu_count()})", f"{times[-1]:.1f}", f"{times[1] / times[-1]:.2f}x")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
