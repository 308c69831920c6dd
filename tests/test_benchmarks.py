"""Every script in benchmarks/ runs, with sizes small enough for a smoke test, and prints its table: a refactor
cannot break one unseen. (The numbers they print are measured with their default sizes, docs/benchmarks.md.)"""

import pytest

from conftest import ROOT, run_script

TINY = {
    "bfloat16_nads.py": ["--archs", "lenet_nopool", "--networks", "16"],
    "class_density.py": ["--images", "64", "--per-class", "50"],
    "data_path.py": ["--epochs", "2", "--repeats", "1", "--samples", "512"],
    "gpu_check.py": [],  # without CUDA: one line, exit 0
    "keyed_dropout.py": ["--models", "2", "--batch", "8", "--steps", "2", "--repeats", "1"],
    "hyperplanes.py": ["--repeats", "1", "--archs", "lenet,vgg11", "--images", "1024"],
    "nads.py": ["--networks", "16", "--reference-networks", "8", "--autograd-networks", "16"],
    "nads_per_arch.py": ["--archs", "lenet,resnet18", "--autograd-networks", "8", "--fd-networks", "4"],
    "prediction_study.py": ["--networks", "8,4"],
    "prediction_transfer.py": lambda tmp_path: ["--k", "3", "--ntk", "3", f"logreg={tiny_logreg_map(tmp_path)}"],
    "shared_cores.py": ["--arch", "logreg", "--size", "8", "--stride", "4", "--samples", "128", "--epochs", "1"],
    "startup.py": ["--repeats", "1"],
    "sweep.py": ["--cells", "2", "--epochs", "1", "--image-size", "16", "--models-at-once", "2"],
}


def tiny_logreg_map(tmp_path) -> str:
    """NADS_DIR:SWEEP_DIR of logistic regression on 1 x 8 x 8 images (16 networks; 256 samples, 2 epochs per cell)."""
    from nadexp.config import compose_config
    from nadexp.run.execute import execute

    shape, training = ["arch=logreg", "dataset.shape=[1,8,8]", "logger=none"], ["dataset.n_train=256", "dataset.n_test=256"]
    for name, overrides in {
        "nads": ["experiment=nads", "estimator.num_networks=16", *shape],
        "sweep": ["sweep=fourier", "sweep.stride=2", "trainer.max_epochs=2", *training, *shape],
    }.items():
        execute(compose_config(overrides, output_dir=tmp_path / name), overrides)
    return f"{tmp_path / 'nads'}:{tmp_path / 'sweep'}"


# The longer smoke tests run with `make test-all` (pytest -m slow), so the default run stays near 10 minutes.
SLOW = {"class_density.py", "hyperplanes.py", "nads_per_arch.py", "prediction_study.py", "shared_cores.py", "startup.py"}


def test_every_benchmark_script_has_a_smoke_test():
    assert sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")) == sorted(TINY)


@pytest.mark.parametrize("script", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in sorted(TINY)])
def test_the_benchmark_runs_and_prints_its_table(script, tmp_path):
    args = TINY[script](tmp_path) if callable(TINY[script]) else TINY[script]
    process = run_script(ROOT / "benchmarks" / script, *args, process=script == "gpu_check.py")  # one round trip, the quickest
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-3000:]
    if script == "gpu_check.py":
        import torch

        if not torch.cuda.is_available():
            assert process.stdout.strip().startswith("gpu-check: no CUDA device") and len(process.stdout.strip().splitlines()) == 1
            return
    assert "┏" in process.stdout and "┃" in process.stdout, output[-3000:]  # a rich table's top border and header
