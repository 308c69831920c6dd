"""What keyed dropout costs: a training step of K stacked models with dropout masks keyed per model (a cell's numbers
then do not depend on K) against torch's own dropout drawn from one stream, side by side, interleaved.

    python benchmarks/keyed_dropout.py [--arch vgg11] [--models 4] [--batch 128] [--steps 20] [--repeats 3]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from nadexp.config import compose_config
from nadexp.results.machine import cpu_description
from nadexp.training.keyed_dropout import keyed
from nadexp.training.stacked import StackedModels


def step_seconds(models: StackedModels, x, y, steps: int) -> float:
    optimizer = torch.optim.SGD(list(models.params.values()), lr=0.01)
    models.train(True)
    start = time.perf_counter()
    for step in range(steps):
        models.at_step(step)
        loss = F.cross_entropy(models(x).flatten(0, 1), y.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vgg11")
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shape = (1, 32, 32)
    cfg = compose_config(["experiment=single", f"arch={args.arch}"])
    nets = lambda: [instantiate(cfg.arch, input_shape=shape, num_classes=2) for _ in range(args.models)]  # noqa: E731
    engines = {
        "torch's dropout (one stream)": StackedModels(nets()),
        "keyed dropout": StackedModels([keyed(n, k) for k, n in enumerate(nets())]),
    }
    x, y = torch.randn(args.models, args.batch, *shape), torch.randint(0, 2, (args.models, args.batch))
    times = {name: [] for name in engines}
    for models in engines.values():  # warm-up
        step_seconds(models, x, y, 2)
    for _ in range(args.repeats):
        for name, models in engines.items():
            times[name].append(step_seconds(models, x, y, args.steps))
    base = statistics.median(times["torch's dropout (one stream)"])
    title = f"{args.arch}, {args.models} stacked models, batch {args.batch}: CPU {cpu_description()}, torch {torch.__version__}"
    table = Table(title=title)
    for column in ("dropout", "ms per step (median)", "vs torch's dropout"):
        table.add_column(column)
    for name, values in times.items():
        table.add_row(name, f"{1000 * statistics.median(values):.1f}", f"{statistics.median(values) / base:.3f}x")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
