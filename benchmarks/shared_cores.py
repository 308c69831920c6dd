"""Two nadexp processes on one machine: the same Fourier sweep trained by one process alone, and by two processes
started together on it (they split its cells through their claims and the cores through nadexp.cores), beside
two that each take every core (threads=<cores>, as before the cores were shared). Target: two processes finish
no later than one alone.

    python benchmarks/shared_cores.py [--arch lenet --size 16 --stride 2 --samples 2048 --epochs 2]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nadexp.cores import cores
from nadexp.results.machine import cpu_description

ROOT = Path(__file__).resolve().parents[1]


def sweep_seconds(settings: list[str], processes: int, extra=()) -> float:
    """Wall time of ``processes`` copies of one sweep command, started together on a fresh sweep directory."""
    with tempfile.TemporaryDirectory(prefix="nadexp-cores-") as folder:
        command = [sys.executable, str(ROOT / "run.py"), *settings, *extra, f"hydra.run.dir={folder}/sweep"]
        start = time.perf_counter()
        started = [
            subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(processes)
        ]
        for process in started:
            if process.wait() != 0:
                raise SystemExit(f"{' '.join(command)} exited with {process.returncode}:\n{process.stderr.read()[-2000:]}")
        return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="lenet")
    parser.add_argument("--size", type=int, default=16, help="images of 1 x SIZE x SIZE")
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--samples", type=int, default=2048, help="training and test samples per cell")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    settings = [
        "sweep=fourier",
        f"arch={args.arch}",
        f"dataset.shape=[1,{args.size},{args.size}]",
        f"sweep.stride={args.stride}",
        f"dataset.n_train={args.samples}",
        f"dataset.n_test={args.samples}",
        f"trainer.max_epochs={args.epochs}",
        "sweep.models_at_once=1",
        "logger=none",
    ]
    alone = sweep_seconds(settings, 1)
    shared = sweep_seconds(settings, 2)
    each_all = sweep_seconds(settings, 2, [f"threads={cores()}"])
    table = Table(title=f"One sweep, one or two processes ({cpu_description()}, {cores()} cores)")
    for column in ("processes on the sweep", "wall s", "vs one alone", "target"):
        table.add_column(column, justify="left" if column.startswith("processes") else "right")
    table.add_row("1 (every core)", f"{alone:.1f}", "1.00x", "")
    table.add_row("2, sharing the cores", f"{shared:.1f}", f"{alone / shared:.2f}x", ">= 1.00x")
    table.add_row(f"2, each with threads={cores()}", f"{each_all:.1f}", f"{alone / each_all:.2f}x", "")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
