"""`make gpu-check`: the CUDA paths checked and timed on the GPU at hand, in one table.

tests/test_gpu.py (the device's NADs, D(v) and stacked training against the CPU's), then command-line runs as a
user starts them: a training run with and without channels-last, Fourier sweeps of LeNet and VGG-11 on the
stacked engine, 2,000 LeNet NADs, and CIFAR-10 (a fixture in its on-disk format) under DDP with snapshots.
Prints check, pass/fail, seconds and what was measured, with the GPU's name; exits 1 if a check failed. On a
machine without CUDA it says so in one line and exits 0.

    python benchmarks/gpu_check.py [--markdown docs/gpu_check.md] [--device cpu: a dry run of the script on the CPU]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nadexp.data.cifar10_files import write_cifar10_files
from nadexp.results.machine import cpu_description

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_GRID = 130  # LeNet's published Fourier map: the even frequencies of 32 x 32, conjugates trained once
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "~callbacks.progress_bar"]


def run(args: list[str], cwd=ROOT) -> tuple[bool, float, str]:
    start = time.perf_counter()
    process = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    output = process.stdout + process.stderr
    return process.returncode == 0, seconds, output


def gpu_tests(device: str, workdir: Path) -> list[tuple[str, bool, float, str]]:
    """One row per test of tests/test_gpu.py, read from pytest's JUnit XML report."""
    report = workdir / "gpu_tests.xml"
    env = {**os.environ, "NADEXP_TEST_DEVICE": device}
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    command += ["-o", "junit_family=xunit1"]  # keeps the tests' recorded properties (what each measured)
    subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    return report_rows(report)


def report_rows(report: Path) -> list[tuple[str, bool, float, str]]:
    rows = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped") is not None
        measured = [p.get("value") for p in case.iter("property") if p.get("name") == "measured"]
        detail = "skipped" if skipped else "; ".join(measured) if problem is None else (problem.get("message") or "")[:160]
        if problem is not None and measured:
            detail = f"{measured[-1]}: {detail.splitlines()[0]}"
        rows.append((f"pytest {case.get('name')}", problem is None and not skipped, float(case.get("time", 0)), detail))
    return rows


