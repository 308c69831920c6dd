"""The comparison with the published Fourier heat maps: cell matching, conjugate mirroring, the report's files."""

import csv
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from nadexp.config import compose_config
from nadexp.errors import ConfigError
from nadexp.reports.__main__ import main as report_main
from nadexp.reports.comparison import comparison_grids, match_directions, summarise
from nadexp.reports.published import PUBLISHED_CSV, published_map
from nadexp.run.execute import execute


def coded_map():
    """A hand-made published map whose every cell holds a different value: 0.5 + (index of the cell) / 1000."""
    cells = [(f_rows, f_cols) for f_rows in range(-16, 16, 2) for f_cols in range(-16, 16, 2)]
    return {cell: 0.5 + i / 1000 for i, cell in enumerate(cells)}


def record(kx, ky, acc, status="ok"):
    return {"basis": "fourier", "direction": [kx, ky], "test_acc": acc, "status": status}


def test_cells_are_matched_by_signed_frequency_and_compared_with_both_published_trainings():
    published = coded_map()
    rows = match_directions([record(2, 30, 0.9), record(0, 4, 0.7), record(3, 0, 0.8), record(6, 0, 0.6, "failed")], published)
    # (kx, ky) = (2, 30): 2 cycles across the columns, -2 down the rows; its conjugate is (f_rows, f_cols) = (2, -2).
    first = next(r for r in rows if (r["kx"], r["ky"]) == (2, 30))
    assert (first["f_rows"], first["f_cols"]) == (-2, 2)
    assert first["published_cell"] == pytest.approx(100 * published[(-2, 2)])
    assert first["published_conjugate"] == pytest.approx(100 * published[(2, -2)])
    assert first["published"] == pytest.approx(50 * (published[(-2, 2)] + published[(2, -2)]), abs=0.01)
    assert first["difference"] == pytest.approx(90 - first["published"], abs=0.01)
    # (0, 4): an axis cell with no column frequency; odd (3, 0) is off the published grid; failed cells are skipped.
    assert sorted((r["kx"], r["ky"]) for r in rows) == [(0, 4), (2, 30)]


def test_a_direction_fills_its_cell_and_the_mirrored_conjugate_on_the_published_grid():
    published = coded_map()
    reproduced, grid = comparison_grids([record(2, 30, 0.9), record(16, 0, 0.55)], published)
    index = {f: i for i, f in enumerate(range(-16, 16, 2))}
    assert reproduced[index[-2], index[2]] == reproduced[index[2], index[-2]] == pytest.approx(0.9)
    assert reproduced[index[0], index[-16]] == pytest.approx(0.55)  # Nyquist: its own conjugate
    assert np.isnan(reproduced).sum() == 256 - 3
    assert all(grid[index[a], index[c]] == value for (a, c), value in published.items())


def test_the_summary_counts_the_windows_and_the_agreement():
    published = coded_map()
    records = [record(0, 0, published[(0, 0)] + 0.02), record(4, 2, published[(2, 4)]), record(12, 12, 0.5)]
    summary = summarise(match_directions(records, published))
    assert summary["all"]["directions"] == 3
    low = summary["low: abs(f_rows), abs(f_cols) <= 6"]
    assert low["directions"] == 2 and low["within_5_points"] == 2
    assert summary["high: abs(f_rows), abs(f_cols) >= 10"]["max_distance_from_chance"] == 0


def test_the_shipped_published_map_has_the_documented_grid_and_values():
    lenet, logreg = published_map("lenet"), published_map("logreg")
    assert len(lenet) == len(logreg) == 256 and set(lenet) == {(a, c) for a in range(-16, 16, 2) for c in range(-16, 16, 2)}
    assert all(value == 1.0 for value in logreg.values())  # logistic regression: 100 % everywhere
    with PUBLISHED_CSV.open() as file:
        rows = list(csv.DictReader(file))
    row = next(r for r in rows if (r["x"], r["y"]) == ("8", "8"))  # DC
    assert lenet[(0, 0)] == float(row["acc_lenet"]) / 100
    assert (PUBLISHED_CSV.parent / "README.md").read_text().count("Apache License 2.0") == 1
    with pytest.raises(ConfigError, match="lenet, logreg"):
        published_map("vgg11")


def write_sweep(directory, arch, shape, records):
    (directory / "cells").mkdir(parents=True)
    config = {"arch_name": arch, "sweep": {"basis": "fourier", "stride": 2}, "dataset": {"shape": shape}}
    OmegaConf.save(OmegaConf.create(config), directory / "config.yaml")
    for r in records:
        r = {"arch": arch, "seed": 0, **r}
        (directory / "cells" / f"{arch}-fourier-{r['direction'][0]}_{r['direction'][1]}-s0.json").write_text(json.dumps(r))


def test_the_report_command_writes_the_comparison_of_any_subset_of_cells(tmp_path, capsys):
    published = published_map("lenet")
    write_sweep(tmp_path / "mine", "lenet", [1, 32, 32], [record(0, 0, published[(0, 0)]), record(2, 0, 0.7)])
    assert report_main([str(tmp_path / "mine"), "--published", "--out", str(tmp_path / "out")]) == 0
    stem = tmp_path / "out" / "published_comparison_mine"
    for suffix in (".png", ".pdf", ".csv", ".md"):
        assert stem.with_suffix(suffix).stat().st_size > 0, suffix
    with stem.with_suffix(".csv").open() as file:
        table = list(csv.DictReader(file))
    assert [(r["kx"], r["ky"]) for r in table] == [("0", "0"), ("2", "0")]
    assert float(table[0]["difference"]) == 0
    printed = capsys.readouterr().out
    assert "| all | 2 |" in printed and "| 2 | 0 | 0 | 2 | 70.0 |" in printed and "published_comparison_mine.png" in printed

    write_sweep(tmp_path / "other", "vgg11", [1, 32, 32], [record(0, 0, 0.6)])
    assert report_main([str(tmp_path / "other"), "--published", "--out", str(tmp_path / "out2")]) == 2
    assert "--published" in capsys.readouterr().err


def test_a_fourier_sweep_of_logistic_regression_ends_with_its_comparison_to_the_published_map(tmp_path):
    overrides = [
        "experiment=fourier_logreg",
        "sweep.stride=16",
        "dataset.n_train=4000",
        "dataset.n_test=500",
        "trainer.max_epochs=5",
        "logger=none",
        "trainer.accelerator=cpu",
    ]
    result = execute(compose_config(overrides, output_dir=tmp_path), overrides)
    assert "published_comparison.png" in result["files"] and result["published_comparison"]["all"]["directions"] == 4
    with (tmp_path / "published_comparison.csv").open() as file:
        table = list(csv.DictReader(file))
    # stride 16: DC and the three Nyquist cells, every one its own conjugate, learnt by a linear model.
    assert sorted((int(r["f_rows"]), int(r["f_cols"])) for r in table) == [(-16, -16), (-16, 0), (0, -16), (0, 0)]
    assert all(float(r["published"]) == 100 and float(r["reproduced"]) > 95 for r in table), [r["reproduced"] for r in table]
    assert "| all | 4 |" in (tmp_path / "published_comparison.md").read_text()
