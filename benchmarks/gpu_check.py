"""`make gpu-check`: the CUDA paths checked and timed on the GPU at hand, in one table.

tests/test_gpu.py (the device's NADs, D(v) and stacked training against the CPU's; bfloat16 NADs against
float32 with the expectation of each arch family; a sweep forced out of memory that halves and gives the unforced
numbers), then command-line runs as a user starts them: training with and without channels-last and with TF32,
Fourier sweeps of LeNet and VGG-11 on the stacked engine, a short LeNet sweep on the device against the same sweep
on the CPU, 2,000 LeNet NADs in float32 and with dtype=auto, CIFAR-10 (a fixture in its on-disk format) under DDP
with snapshots and the hyperplane and class-density analyses of that run, a NAD-flipped CIFAR-10 run, Fashion-MNIST
(a fixture), a predicted map with spot checks, arch=custom and the Python API. Prints check, pass/fail, seconds and
what was measured, with the GPU's name; exits 1 if a check failed. On a machine without CUDA it says so in one line
and exits 0. A line per check as it ends shows progress; a command that hangs fails its row after --timeout seconds
and the rest go on; --only reruns the named checks (with the runs they read).

    python benchmarks/gpu_check.py [--markdown gpu.md] [--only pytest,train,...] [--timeout 300] [--device cpu]
"""

import argparse
import json
import os
import signal
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
from nadexp.data.fashion_mnist_files import write_fashion_mnist_files
from nadexp.results.machine import cpu_description

ROOT = Path(__file__).resolve().parents[1]
CPU_GPU_TOLERANCE = 0.03  # test accuracy of a cell trained on the device vs on the CPU: summation order drifts apart
PUBLISHED_GRID = 130  # LeNet's published Fourier map: the even frequencies of 32 x 32, conjugates trained once
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "~callbacks.progress_bar"]


# On a GPU, per command: a hang (a DDP rendezvous, a stuck kernel) fails its row, not the whole check. A dry run on
# a CPU has no limit unless --timeout sets one (for every command, the tests too).
CHECK_TIMEOUT_S = 300
TESTS_TIMEOUT_S = 420  # tests/test_gpu.py as a whole
NEEDS = {"sweep_gpu": "sweep_cpu", "hyperplanes": "snapshots", "class_density": "snapshots", "flip": "nads"}  # runs read


def run(args: list[str], cwd=ROOT, env=None, timeout: float | None = CHECK_TIMEOUT_S) -> tuple[bool, float, str]:
    """`python ARGS`: (exit status 0, seconds, stdout and stderr). Past ``timeout`` its whole process group is
    killed (a DDP run's ranks too, which would otherwise hold the GPU) and the output says so."""
    start = time.perf_counter()
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, start_new_session=True, **pipes) as process:
        try:
            output = process.communicate(timeout=timeout)[0]
        except BaseException as error:  # past the timeout, or interrupted: the command's whole group goes
            os.killpg(process.pid, signal.SIGKILL)
            output = process.communicate()[0]
            if not isinstance(error, subprocess.TimeoutExpired):
                raise
            output += f"\ntimed out after {timeout:g} s (killed)"
    return process.returncode == 0, time.perf_counter() - start, output


