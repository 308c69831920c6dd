"""Every script in benchmarks/ runs, with sizes small enough for a smoke test, and prints its table: a refactor
cannot break one unseen. (The numbers they print are measured with their default sizes, docs/benchmarks.md.)"""

import pytest

from conftest import ROOT, run_cli

TINY = {
    "class_density.py": ["--images", "64", "--per-class", "50"],
    "data_path.py": ["--epochs", "2", "--repeats", "1", "--samples", "512"],
    "gpu_check.py": [],  # without CUDA: one line, exit 0
    "hyperplanes.py": ["--repeats", "1", "--archs", "lenet,vgg11", "--images", "1024"],
    "nads.py": ["--networks", "16", "--reference-networks", "8", "--autograd-networks", "16"],
    "nads_per_arch.py": ["--archs", "lenet,resnet18", "--autograd-networks", "8", "--fd-networks", "4"],
    "prediction_study.py": ["--networks", "8,4"],
    "startup.py": ["--repeats", "1"],
    "sweep.py": ["--cells", "2", "--epochs", "1", "--image-size", "16", "--models-at-once", "2"],
}


# The longer smoke tests run with `make test-all` (pytest -m slow), so the default run stays near 10 minutes.
SLOW = {"class_density.py", "hyperplanes.py", "nads_per_arch.py", "prediction_study.py", "startup.py"}


def test_every_benchmark_script_has_a_smoke_test():
    assert sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")) == sorted(TINY)


@pytest.mark.parametrize("script", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in sorted(TINY)])
def test_the_benchmark_runs_and_prints_its_table(script):
    process = run_cli(*TINY[script], cwd=ROOT, script=ROOT / "benchmarks" / script, timeout=600)
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-3000:]
    if script == "gpu_check.py":
        import torch

        if not torch.cuda.is_available():
            assert process.stdout.strip().startswith("gpu-check: no CUDA device") and len(process.stdout.strip().splitlines()) == 1
            return
    assert "┏" in process.stdout and "┃" in process.stdout, output[-3000:]  # a rich table's top border and header
