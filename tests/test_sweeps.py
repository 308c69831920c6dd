import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nadexp.config import compose_config
from nadexp.data.directions import conjugate, fourier_cells, index_list, sweep_directions
from nadexp.errors import ConfigError
from nadexp.reports.heatmap import fourier_grid
from nadexp.run.execute import execute
from nadexp.sweeps.runner import models_at_once

from conftest import ROOT, check_result_schema, refusal, run_cli, run_reports

SMALL_SWEEP = [
    "experiment=single",
    "sweep=fourier",
    "arch=logreg",
    "dataset.shape=[1,8,8]",
    "dataset.n_train=2000",
    "dataset.n_test=500",
    "logger=none",
    "trainer.accelerator=cpu",
]


@pytest.mark.parametrize("height, width", [(8, 8), (32, 32), (6, 10)])
def test_fourier_cells_cover_every_direction_once(height, width):
    cells = fourier_cells(height, width)
    self_conjugate = sum(1 for kx in range(width) for ky in range(height) if conjugate(kx, ky, height, width) == (kx, ky))
    assert len(cells) == (height * width - self_conjugate) // 2 + self_conjugate
    covered = [c for cell in cells for c in {cell, conjugate(*cell, height, width)}]
    assert sorted(covered) == sorted((kx, ky) for kx in range(width) for ky in range(height))


def test_coarse_grids_and_index_ranges():
    assert fourier_cells(32, 32, stride=8) == [(0, 0), (8, 0), (16, 0), (0, 8), (8, 8), (16, 8), (24, 8), (0, 16), (8, 16), (16, 16)]
    assert index_list("0:10:3", 1024) == [0, 3, 6, 9] and index_list([5, 7], 1024) == [5, 7]
    assert sweep_directions("nad", (1, 32, 32), indices="::256", num_nads=1024) == [[0], [256], [512], [768]]
    assert len(sweep_directions("pixel", (1, 8, 8), stride=2)) == 16
    with pytest.raises(ConfigError, match="sweep.indices"):
        index_list([2000], 1024)
    with pytest.raises(ConfigError, match="sweep.stride"):
        sweep_directions("fourier", (1, 8, 8), stride=0)


def test_a_logreg_fourier_sweep_scores_over_95_percent_on_every_cell_and_writes_its_report(tmp_path):
    run_dir = tmp_path / "sweep"
    done = run_cli(*SMALL_SWEEP, "sweep.models_at_once=8", f"hydra.run.dir={run_dir}")  # 34 cells: groups of 8, then 2
    assert done.returncode == 0, done.stderr
    records = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
    assert len(records) == len(fourier_cells(8, 8)) == 34
    assert all(r["status"] == "ok" and r["test_acc"] > 0.95 for r in records), [r["test_acc"] for r in records]
    assert sorted(r["models_at_once"] for r in records) == [2, 2] + [8] * 32
    grid = fourier_grid(records, 8, 8)
    assert not np.isnan(grid).any()
    for name in ("cells.csv", "heatmap.png", "heatmap.pdf", "result.json", "config.yaml"):
        assert (run_dir / name).stat().st_size > 0
    result = json.loads((run_dir / "result.json").read_text())
    assert (result["cells"], result["cells_failed"]) == (34, 0)
    check_result_schema(result, "sweep")
    assert result["objective"] == result["mean_test_acc"] == result["summary"]["mean_test_acc"]
    assert str(run_dir / "heatmap.png") in done.stdout


def test_two_shard_jobs_of_one_sweep_share_its_directory_and_train_every_cell_once(tmp_path):
    done = run_cli(
        "-m", *SMALL_SWEEP, "sweep.stride=2", "sweep.num_shards=2", "sweep.shard=0,1", "trainer.max_epochs=2", f"hydra.sweep.dir={tmp_path}"
    )
    assert done.returncode == 0, done.stderr
    (sweep_dir,) = [p for p in tmp_path.iterdir() if (p / "cells").is_dir()]
    directions = sorted(json.loads(p.read_text())["direction"] for p in (sweep_dir / "cells").glob("*.json"))
    assert directions == sorted(list(d) for d in fourier_cells(8, 8, stride=2))
    assert json.loads((sweep_dir / "result.json").read_text())["cells"] == len(directions)  # the last shard reports all


def test_auto_stacks_models_on_a_cpu_only_for_nets_too_small_to_keep_it_busy():
    def pick(*overrides):
        return models_at_once(compose_config(["experiment=single", "sweep=fourier", "logger=none", "trainer.accelerator=cpu", *overrides]))

    assert pick("arch=logreg") == 16 and pick("arch=lenet", "dataset.shape=[1,16,16]") == 16
    assert pick("arch=lenet") == 1 and pick("arch=resnet18", "dataset.shape=[1,16,16]") == 1
    assert pick("arch=lenet", "dataset.shape=[1,16,16]", "trainer.precision=bf16-mixed") == 1  # stacking is float32 only
    assert pick("arch=lenet", "sweep.models_at_once=3") == 3


def test_an_impossible_number_of_stacked_models_is_refused(tmp_path):
    assert "sweep.models_at_once" in refusal([*SMALL_SWEEP, "sweep.models_at_once=0"], tmp_path / "sweep")


