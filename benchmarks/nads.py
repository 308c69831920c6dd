"""NAD estimation speed: nadexp's estimators vs a reference-style finite-difference baseline.

The baseline does what the reference code does: one network at a time, all 2 D perturbed copies of x0
in one float32 forward batch. Every method sees the same networks (same seed, same x0), so the top-10
overlap with the baseline's NADs measures what the faster code changes in the result.

    python benchmarks/nads.py [--arch lenet] [--networks 1000] [--autograd-networks 10000]
"""

import argparse
import math
import platform
import time

import torch
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from nadexp.config import compose_config
from nadexp.estimators.gradients import eval_points, fresh_networks
from nadexp.estimators.nads import NADEstimator, principal_directions, subspace_overlap

SHAPE = (1, 32, 32)


def baseline_gradients(make_net, count: int, seed: int, device, scale: float = 100.0) -> torch.Tensor:
    torch.manual_seed(seed)
    x0 = eval_points("fixed", SHAPE, count, torch.Generator().manual_seed(seed))[0].to(device)
    template = make_net().to(device).eval()
    dim = math.prod(SHAPE)
    steps = scale * torch.eye(dim, device=device).reshape(dim, *SHAPE)
    batch = torch.cat([x0 + steps, x0 - steps])
    rows = []
    with torch.no_grad():
        for net in fresh_networks(template, count):
            out = net(batch).reshape(-1)
            rows.append(((out[:dim] - out[dim:]) / (2 * scale)).cpu())
    return torch.stack(rows)


def timed(fn):
    start = time.perf_counter()
    value = fn()  # every path ends in a copy to the CPU, so GPU work is finished when it returns
    return value, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="lenet")
    parser.add_argument("--networks", type=int, default=1000, help="networks for the finite-difference rows")
    parser.add_argument("--autograd-networks", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    args = parser.parse_args()

    arch = compose_config([f"arch={args.arch}", "experiment=single"]).arch
    make_net = lambda: instantiate(arch, input_shape=SHAPE, num_classes=1)  # noqa: E731
    rows = []
    device = NADEstimator(device=args.device).resolved_device()
    base, base_time = timed(lambda: baseline_gradients(make_net, args.networks, args.seed, device))
    base_nads = principal_directions(base)[0]
    rows.append(("reference-style finite differences (float32, one 2D batch)", args.networks, base_time, base_nads))
    for dtype in ("auto", "float32"):
        estimator = NADEstimator(num_networks=args.networks, seed=args.seed, dtype=dtype, device=str(device))
        label = f"nadexp finite differences ({str(estimator.resolved_dtype(device)).removeprefix('torch.')})"
        grads, seconds = timed(lambda: estimator.gradients(make_net, SHAPE))
        rows.append((label, args.networks, seconds, principal_directions(grads)[0]))
    estimator = NADEstimator(method="autograd", num_networks=args.autograd_networks, seed=args.seed, device=str(device))
    _, seconds = timed(lambda: estimator.gradients(make_net, SHAPE))
    rows.append(("nadexp autograd (vmap, float32)", args.autograd_networks, seconds, None))

    per_net = base_time / args.networks
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    table = Table(title=f"NAD gradients, {args.arch}, 1x32x32 ({where}, torch {torch.__version__})")
    for column in ("method", "networks", "seconds", "ms / network", "10,000 networks (s)", "speed-up vs baseline",
                   "top-10 overlap with baseline"):
        table.add_column(column, justify="right")
    for label, count, seconds, nads in rows:
        ms = 1000 * seconds / count
        same_quantity = nads is not None  # autograd estimates the local gradient, a different quantity
        overlap = f"{subspace_overlap(base_nads, nads, 10):.4f}" if same_quantity else "(other quantity)"
        speedup = f"{per_net * 1000 / ms:.1f}x" if same_quantity else ""
        table.add_row(label, f"{count:,}", f"{seconds:.1f}", f"{ms:.2f}", f"{ms * 10:.0f}", speedup, overlap)
    Console(width=170).print(table)


if __name__ == "__main__":
    main()
