"""Does the data path slow training? LeNet epochs through nadexp vs a bare PyTorch loop over the same tensors.

directional: D(v), 10,000 samples of 1 x 32 x 32, 2 classes, SGD lr 0.5 decaying linearly.
cifar10: CIFAR-10-sized data (a generated stand-in in CIFAR-10's file format, 50,000 training images of
3 x 32 x 32, 10 classes), the CIFAR-10 protocol (SGD momentum 0.9, weight decay 5e-4, lr 0.21 decaying).
Both sides: batch 128, gradient clipping at 0.5, a channels-last network (LeNet unless --arch). nadexp goes through Hydra-composed
configs, the data module and a Lightning Trainer (progress bar on, logger off, no per-epoch test pass). The
target is a ratio within 1.15.

    python benchmarks/data_path.py [--dataset directional|cifar10] [--arch lenet] [--device cpu|cuda] [--epochs 3] [--repeats 3]
"""

import argparse
import statistics
import tempfile
import time

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from nadexp.config import compose_config
from nadexp.data.cifar10 import represent
from nadexp.data.cifar10_files import load_split, write_cifar10_files
from nadexp.data.directional import DirectionalDataset
from nadexp.results.machine import cpu_description
from nadexp.training import build


class EpochTimer(pl.Callback):
    def __init__(self):
        self.times = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.times.append(time.perf_counter() - self.start)


def bare_loop(x, y, net, epochs: int, lr: float, momentum: float, weight_decay: float) -> list[float]:
    net = net.to(x.device, memory_format=torch.channels_last)
    steps = epochs * ((len(x) + 127) // 128)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=steps)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for idx in torch.randperm(len(x)).split(128):
            loss = F.cross_entropy(net(x[idx].contiguous(memory_format=torch.channels_last)), y[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
            opt.step()
            sched.step()
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def nadexp_loop(overrides: list[str], epochs: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(
            [
                "logger=none",
                f"trainer.max_epochs={epochs}",
                "+trainer.limit_val_batches=0",
                "resume=false",
                "trainer.enable_checkpointing=false",
                "callbacks=default",
                *overrides,
            ],
            output_dir=tmp,
        )
        datamodule, model, trainer = build(cfg)
        timer = EpochTimer()
        trainer.callbacks.append(timer)
        trainer.fit(model, datamodule=datamodule)
    return timer.times


def cifar10_stand_in(root: str, n_train: int = 50_000, n_test: int = 10_000) -> None:
    rng = np.random.default_rng(0)
    split = lambda n: (rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), np.arange(n) % 10)  # noqa: E731
    write_cifar10_files(root, split(n_train), split(n_test))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("directional", "cifar10"), default="directional")
    parser.add_argument("--epochs", type=int, default=3, help="at least 2: the first epoch, with its warm-up, is not timed")
    parser.add_argument("--samples", type=int, default=None, help="training samples (default: D(v)'s 10,000, CIFAR-10's 50,000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="lenet", help="any conf/arch option")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2: the first epoch carries one-off warm-up costs and is not timed")
    device = torch.device(args.device)

    data_dir = tempfile.TemporaryDirectory()
    if args.dataset == "cifar10":
        cifar10_stand_in(data_dir.name, args.samples or 50_000, 1_000)
        images, labels = load_split(data_dir.name, train=True, check_md5=False)
        x, y, classes, optim = represent(images.to(device), labels.to(device)), labels.to(device), 10, (0.21, 0.9, 5e-4)
        overrides = ["experiment=cifar10", f"dataset.data_dir={data_dir.name}", "dataset.check_md5=false"]
    else:
        samples = args.samples or DirectionalDataset().n_train
        (x, y), classes, optim = DirectionalDataset(n_train=samples).sample("train", device), 2, (0.5, 0.0, 0.0)
        overrides = ["experiment=single", f"dataset.n_train={samples}"]
    overrides += [f"arch={args.arch}", f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}"]
    arch = compose_config(overrides).arch

    bare, ours = [], []
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both sides alike
        torch.manual_seed(0)
        net = instantiate(arch, input_shape=tuple(x.shape[1:]), num_classes=classes)
        bare += bare_loop(x, y, net, args.epochs, *optim)[1:]  # the first epoch carries one-off warm-up costs
        ours += nadexp_loop(overrides, args.epochs)[1:]
    b, o = statistics.median(bare), statistics.median(ours)
    b_best, o_best = min(bare), min(ours)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{cpu_description()}"
    table = Table(title=f"{args.arch} epoch of {len(x):,} {args.dataset} samples, batch 128 ({where}, torch {torch.__version__})")
    for column in ("loop", "epochs", "median s/epoch", "best s/epoch", "samples/s (median)", "ratio (median)", "ratio (best)"):
        table.add_column(column, justify="right")
    table.add_row("bare PyTorch, same tensors", str(len(bare)), f"{b:.3f}", f"{b_best:.3f}", f"{len(x) / b:,.0f}", "1.00", "1.00")
    table.add_row(
        "nadexp (Hydra + DataModule + Lightning)",
        str(len(ours)),
        f"{o:.3f}",
        f"{o_best:.3f}",
        f"{len(x) / o:,.0f}",
        f"{o / b:.2f}",
        f"{o_best / b_best:.2f}",
    )
    Console(width=150).print(table)
    data_dir.cleanup()


if __name__ == "__main__":
    main()