def gpu_tests(device: str, workdir: Path, tests="tests/test_gpu.py", timeout=TESTS_TIMEOUT_S) -> list[tuple[str, bool, float, str]]:
    """One row per test of tests/test_gpu.py, read from pytest's JUnit XML report (one row saying why if none)."""
    report = workdir / "gpu_tests.xml"
    env = {**os.environ, "NADEXP_TEST_DEVICE": device}
    command = ["-m", "pytest", "-m", "gpu", str(tests), "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    command += ["-o", "junit_family=xunit1"]  # keeps the tests' recorded properties (what each measured)
    command += ["-n", "0"]  # in one process with every core: xdist would give one file's worker a share of them
    ok, seconds, output = run(command, env=env, timeout=timeout)
    if not report.exists():  # killed, or pytest could not start
        return [(f"pytest {tests}", False, seconds, output.strip().splitlines()[-1][:160] if output.strip() else "no output")]
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


CUSTOM_NET = """
from torch import nn


class SmallConv(nn.Sequential):
    def __init__(self, input_shape, num_classes):
        super().__init__(nn.Conv2d(input_shape[0], 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(),
                         nn.Linear(8 * input_shape[1] * input_shape[2], num_classes))
"""
API_CALL = (
    "import nadexp; r = nadexp.train_direction('lenet', [1, 0], input_shape=(1, 16, 16), "
    "settings={{'trainer.accelerator': '{accelerator}', 'trainer.max_epochs': 2, 'dataset.n_train': 2048}}); "
    "print('test_acc', r['test_acc'], r['device'])"
)


def cli_checks(device: str, workdir: Path) -> list[tuple[str, str, list[str], callable]]:
    """(name, check, arguments of `python run.py` (or of python), verify(run_dir, output) -> detail, raising
    AssertionError on a failure). Later checks read the folders of earlier ones by name (runs/<name>)."""
    gpu = device == "cuda"
    trainer = "trainer=gpu" if gpu else "trainer=cpu"
    smaller = [] if gpu else ["trainer.max_epochs=1", "dataset.n_train=512", "dataset.n_test=512"]  # a dry run on a CPU
    runs = workdir / "runs"

    def trained(run_dir, output, **expected):
        result = result_of(run_dir)
        assert result["device"].startswith(device), result["device"]
        assert all(result[key] == value for key, value in expected.items()), {key: result[key] for key in expected}
        return f"test acc {result['test_acc']:.3f}, {result['wall_time_s']:.1f} s of training"

    def swept(expected_engine, published=False):
        def verify(run_dir, output):
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

    def against_the_cpu(run_dir, output):
        ours, cpus = ({str(c["direction"]): c["test_acc"] for c in map(json.loads, map(Path.read_text, (d / "cells").glob("*.json")))}
                      for d in (run_dir, runs / "sweep_cpu"))  # fmt: skip
        worst = max(abs(ours[d] - cpus[d]) for d in cpus)
        assert ours.keys() == cpus.keys() and worst <= CPU_GPU_TOLERANCE, f"largest difference {worst:.3f}"
        return f"{len(ours)} cells, largest test-acc difference from the CPU's {worst:.3f} (tolerance {CPU_GPU_TOLERANCE})"

    def estimated(dtype):
        def verify(run_dir, output):
            result = result_of(run_dir)
            assert result["device"].startswith(device) and result["dtype"] == dtype, {k: result[k] for k in ("device", "dtype")}
            assert dtype == "float32" or "estimator.dtype=auto: bfloat16" in output, "dtype=auto did not say what it chose"
            seconds, overlap = result["gradient_time_s"], result["objective"]
            return f"{result['num_networks']} networks in {result['dtype']}, gradients {seconds:.1f} s, top-10 overlap {overlap}"

        return verify

    def snapshotted(run_dir, output):
        snapshots = sorted(p.name for p in (run_dir / "snapshots").glob("epoch_*.ckpt"))
        assert snapshots == [f"epoch_{e:03d}.ckpt" for e in range(3)], snapshots
        return f"{len(snapshots)} snapshots, test acc {result_of(run_dir)['test_acc']:.3f}"

    def analysed(key):
        def verify(run_dir, output):
            result = result_of(run_dir)
            assert result.get("status", "finished") != "failed" and key in result, sorted(result)
            return f"{key} {result[key]}, objective {result['objective']}"

        return verify

    def predicted(run_dir, output):
        result = result_of(run_dir)
        assert result["cells"] > 0 and len(result["spot_checks"]) == 2, result.get("spot_checks")
        return f"{result['cells']} cells predicted, 2 spot checks trained, NADs in {result['nads_dtype']}"

    def from_python(run_dir, output):
        line = next(line for line in output.splitlines() if line.startswith("test_acc"))
        assert line.split()[-1].startswith(device), line
        return line

    cifar, fashion = workdir / "cifar10", workdir / "fashion_mnist"
    generator = torch.Generator().manual_seed(0)
    images = lambda n, shape=(3, 32, 32): torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=generator).numpy()  # noqa: E731
    labels = lambda n: (torch.arange(n) % 10).numpy()  # noqa: E731
    write_cifar10_files(cifar, (images(2000), labels(2000)), (images(500), labels(500)))
    write_fashion_mnist_files(fashion, (images(2000, (28, 28)), labels(2000)), (images(500, (28, 28)), labels(500)))
    (workdir / "custom").mkdir(exist_ok=True)
    (workdir / "custom" / "mynet.py").write_text(CUSTOM_NET)
    stacked = "stacked" if gpu else None  # on a CPU, LeNet on 32 x 32 and VGG-11 train one cell at a time
    sweep = ["sweep.stride=8", trainer, "logger=none", *smaller, *([] if gpu else ["sweep.max_frequency=2"])]
    short = ["experiment=fourier_lenet", "sweep.stride=8", "sweep.max_frequency=8", "dataset.n_train=2000", "trainer.max_epochs=5"]
    nads = ["experiment=nads", "arch=lenet", "estimator.num_networks=2000", f"estimator.device={device}", "logger=none"]
    ddp = ["trainer=ddp", "trainer.devices=1", "trainer.max_epochs=2", *([] if gpu else ["trainer.accelerator=cpu"]), *QUIET]
    data = ["dataset.check_md5=false", "trainer.max_epochs=1", trainer, *QUIET]
    snapshots = runs / "snapshots"
    estimator_device = f"estimator.device={device}"
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    auto_dtype = "bfloat16" if gpu or amx else "float32"  # LeNet's family keeps its NADs in bfloat16, where it is fast
    return [
        ("train", "python run.py trainer=gpu (LeNet, channels-last)", [trainer, *QUIET, *smaller], trained),
        ("plain", "python run.py trainer=gpu channels_last=false", [trainer, "channels_last=false", *QUIET, *smaller], trained),
        ("tf32", "python run.py trainer=gpu tf32=true", [trainer, "tf32=true", *QUIET, *smaller], lambda d, o: trained(d, o, tf32=True)),
        ("lenet", "Fourier sweep, lenet, stride 8 (published protocol)", ["experiment=fourier_lenet", *sweep], swept(stacked, True)),
        ("vgg11", "Fourier sweep, vgg11, stride 8, 5 epochs", ["experiment=fourier_vgg11", "trainer.max_epochs=5", *sweep], swept(stacked)),
        ("sweep_cpu", "short LeNet sweep on the CPU (the reference below)", [*short, "trainer=cpu", "logger=none"], swept(None)),
        ("sweep_gpu", "the same sweep on the device, against the CPU's", [*short, trainer, "logger=none"], against_the_cpu),
        ("nads", "experiment=nads arch=lenet, 2,000 networks", nads, estimated("float32")),
        ("auto", "experiment=nads arch=lenet estimator.dtype=auto", [*nads, "estimator.dtype=auto"], estimated(auto_dtype)),
        ("snapshots", "CIFAR-10 fixture, trainer=ddp devices=1, snapshots",
         ["experiment=cifar10_snapshots", "arch=lenet", f"dataset.data_dir={cifar}", "dataset.check_md5=false", *ddp], snapshotted),
        ("hyperplanes", "estimator=hyperplanes of that run", ["experiment=hyperplanes_lenet", f"estimator.run_dir={snapshots}",
         estimator_device, "logger=none"], analysed("layers")),
        ("class_density", "estimator=class_density of that run", ["experiment=class_density_lenet", f"estimator.run_dir={snapshots}",
         estimator_device, "estimator.kl_samples=200", "logger=none"], analysed("stages")),
        ("flip", "CIFAR-10 fixture, dataset.variant=nad_flip", ["experiment=cifar10", "arch=lenet", "dataset.variant=nad_flip",
         f"dataset.nads={runs / 'nads'}", f"dataset.data_dir={cifar}", *data], trained),
        ("fashion", "Fashion-MNIST fixture, one epoch", ["experiment=fashion_mnist", f"dataset.data_dir={fashion}", *data], trained),
        ("predicted", "experiment=fourier_predicted arch=lenet, 2 spot checks", ["experiment=fourier_predicted", "arch=lenet",
         "dataset.shape=[1,16,16]", "estimator.num_networks=256", "estimator.spot_checks=2", estimator_device, trainer,
         f"paths.log_dir={workdir / 'outputs'}", "logger=none", *smaller], predicted),
        ("custom", "arch=custom (a user's network with dropout)", ["arch=custom", "arch.target=mynet.SmallConv", "dataset.shape=[1,16,16]",
         trainer, *QUIET, *smaller], trained),
        ("api", "the Python API: nadexp.train_direction", ["-c", API_CALL.format(accelerator="gpu" if gpu else "cpu")], from_python),
    ]  # fmt: skip


