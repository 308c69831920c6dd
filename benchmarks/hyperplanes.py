"""Speed of estimator=hyperplanes: weight statistics per arch, and the cost of the critical-layer analysis.

Weight statistics (cos per filter, per-layer tests against init, a fresh init and the null, distances) for
every arch of the zoo on 3 x 32 x 32 inputs; target under 1 s each on 2 CPU cores. Critical layers: LeNet
with 11 stand-in snapshots on 10,000 test images; the analysis should cost one test pass per (layer,
snapshot) plus one for acc*, nothing more (ratio of its time to that many plain test passes near 1).

    python benchmarks/hyperplanes.py [--repeats 3]
"""

import argparse
import statistics
import time

import torch
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from nadexp.config import compose_config
from nadexp.estimators.hyperplanes import HyperplaneEstimator, accuracy, analysed_layers, critical_layers
from nadexp.results.machine import cpu_description

ARCHS = ("lenet", "lenet_nopool", "vgg11", "vgg11_bn", "resnet18", "densenet121")


def make(arch: str, seed: int):
    torch.manual_seed(seed)
    return instantiate(compose_config(["experiment=single", f"arch={arch}"]).arch, input_shape=(3, 32, 32), num_classes=10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--archs", default=",".join(ARCHS), help="comma-separated conf/arch options")
    parser.add_argument("--images", type=int, default=10_000, help="test images of the critical-layer analysis")
    args = parser.parse_args()
    where = f"{cpu_description()}, torch {torch.__version__}"

    table = Table(title=f"Weight statistics per arch ({where})")
    for column in ("arch", "layers", "filters", "median s", "target"):
        table.add_column(column, justify="right")
    for arch in args.archs.split(","):
        net, init, fresh = make(arch, 0), make(arch, 1), make(arch, 2)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            found = HyperplaneEstimator().weight_statistics(net, init, fresh)
            times.append(time.perf_counter() - start)
        table.add_row(
            arch, str(len(found["layers"])), str(found["pooled"]["trained"]["filters"]), f"{statistics.median(times):.3f}", "< 1 s"
        )
    Console(width=150).print(table)

    net = make("lenet", 0).eval()
    x, y = torch.randn(args.images, 3, 32, 32), torch.randint(0, 10, (args.images,))
    batches = [(x[i : i + 1024], y[i : i + 1024]) for i in range(0, len(x), 1024)]
    snapshots = [(str(e), make("lenet", 10 + e).state_dict()) for e in range(11)]
    layers = list(analysed_layers(net))
    start = time.perf_counter()
    for _ in range(args.repeats):
        accuracy(net, batches)
    one_pass = (time.perf_counter() - start) / args.repeats
    start = time.perf_counter()
    _, rows = critical_layers(net, layers, snapshots, batches)
    analysis = time.perf_counter() - start
    passes = 1 + len(rows)
    table = Table(title=f"Critical layers, LeNet, {len(layers)} layers x {len(snapshots)} snapshots, {args.images:,} test images ({where})")
    for column in ("test passes", "one pass (s)", "analysis (s)", "analysis / (passes x one pass)"):
        table.add_column(column, justify="right")
    table.add_row(str(passes), f"{one_pass:.3f}", f"{analysis:.2f}", f"{analysis / (passes * one_pass):.2f}")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
