"""Per-network cost of NAD estimation for each arch of a list: autograd and finite differences side by side.

Each arch is built from its config (library models included: arch=vit_tiny, convnext_atto, mixer_small, or
arch=timm arch.name=...), every network is a fresh initialisation, as in a run of experiment=nads_library.

    python benchmarks/nads_per_arch.py [--archs lenet,resnet18,vit_tiny,convnext_atto,mixer_small]
        [--shape 1,16,16] [--autograd-networks 64] [--fd-networks 8]
"""

import argparse
import time

import torch
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from nadexp.config import compose_config
from nadexp.estimators.nads import NADEstimator
from nadexp.results.machine import cpu_description


def per_network_seconds(make_net, shape, method: str, count: int) -> float:
    estimator = NADEstimator(num_networks=count, method=method, device="cpu")
    estimator.gradients(make_net, shape)  # warm-up: first calls pay for allocation and kernel selection
    start = time.perf_counter()
    estimator.gradients(make_net, shape)
    return (time.perf_counter() - start) / count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="lenet,resnet18,vit_tiny,convnext_atto,mixer_small")
    parser.add_argument("--shape", default="1,16,16")
    parser.add_argument("--autograd-networks", type=int, default=64)
    parser.add_argument("--fd-networks", type=int, default=8)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    table = Table(title=f"NAD cost per network, {'x'.join(map(str, shape))} images, CPU: {cpu_description()}, torch {torch.__version__}")
    for column in ("arch", "model", "parameters", "autograd ms/net", "finite differences ms/net", "ratio fd/autograd"):
        table.add_column(column, justify="left" if column in ("arch", "model") else "right")
    for arch in args.archs.split(","):
        cfg = compose_config([f"arch={arch}", f"dataset.shape=[{args.shape}]"])
        make_net = lambda: instantiate(cfg.arch, input_shape=shape, num_classes=1)  # noqa: E731
        parameters = sum(p.numel() for p in make_net().parameters())
        autograd = per_network_seconds(make_net, shape, "autograd", args.autograd_networks)
        finite = per_network_seconds(make_net, shape, "finite_difference", args.fd_networks)
        table.add_row(
            arch,
            cfg.arch.get("name", cfg.arch._target_.rsplit(".", 1)[-1]),
            f"{parameters / 1e6:.2f} M",
            f"{1000 * autograd:.1f}",
            f"{1000 * finite:.1f}",
            f"{finite / autograd:.1f}",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
