"""Whether bfloat16 keeps an arch's NADs: finite-difference NADs in bfloat16 against float32, from the same networks
and the same x0, per arch family. `estimator.dtype=auto` takes bfloat16 only for the families whose top-10
overlap here reaches nadexp.estimators.nads.BFLOAT16_KEEPS (docs/benchmarks.md, "bfloat16 and the NADs").

    python benchmarks/bfloat16_nads.py [--archs lenet,lenet_nopool,vgg11,resnet18,densenet121,vit_tiny]
"""

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from nadexp.config import compose_config
from nadexp.estimators.nads import BFLOAT16_KEEPS, NADEstimator, arch_family, principal_directions, subspace_overlap
from nadexp.results.machine import cpu_description

# arch: (input shape, networks): enough networks for ten NADs, few enough for minutes on 2 cores
CASES = {
    "lenet": ((1, 32, 32), 128),
    "lenet_nopool": ((1, 32, 32), 64),
    "vgg11": ((1, 32, 32), 16),
    "resnet18": ((1, 16, 16), 32),
    "densenet121": ((1, 16, 16), 24),
    "vit_tiny": ((1, 16, 16), 32),
    "convnext_atto": ((1, 16, 16), 24),
    "mixer_small": ((1, 16, 16), 24),
}


def gradients(arch: str, shape, networks: int, dtype: str) -> torch.Tensor:
    cfg = compose_config(["experiment=nads", f"arch={arch}", f"dataset.shape=[{','.join(map(str, shape))}]"])
    estimator = NADEstimator(num_networks=networks, device="cpu", dtype=dtype, seed=0)
    return estimator.gradients(estimator.prepare(cfg), shape)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(CASES))
    parser.add_argument("--networks", type=int, help="networks per arch instead of each arch's own count (a smoke test)")
    args = parser.parse_args()
    title = f"bfloat16 vs float32 NADs (finite differences), CPU: {cpu_description()}, torch {torch.__version__}"
    table = Table(title=title)
    for column in ("arch", "family", "shape", "networks", "top-1 overlap", "top-10 overlap", "keeps the NADs", "seconds"):
        table.add_column(column)
    for arch in args.archs.split(","):
        shape, networks = CASES[arch]
        networks = args.networks or networks
        start = time.perf_counter()
        found = {dtype: principal_directions(gradients(arch, shape, networks, dtype))[0] for dtype in ("float32", "bfloat16")}
        top1, top10 = (subspace_overlap(found["bfloat16"], found["float32"], k) for k in (1, 10))
        row = (arch, arch_family(arch), "x".join(map(str, shape)), str(networks), f"{top1:.4f}", f"{top10:.4f}")
        table.add_row(*row, "yes" if top10 >= BFLOAT16_KEEPS else "no", f"{time.perf_counter() - start:.0f}")
        Console().print(f"{arch}: top-10 overlap {top10:.4f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