def verdict(ok: bool, detail: str) -> str:
    return "pass" if ok else "skip" if detail == "skipped" else "FAIL"


def tally(rows) -> str:
    passed, skipped = sum(ok for _, ok, _, _ in rows), sum(detail == "skipped" for *_, detail in rows)
    return f"{passed} passed, {len(rows) - passed - skipped} failed, {skipped} skipped"


def markdown(title: str, rows) -> str:
    lines = [f"{title}\n", "| check | result | seconds | measured |", "|---|---|---:|---|"]
    lines += [f"| {label} | {verdict(ok, detail)} | {seconds:.1f} | {detail} |" for label, ok, seconds, detail in rows]
    return "\n".join(lines) + "\n"


def selected(only: list[str] | None, names: list[str]) -> set[str]:
    """The checks to run: all, or those named and the ones whose runs they read."""
    if only is None:
        return set(names)
    unknown = [name for name in only if name not in names]
    if unknown:
        raise ValueError(f"--only {','.join(unknown)}: no such check; the checks are {','.join(names)}")
    return set(only) | {NEEDS[name] for name in only if name in NEEDS}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown to this file (rewritten as rows end)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: a dry run of the checks' own code on the CPU")
    parser.add_argument("--only", type=lambda names: names.split(","), help="comma-separated checks to run (pytest: tests/test_gpu.py)")
    limit = f"default on a GPU: {CHECK_TIMEOUT_S}, the tests {TESTS_TIMEOUT_S}; on a CPU none"
    parser.add_argument("--timeout", type=float, help=f"seconds after which a command fails its row ({limit})")
    args = parser.parse_args(argv)
    on_gpu = args.device == "cuda"
    timeouts = (CHECK_TIMEOUT_S, TESTS_TIMEOUT_S) if on_gpu and args.timeout is None else (args.timeout, args.timeout)
    start = time.perf_counter()
    if on_gpu and not torch.cuda.is_available():
        print("gpu-check: no CUDA device is visible here (torch.cuda.is_available() is False); nothing to check")
        return 0
    where = torch.cuda.get_device_name(0) if on_gpu else f"dry run on the CPU: {cpu_description()}"
    title = f"make gpu-check on {where} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    rows = []

    def ended(new_rows, progress: str):
        rows.extend(new_rows)
        print(f"gpu-check {progress}", file=sys.stderr, flush=True)
        if args.markdown:  # a run cut short still leaves the rows it finished
            args.markdown.write_text(markdown(title, rows))

    with tempfile.TemporaryDirectory(prefix="nadexp-gpu-check-") as tmp:
        workdir = Path(tmp)
        checks = cli_checks(args.device, workdir)
        try:
            chosen = selected(args.only, ["pytest", *(name for name, *_ in checks)])
        except ValueError as error:
            parser.error(str(error))
        if "pytest" in chosen:
            print("gpu-check: tests/test_gpu.py ...", file=sys.stderr, flush=True)
            tests = gpu_tests(args.device, workdir, timeout=timeouts[1])
            ended(tests, f"tests/test_gpu.py: {tally(tests)} ({sum(seconds for _, _, seconds, _ in tests):.0f} s)")
        checks = [check for check in checks if check[0] in chosen]
        for i, (name, label, overrides, verify) in enumerate(checks, 1):
            run_dir = workdir / "runs" / name
            python = overrides[:1] == ["-c"]  # the Python API, from a script
            command = overrides if python else [str(ROOT / "run.py"), *overrides, f"hydra.run.dir={run_dir}"]
            ok, seconds, output = run(command, cwd=workdir / "custom" if name == "custom" else ROOT, timeout=timeouts[0])
            try:
                detail = verify(run_dir, output) if ok else (output.strip().splitlines() or ["no output"])[-1][:160]
            except (AssertionError, FileNotFoundError, KeyError, ValueError, StopIteration) as error:
                ok, detail = False, f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:150]}"
            ended([(label, ok, seconds, detail)], f"{i}/{len(checks)} {name}: {verdict(ok, detail)} in {seconds:.0f} s")
    table = Table(title=title)
    for column in ("check", "result", "seconds", "measured"):
        table.add_column(column, justify="left" if column in ("check", "measured") else "right")
    for label, ok, seconds, detail in rows:
        table.add_row(escape(label), verdict(ok, detail), f"{seconds:.1f}", escape(detail))
    Console(width=200).print(table)
    failed = sum(not ok and detail != "skipped" for _, ok, _, detail in rows)
    print(f"gpu-check: {tally(rows)} in {time.perf_counter() - start:.0f} s (target: under 8 minutes on one H100)")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("gpu-check: interrupted; the rows that ended are above (and in --markdown)")