def test_a_killed_sweep_resumes_with_every_cell_exactly_once(tmp_path):
    run_dir = tmp_path / "resume"
    args = [*SMALL_SWEEP, "trainer.max_epochs=8", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and len(list((run_dir / "cells").glob("*.json"))) < 5:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = {p.name: p.read_text() for p in (run_dir / "cells").glob("*.json")}
    assert 5 <= len(before) < 34 and not (run_dir / "result.json").exists()
    for text in before.values():
        json.loads(text)  # no half-written record
    (run_dir / "cells" / f".{next(iter(before))}.x1y2z3.tmp").write_text('{"arch": ')  # a writer killed mid-write

    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert f"{len(before)} already done" in done.stdout
    after = {p.name: p.read_text() for p in (run_dir / "cells").glob("*.json")}
    assert len(after) == 34 and all(after[name] == text for name, text in before.items())
    assert not list((run_dir / "cells").glob(".*.tmp"))


def test_a_diverged_cell_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    run_dir = tmp_path / "nan"
    done = run_cli(
        *SMALL_SWEEP,
        "sweep.stride=4",
        "optimizer.lr=1e38",
        "trainer.gradient_clip_val=null",
        "trainer.max_epochs=3",
        f"hydra.run.dir={run_dir}",
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
    assert len(records) == len(fourier_cells(8, 8, 4))
    failed = [r for r in records if r["status"] == "failed"]
    assert failed and all("not finite" in r["reason"] for r in failed)


def test_a_sweep_directory_of_other_settings_is_not_overwritten(tmp_path):
    run_dir, common = tmp_path / "guard", [*SMALL_SWEEP, "sweep.stride=4"]
    execute(compose_config([*common, "trainer.max_epochs=1"], output_dir=run_dir))
    before = {p.name: p.read_text() for p in (run_dir / "cells").glob("*.json")}
    with pytest.raises(ConfigError, match="different config .*trainer.max_epochs"):
        execute(compose_config([*common, "trainer.max_epochs=2"], output_dir=run_dir))
    assert {p.name: p.read_text() for p in (run_dir / "cells").glob("*.json")} == before


def test_pixel_and_nad_index_sweeps(tmp_path):
    basis = np.linalg.qr(np.random.default_rng(0).standard_normal((64, 64)))[0].T.reshape(64, 1, 8, 8)
    np.save(tmp_path / "nads.npy", basis.astype(np.float32))
    common = [o for o in SMALL_SWEEP if o != "sweep=fourier"] + ["trainer.max_epochs=2"]
    overrides = [*common, "sweep=nad", f"dataset.nads={tmp_path / 'nads.npy'}", "sweep.indices=[0,5,63]"]
    execute(compose_config(overrides, output_dir=tmp_path / "nad"), overrides)
    directions = sorted(json.loads(p.read_text())["direction"] for p in (tmp_path / "nad" / "cells").glob("*.json"))
    assert directions == [[0], [5], [63]]
    assert (tmp_path / "nad" / "nad_curve.png").stat().st_size > 0
    overrides = [*common, "sweep=pixel", "sweep.stride=4"]
    execute(compose_config(overrides, output_dir=tmp_path / "pixel"), overrides)
    assert len(list((tmp_path / "pixel" / "cells").glob("*.json"))) == 4
    assert (tmp_path / "pixel" / "pixel_map.png").stat().st_size > 0


def test_the_report_command_draws_every_sweep(tmp_path):
    for stride in (2, 4):
        overrides = [*SMALL_SWEEP, f"sweep.stride={stride}", "trainer.max_epochs=2"]
        execute(compose_config(overrides, output_dir=tmp_path / f"s{stride}"), overrides)
    out = tmp_path / "report"
    done = run_reports(tmp_path / "s2", tmp_path / "s4", "--out", out)
    assert done.returncode == 0, done.stderr
    for name in ("heatmap_s2.png", "heatmap_s2.pdf", "heatmap_s4.png", "heatmap_panel.png", "heatmap_panel.pdf", "cells.csv"):
        assert (out / name).stat().st_size > 0, name
    summary = (out / "summary.md").read_text().splitlines()
    assert len(summary) == 4 and "| s2 | logreg | fourier | 10 | 0 |" in summary[2] and "| s4 | logreg | fourier | 4 | 0 |" in summary[3]
    assert len((out / "cells.csv").read_text().splitlines()) == 1 + 10 + 4
    bad = run_reports(tmp_path)
    assert bad.returncode == 2 and "neither a direction sweep directory" in bad.stderr


def test_a_multirun_of_sweeps_over_archs_ends_with_a_panel(tmp_path):
    done = run_cli(
        "-m",
        "experiment=single",
        "sweep=fourier",
        "arch=logreg,lenet",
        "dataset.shape=[1,16,16]",
        "sweep.stride=8",
        "dataset.n_train=1000",
        "dataset.n_test=200",
        "trainer.max_epochs=2",
        "logger=none",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in tmp_path.iterdir() if (p / "cells").is_dir())  # the label, then the digest of
    assert [name.rsplit("-", 1)[0] for name in names] == ["lenet-fourier-stride8-s0", "logreg-fourier-stride8-s0"]  # the overrides
    assert (tmp_path / "report" / "heatmap_panel.png").is_file() and "report of 2 sweep(s)" in done.stdout
    page = tmp_path / "report" / "dashboard.html"
    assert f"dashboard: {page}" in done.stdout.replace("\n", "") and page.stat().st_size > 1_000_000  # plotly.js inline
