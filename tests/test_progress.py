"""Long work shows progress in a log too (output sent to a file, not a terminal): a line per finished cell, network
chunk or epoch at most every few seconds, with n/N, the latest figure and an ETA, and no redraw sequences."""

import re

import pytest

from conftest import QUICK, run_cli

SWEEP = ["sweep=fourier", "arch=logreg", "dataset.shape=[1,8,8]", "sweep.stride=4", "sweep.models_at_once=1", "logger=none",
         "trainer.max_epochs=1", "dataset.n_train=256", "dataset.n_test=256", "trainer.accelerator=cpu"]  # fmt: skip
NADS = ["experiment=nads", "arch=logreg", "dataset.shape=[1,8,8]", "estimator.num_networks=64", "estimator.networks_per_batch=16"]
PREDICTED = ["experiment=fourier_predicted", "arch=logreg", "dataset.shape=[1,8,8]", "estimator.num_networks=16", "estimator.stride=4"]
SMALL = ["dataset.n_train=256", "dataset.n_test=256", "trainer.max_epochs=2", "logger=none"]


@pytest.fixture
def every_line(monkeypatch):
    """No wait between lines: each step writes one, so the test sees them all."""
    from nadexp import progress

    monkeypatch.setattr(progress, "EVERY_S", 0.0)


def lines(done, pattern: str) -> list[re.Match]:
    output = done.stdout + done.stderr
    assert "\r" not in output and "\x1b[" not in output, output[-2000:]  # no redraws, no terminal codes
    return [m for m in (re.search(pattern, line) for line in output.splitlines()) if m]


def counts(found) -> list[tuple[int, int]]:
    return [(int(m.group("n")), int(m.group("total"))) for m in found]


def test_a_sweep_writes_a_line_per_cell_with_its_accuracy_and_an_eta(tmp_path, every_line):
    done = run_cli(*SWEEP, f"hydra.run.dir={tmp_path / 'sweep'}")
    assert done.returncode == 0, done.stderr[-2000:]
    found = lines(done, r"logreg fourier: (?P<n>\d+)/(?P<total>\d+) cells, \[-?\d+, -?\d+\]: test acc 0\.\d{3}, .* elapsed, ETA ")
    assert counts(found) == [(n, found[0].group("total") and int(found[0].group("total"))) for n in range(1, len(found) + 1)]
    assert counts(found)[-1][0] == counts(found)[-1][1] >= 4


def test_a_nad_estimate_writes_a_line_per_network_chunk(tmp_path, every_line):
    done = run_cli(*NADS, f"hydra.run.dir={tmp_path / 'nads'}")
    assert done.returncode == 0, done.stderr[-2000:]
    found = lines(done, r"NADs by finite differences: (?P<n>\d+)/(?P<total>64) networks, .* elapsed, ETA ")
    assert [n for n, _ in counts(found)] == [16, 32, 48, 64]


def test_a_prediction_with_spot_checks_shows_its_networks_and_its_cells(tmp_path, every_line):
    done = run_cli(*PREDICTED, *SMALL, "estimator.spot_checks=3", env={"NADEXP_ROOT": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert counts(lines(done, r"NADs by finite differences: (?P<n>\d+)/(?P<total>\d+) networks"))[-1] == (16, 16)
    assert counts(lines(done, r"logreg fourier: (?P<n>\d+)/(?P<total>\d+) cells, \[")) == [(1, 3), (2, 3), (3, 3)]


def test_a_training_run_on_images_writes_a_line_per_epoch(tmp_path, fashion_mnist_dir, every_line):
    settings = [o for o in QUICK if not o.startswith(("dataset.", "trainer.enable_progress_bar", "trainer.max_epochs"))]
    done = run_cli(*settings, "dataset=fashion_mnist", f"dataset.data_dir={fashion_mnist_dir}", "dataset.check_md5=false",
                   "trainer.max_epochs=3", f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = lines(done, r"training: (?P<n>\d+)/(?P<total>3) epochs, train/loss \d\.\d{4}, train/acc \d\.\d{4}, .* ETA ")
    assert [n for n, _ in counts(found)] == [1, 2, 3]


def test_lines_come_at_most_every_few_seconds_and_at_the_end(caplog):
    from nadexp.progress import EVERY_S, Steps

    assert EVERY_S <= 10
    with caplog.at_level("INFO", logger="nadexp.progress"), Steps("counting", 1000, "things") as steps:
        for n in range(1000):
            steps.advance(1, f"latest {n}")
    assert [r.getMessage().split(",")[:2] for r in caplog.records] == [["counting: 1000/1000 things", " latest 999"]]
