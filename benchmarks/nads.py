"""NAD estimation speed: nadexp's estimators vs a reference-style finite-difference loop, side by side.

The reference-style loop does what the reference code does: one network at a time, all 2 D perturbed copies
of x0 in one float32 forward batch. Every row sees the same networks (same seed, same x0), so the top-10
overlap of each row's NADs with the reference loop's, on the networks both ran, measures what the faster code
changes in the result. GFLOP/s counts 2 D full forward passes per network for every finite-difference row (the
work the reference loop does), beside the machine's own float32 matrix-multiply rate, measured here.

    python benchmarks/nads.py [--arch lenet] [--networks 10000] [--reference-networks 500] [--autograd-networks 10000]
"""

import argparse
import copy
import math
import time

import torch
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from nadexp.config import compose_config
from nadexp.estimators.draws import fresh_networks
from nadexp.estimators.gradients import _one_network_at_a_time, eval_points
from nadexp.estimators.nads import NADEstimator, principal_directions, subspace_overlap
from nadexp.generators import drawing_from, seeded
from nadexp.results.machine import cpu_description

SHAPE = (1, 32, 32)


def template_and_networks(make_net, seed: int):
    """The template and the generator that draws networks 0, 1, ... after it, as the estimator draws them."""
    networks = seeded(seed)
    with drawing_from(networks):
        template = make_net().eval()
    return template, networks


def reference_gradients(make_net, count: int, seed: int, device, scale: float = 100.0) -> torch.Tensor:
    x0 = eval_points("fixed", SHAPE, count, seeded(seed))[0].to(device)
    template, networks = template_and_networks(make_net, seed)
    worker = copy.deepcopy(template).to(device)  # each network is drawn on the CPU and copied here
    dim = math.prod(SHAPE)
    steps = scale * torch.eye(dim, device=device).reshape(dim, *SHAPE)
    batch = torch.cat([x0 + steps, x0 - steps])
    rows = []
    with torch.no_grad():
        for net in fresh_networks(template, count, make_net, generator=networks):
            worker.load_state_dict(net.state_dict())
            out = worker(batch).reshape(-1)
            rows.append(((out[:dim] - out[dim:]) / (2 * scale)).cpu())
    return torch.stack(rows)


def forward_flops(make_net) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        make_net().eval()(torch.zeros(1, *SHAPE))
    return counter.get_total_flops()


def matmul_rate(device, dtype=torch.float32, size=2048, repeats=5) -> float:
    """GFLOP/s of a square float matrix product on this machine: what its cores can do."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        c = a @ b
    float(c[0, 0])
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def timed(fn):
    start = time.perf_counter()
    value = fn()  # every path ends in a copy to the CPU, so GPU work is finished when it returns
    return value, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="lenet")
    parser.add_argument("--networks", type=int, default=10_000, help="networks for nadexp's finite-difference rows")
    parser.add_argument(
        "--reference-networks",
        type=int,
        default=500,
        help="networks for the reference-style loop and nadexp's one-at-a-time loop (rates per network)",
    )
    parser.add_argument("--autograd-networks", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    args = parser.parse_args()

    arch = compose_config([f"arch={args.arch}", "experiment=single"]).arch
    make_net = lambda: instantiate(arch, input_shape=SHAPE, num_classes=1)  # noqa: E731
    device = NADEstimator(device=args.device).resolved_device()
    reference, reference_time = timed(lambda: reference_gradients(make_net, args.reference_networks, args.seed, device))
    rows = [("reference-style loop (float32, one 2D batch per network)", args.reference_networks, reference_time, reference)]

    def one_at_a_time():
        points = eval_points("fixed", SHAPE, args.reference_networks, seeded(args.seed))
        template, networks = template_and_networks(make_net, args.seed)
        return _one_network_at_a_time(template, points, 100.0, 512, torch.float32, device, make_net, generator=networks)

    alone, seconds = timed(one_at_a_time)
    rows.append(("nadexp, one network at a time (float32; the fallback)", args.reference_networks, seconds, alone))
    dtypes = ["auto"] + (["float32"] if NADEstimator(dtype="auto").resolved_dtype(device) != torch.float32 else [])
    for dtype in dtypes:
        estimator = NADEstimator(num_networks=args.networks, seed=args.seed, dtype=dtype, device=str(device))
        label = f"nadexp, networks side by side ({str(estimator.resolved_dtype(device)).removeprefix('torch.')})"
        grads, seconds = timed(lambda: estimator.gradients(make_net, SHAPE))
        rows.append((label, args.networks, seconds, grads))
    estimator = NADEstimator(method="autograd", num_networks=args.autograd_networks, seed=args.seed, device=str(device))
    _, seconds = timed(lambda: estimator.gradients(make_net, SHAPE))
    rows.append(("nadexp autograd (float32)", args.autograd_networks, seconds, None))

    flops = 2 * math.prod(SHAPE) * forward_flops(make_net)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description()
    table = Table(title=f"NAD gradients, {args.arch}, 1x32x32 ({where}, torch {torch.__version__})")
    for column in (
        "method",
        "networks",
        "seconds",
        "ms / network",
        "10,000 networks (s)",
        "vs reference loop",
        "GFLOP/s",
        f"top-10 overlap with reference ({args.reference_networks} networks)",
    ):
        table.add_column(column, justify="right")
    reference_nads = principal_directions(reference)[0]
    reference_ms = 1000 * reference_time / args.reference_networks
    for label, count, seconds, grads in rows:
        ms = 1000 * seconds / count
        if grads is None:  # autograd: the local gradient at x0, another quantity
            table.add_row(label, f"{count:,}", f"{seconds:.1f}", f"{ms:.2f}", f"{ms * 10:.1f}", "", "", "(other quantity)")
            continue
        overlap = subspace_overlap(reference_nads, principal_directions(grads[: args.reference_networks])[0], 10)
        table.add_row(
            label,
            f"{count:,}",
            f"{seconds:.1f}",
            f"{ms:.2f}",
            f"{ms * 10:.0f}",
            f"{reference_ms / ms:.2f}x",
            f"{flops * count / seconds / 1e9:.1f}",
            f"{overlap:.4f}",
        )
    console = Console(width=190)
    console.print(table)
    rates = f"float32 {matmul_rate(device):.0f}"
    if device.type == "cuda" or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        rates += f", bfloat16 {matmul_rate(device, torch.bfloat16):.0f}"
    console.print(
        f"This machine's matrix multiply (2048 x 2048): {rates} GFLOP/s. "
        f"One {args.arch} forward pass: {flops / 2 / math.prod(SHAPE) / 1e6:.2f} MFLOP; "
        f"finite differences: {flops / 1e9:.2f} GFLOP per network."
    )


if __name__ == "__main__":
    main()