def result_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def cli_checks(device: str, workdir: Path) -> list[tuple[str, list[str], callable]]:
    """(check, run.py arguments, verify(run_dir, seconds) -> detail, raising AssertionError on a failure)."""
    gpu = device == "cuda"
    trainer = "trainer=gpu" if gpu else "trainer=cpu"
    smaller = [] if gpu else ["trainer.max_epochs=1", "dataset.n_train=512", "dataset.n_test=512"]  # a dry run on a CPU

    def trained(run_dir, seconds):
        result = result_of(run_dir)
        assert result["device"].startswith(device), result["device"]
        return f"test acc {result['test_acc']:.3f}, {result['wall_time_s']:.1f} s of training"

    def swept(expected_engine, published=False):
        def verify(run_dir, seconds):
            result = result_of(run_dir)
            cells = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
            assert result["cells_failed"] == 0 and cells, result
            engines = {c["engine"] for c in cells}
            assert expected_engine is None or engines == {expected_engine}, engines
            per_cell = result["wall_time_s"] / len(cells)  # the sweep itself, without the process start
            detail = f"{len(cells)} cells, K={max(c['models_at_once'] for c in cells)}, {per_cell:.1f} s per cell"
            if published:  # the published grid's time, extrapolated from this part of it
                detail += f"; published grid ({PUBLISHED_GRID} directions) at most {per_cell * PUBLISHED_GRID / 60:.1f} min at this K"
            return detail

        return verify

    def estimated(run_dir, seconds):
        result = result_of(run_dir)
        assert result["device"].startswith(device) and result["dtype"] == "float32", result
        return f"{result['num_networks']} networks, gradients {result['gradient_time_s']:.1f} s, top-10 overlap {result['objective']}"

    def snapshotted(run_dir, seconds):
        snapshots = sorted(p.name for p in (run_dir / "snapshots").glob("epoch_*.ckpt"))
        assert snapshots == [f"epoch_{e:03d}.ckpt" for e in range(3)], snapshots
        return f"{len(snapshots)} snapshots, test acc {result_of(run_dir)['test_acc']:.3f}"

    cifar = workdir / "cifar10"
    generator = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator).numpy()  # noqa: E731
    write_cifar10_files(cifar, (images(2000), (torch.arange(2000) % 10).numpy()), (images(500), (torch.arange(500) % 10).numpy()))
    stacked = "stacked" if gpu else None  # on a CPU, LeNet on 32 x 32 and VGG-11 train one cell at a time
    sweep = ["sweep.stride=8", trainer, "logger=none", *smaller, *([] if gpu else ["sweep.max_frequency=2"])]
    nads = ["experiment=nads", "arch=lenet", "estimator.num_networks=2000", f"estimator.device={device}", "logger=none"]
    ddp = ["trainer=ddp", "trainer.devices=1", "trainer.max_epochs=2", *([] if gpu else ["trainer.accelerator=cpu"]), *QUIET]
    return [
        ("python run.py trainer=gpu (LeNet, channels-last)", [trainer, *QUIET, *smaller], trained),
        ("python run.py trainer=gpu channels_last=false", [trainer, "channels_last=false", *QUIET, *smaller], trained),
        ("Fourier sweep, lenet, stride 8 (published protocol)", ["experiment=fourier_lenet", *sweep], swept(stacked, published=True)),
        ("Fourier sweep, vgg11, stride 8, 5 epochs", ["experiment=fourier_vgg11", "trainer.max_epochs=5", *sweep], swept(stacked)),
        ("experiment=nads arch=lenet, 2,000 networks", nads, estimated),
        (
            "CIFAR-10 fixture, trainer=ddp devices=1, snapshots",
            ["experiment=cifar10_snapshots", "arch=lenet", f"dataset.data_dir={cifar}", "dataset.check_md5=false", *ddp],
            snapshotted,
        ),
    ]


def verdict(ok: bool, detail: str) -> str:
    return "pass" if ok else "skip" if detail == "skipped" else "FAIL"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown to this file")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: a dry run of the checks' own code on the CPU")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device is visible here (torch.cuda.is_available() is False); nothing to check")
        return 0
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else f"dry run on the CPU: {cpu_description()}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="nadexp-gpu-check-") as tmp:
        workdir = Path(tmp)
        rows += gpu_tests(args.device, workdir)
        for index, (label, overrides, verify) in enumerate(cli_checks(args.device, workdir)):
            run_dir = workdir / "runs" / str(index)
            ok, seconds, output = run(["run.py", *overrides, f"hydra.run.dir={run_dir}"])
            try:
                detail = verify(run_dir, seconds) if ok else output.strip().splitlines()[-1][:160]
            except (AssertionError, FileNotFoundError, KeyError, ValueError) as error:
                ok, detail = False, f"{type(error).__name__}: {str(error)[:150]}"
            rows.append((label, ok, seconds, detail))
    title = f"make gpu-check on {where} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    table = Table(title=title)
    for column in ("check", "result", "seconds", "measured"):
        table.add_column(column, justify="left" if column in ("check", "measured") else "right")
    for label, ok, seconds, detail in rows:
        table.add_row(escape(label), verdict(ok, detail), f"{seconds:.1f}", escape(detail))
    Console(width=200).print(table)
    failed = sum(not ok and detail != "skipped" for _, ok, _, detail in rows)
    total = sum(seconds for _, _, seconds, _ in rows)
    passed = sum(ok for _, ok, _, _ in rows)
    print(f"gpu-check: {passed} passed, {failed} failed in {total:.0f} s")
    if args.markdown:
        lines = [f"{title}\n", "| check | result | seconds | measured |", "|---|---|---:|---|"]
        lines += [f"| {label} | {verdict(ok, detail)} | {seconds:.1f} | {detail} |" for label, ok, seconds, detail in rows]
        args.markdown.write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
