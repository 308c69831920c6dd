"""How fast a command answers before any work: `python run.py --help` and a config error (target under 2 s on 2
CPU cores), beside the import of torch and Lightning that a real run starts with.

    python benchmarks/startup.py [--repeats 5]
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nadexp.results.machine import cpu_description

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python run.py --help": ["run.py", "--help"],
    "python run.py dataset.eps=-1 (a bad value)": ["run.py", "dataset.eps=-1"],
    "python run.py arch=nosuch (an unknown option)": ["run.py", "arch=nosuch"],
    "python run.py estimator=nads optimizer.lr=0.1 (an override with no effect)": ["run.py", "estimator=nads", "optimizer.lr=0.1"],
    "for comparison: import torch, pytorch_lightning": ["-c", "import torch, pytorch_lightning"],
}


def seconds(args: list[str], expect_failure: bool) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if (done.returncode != 0) != expect_failure:
        raise SystemExit(f"{' '.join(args)} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    table = Table(title=f"Time to answer ({cpu_description()}, Python {sys.version.split()[0]})")
    for column in ("command", "median s", "min s", "target"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for label, command in COMMANDS.items():
        failing = command[0] == "run.py" and command[1] != "--help"
        times = [seconds(command, failing) for _ in range(args.repeats)]
        target = "" if command[0] == "-c" else "< 2 s"
        table.add_row(label, f"{statistics.median(times):.2f}", f"{min(times):.2f}", target)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
