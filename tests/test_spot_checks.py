"""A predicted map calibrated on the arch itself (nadexp.reports.calibration, estimator.spot_checks, --suggest and
--calibrate): the fit recovers a known curve, the chosen directions cover the score's range once each, the two-step
route from NADs made elsewhere, the experiment end to end (training, reusing and resuming its cells), and every bad
input."""

import csv
import json

import numpy as np
import pytest
from test_prediction import fourier_basis, write_published_style

from nadexp.config import compose_config
from nadexp.data.directions import conjugate, fourier_cells, signed
from nadexp.reports.__main__ import main as report_main
from nadexp.reports.calibration import choose_spot_checks, fit_own, spot_check
from nadexp.reports.prediction import CALIBRATIONS, DEFAULT_PREDICTOR, Calibration, predict_fourier_map
from nadexp.reports.prediction_report import cell_key
from nadexp.run.execute import execute

from conftest import check_result_schema, refusal, run_cli

PRIOR = CALIBRATIONS[DEFAULT_PREDICTOR]
TRUE = Calibration(0.5, 4.0, -0.6)  # an arch that learns further along the score than LeNet does (centre -0.76)


def test_the_calibration_recovers_a_known_logistic_curve_from_noisy_cells_and_says_how_sure_it_is():
    rng = np.random.default_rng(0)
    scores = np.linspace(-2, 0, 8)
    accuracies = TRUE(scores) + rng.normal(0, 0.01, len(scores))
    own = fit_own(scores, accuracies)
    assert own.curve.slope == pytest.approx(TRUE.slope, rel=0.2) and own.curve.centre == pytest.approx(TRUE.centre, abs=0.05)
    grid = np.linspace(-2, 0, 101)
    error, doubt = np.abs(own(grid) - TRUE(grid)), own.uncertainty(grid)
    assert error.max() < 0.03 and np.all(doubt > 0) and np.all(error < 3 * doubt)  # the stated uncertainty covers the error
    # fewer cells, less certain; a level map (every score alike) is their mean accuracy everywhere
    assert fit_own(scores[[0, 4, 7]], accuracies[[0, 4, 7]]).uncertainty(grid).mean() > doubt.mean()
    flat = fit_own([-0.3, -0.3, -0.3], [0.97, 0.99, 0.98])
    assert flat(np.array([-2.0, 0.0])) == pytest.approx([0.98, 0.98], abs=1e-4)
    # accuracy that falls with the score (LeNet without pooling at DC): the best rising curve is level, at their mean
    assert fit_own([-1.0, -0.5, 0.0], [0.95, 0.94, 0.83])(np.array([-1.0, 0.0])) == pytest.approx([0.9067, 0.9067], abs=1e-3)


def wave_map(shape=(1, 16, 16), stride=2):
    """A predicted map of NADs that are the grid's Fourier waves, their spectrum falling with frequency."""
    basis = fourier_basis(shape)
    frequency = np.array([np.hypot(signed(kx, shape[2]), signed(ky, shape[1])) for (kx, ky), _, _ in basis])
    order = np.argsort(frequency, kind="stable")
    nads = np.stack([basis[i][2] for i in order]).reshape(-1, *shape)
    spectrum = 10.0 ** (-frequency[order] / 8)  # scores from 0 to about -1.4: across the curves below
    return nads, spectrum, predict_fourier_map(nads, spectrum, shape, stride)


def test_the_spot_checks_cover_the_scores_range_and_never_repeat_a_direction_or_its_conjugate():
    _, _, predicted = wave_map()
    scores = np.array([r["score"] for r in predicted])
    for k in (2, 3, 6, 12, len(predicted)):
        picks = choose_spot_checks(scores, k, PRIOR)
        assert len(picks) == k == len(set(picks))
        keys = [cell_key(predicted[i]["direction"], 16, 16) for i in picks]
        conjugates = [cell_key(conjugate(*predicted[i]["direction"], 16, 16), 16, 16) for i in picks]
        assert len(set(keys)) == k and keys == conjugates  # one key per real direction: no conjugate chosen twice
        if k >= 3:  # the spread picks: a high score, a low one, one in the middle
            rank = [float((scores < scores[i]).mean()) for i in picks[:3]]
            assert rank[0] >= 0.8 and rank[1] <= 0.2 and 0.3 <= rank[2] <= 0.7, rank
    # with results the next picks go where the fitted curve is least certain: not beside the trained ones
    trained = spot_check(scores, 5, PRIOR, lambda picks: {i: float(TRUE(scores[i])) for i in picks})
    assert len(trained) == 5
    own = fit_own(scores[list(trained)], list(trained.values()))
    untrained = [i for i in range(len(scores)) if i not in trained]
    assert np.abs(own(scores[untrained]) - TRUE(scores[untrained])).max() < 0.02
    with pytest.raises(Exception, match="must be an integer from 0 to"):
        choose_spot_checks(scores, len(scores) + 1, PRIOR)


def write_cells(path, rows):
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["f_rows", "f_cols", "test_acc"])
        writer.writerows(rows)
    return path


def test_suggest_then_calibrate_from_nads_made_elsewhere(tmp_path, capsys):
    nads, spectrum, predicted = wave_map()
    nads_dir = write_published_style(tmp_path / "nads", nads.astype(np.float32), eigenvalues=spectrum)
    common = ["--predict", str(nads_dir), "--shape", "1,16,16"]
    assert report_main([*common, "--suggest", "5", "--out", str(tmp_path / "suggest")]) == 0
    with (tmp_path / "suggest" / "spot_checks.csv").open() as file:
        suggested = list(csv.DictReader(file))
    assert list(suggested[0]) == ["f_rows", "f_cols", "score"] and len(suggested) == 5
    score = {cell_key((int(r["f_cols"]) % 16, int(r["f_rows"]) % 16), 16, 16): float(r["score"]) for r in suggested}
    assert len(score) == 5 and max(score.values()) > np.quantile([r["score"] for r in predicted], 0.8)
    # trained elsewhere: the accuracies of an arch whose curve is TRUE
    write_cells(tmp_path / "trained.csv", [(r["f_rows"], r["f_cols"], round(float(TRUE(float(r["score"]))), 4)) for r in suggested])
    assert report_main([*common, "--calibrate", str(tmp_path / "trained.csv"), "--out", str(tmp_path / "calibrated")]) == 0
    assert "calibration fitted to 5 trained cells" in capsys.readouterr().out
    with (tmp_path / "calibrated" / "cells.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0])[:7] == ["kx", "ky", "f_rows", "f_cols", "abs_freq", "score", "test_acc"] and len(rows) == len(predicted)
    trained = [r for r in rows if r["trained_acc"]]
    assert len(trained) == 5 and all(float(r["uncertainty"]) == 0 for r in trained)
    others = [r for r in rows if not r["trained_acc"]]
    assert all(float(r["uncertainty"]) > 0 for r in others)
    assert max(abs(float(r["test_acc"]) - TRUE(float(r["score"]))) for r in others) < 0.02
    # the zero-training map, for comparison, reads LeNet's curve: further off this arch
    with (tmp_path / "suggest" / "cells.csv").open() as file:
        uncalibrated = {(r["kx"], r["ky"]): float(r["test_acc"]) for r in csv.DictReader(file)}
    assert max(abs(uncalibrated[(r["kx"], r["ky"])] - TRUE(float(r["score"]))) for r in others) > 0.05
    # suggesting more beside the trained ones never repeats them
    assert report_main([*common, "--calibrate", str(tmp_path / "trained.csv"), "--suggest", "3", "--out", str(tmp_path / "more")]) == 0
    with (tmp_path / "more" / "spot_checks.csv").open() as file:
        more = {(r["f_rows"], r["f_cols"]) for r in csv.DictReader(file)}
    assert len(more) == 3 and not more & {(r["f_rows"], r["f_cols"]) for r in suggested}


def test_calibrate_scores_against_a_trained_map_on_the_cells_it_was_not_fitted_on(tmp_path, capsys):
    from test_dashboards import published_like_sweep

    published_like_sweep(tmp_path / "sweep")
    nads, spectrum, _ = wave_map((1, 32, 32))
    nads_dir = write_published_style(tmp_path / "nads", nads.astype(np.float32), eigenvalues=spectrum)
    cells = [(0, 0, 0.725), (0, 2, 0.8), (2, 2, 0.79), (8, 8, 0.5), (14, 0, 0.74)]  # published LeNet values, roughly
    write_cells(tmp_path / "trained.csv", cells)
    args = ["--predict", str(nads_dir), "--calibrate", str(tmp_path / "trained.csv"), "--against", str(tmp_path / "sweep")]
    assert report_main([*args, "--out", str(tmp_path / "out")]) == 0
    assert "predicted vs sweep: 125 directions" in capsys.readouterr().out  # 130 on the grid, less the 5 fitted on
    assert json.loads((tmp_path / "out" / "scores.json").read_text())["sweep"]["directions"] == 125
    # a sweep directory calibrates as well as a CSV: here every cell of it, so none is left to score
    assert report_main(["--predict", str(nads_dir), "--calibrate", str(tmp_path / "sweep"), "--out", str(tmp_path / "all")]) == 0
    with (tmp_path / "all" / "cells.csv").open() as file:
        assert all(r["trained_acc"] for r in csv.DictReader(file))


@pytest.mark.parametrize(
    "case, words",
    [
        ("one cell", "1 trained cell(s) on the grid; a calibration needs at least 2"),
        ("off the grid", "the cell f_rows=1, f_cols=0 is not on the grid of the predicted map (see --stride)"),
        ("percent", "test_acc must be fractions from 0 to 1, got up to 85.0 (they look like percentages: divide by 100)"),
        ("columns", "not a CSV with columns f_rows, f_cols, test_acc"),
        ("not a sweep", "not a sweep directory (config.yaml and cells/) nor a CSV"),
        ("suggest too many", "K=100 must be an integer from 0 to 34"),
        ("suggest negative", "--suggest K: K must be >= 0"),
    ],
)
def test_bad_calibration_inputs_get_one_line_exit_2_and_no_files(tmp_path, capsys, case, words):
    nads, spectrum, _ = wave_map()
    nads_dir = write_published_style(tmp_path / "nads", nads.astype(np.float32), eigenvalues=spectrum)
    (tmp_path / "empty").mkdir()
    (tmp_path / "columns.csv").write_text("kx,ky,acc\n0,0,0.9\n")
    extra = {
        "one cell": ["--calibrate", str(write_cells(tmp_path / "one.csv", [(0, 0, 0.9)]))],
        "off the grid": ["--calibrate", str(write_cells(tmp_path / "off.csv", [(0, 0, 0.9), (1, 0, 0.8)]))],
        "percent": ["--calibrate", str(write_cells(tmp_path / "percent.csv", [(0, 0, 85), (2, 0, 70)]))],
        "columns": ["--calibrate", str(tmp_path / "columns.csv")],
        "not a sweep": ["--calibrate", str(tmp_path / "empty")],
        "suggest too many": ["--suggest", "100"],
        "suggest negative": ["--suggest", "-1"],
    }[case]
    assert report_main(["--predict", str(nads_dir), "--shape", "1,16,16", *extra, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and words in err, err
    assert not (tmp_path / "out" / "cells.csv").exists() and not (tmp_path / "out" / "spot_checks.csv").exists()


TINY_TRAINING = ["dataset.n_train=256", "dataset.n_test=256", "trainer.max_epochs=2", "logger=none"]


def spot_check_run(root, *extra, name="run"):
    overrides = ["experiment=fourier_predicted", f"paths.log_dir={root}", *TINY_TRAINING, *extra]
    directory = root / "predicted" / name
    return execute(compose_config(overrides, output_dir=directory), overrides), directory


@pytest.mark.parametrize("arch, size, networks", [("logreg", 8, 16), ("lenet", 16, 16)])
def test_spot_checks_end_to_end_train_reuse_and_calibrate(tmp_path, arch, size, networks):
    stride = 2
    settings = [f"arch={arch}", f"dataset.shape=[1,{size},{size}]", f"estimator.num_networks={networks}"]
    root = tmp_path / "outputs"
    result, directory = spot_check_run(root, *settings, "estimator.spot_checks=4")
    check_result_schema(result, "fourier_prediction")
    grid = fourier_cells(size, size, stride)
    assert result["cells"] == len(grid) and len(result["spot_checks"]) == 4
    assert len({tuple(c["direction"]) for c in result["spot_checks"]}) == 4
    assert result["calibration"]["cells"] == 4 and result["calibration"]["noise"] >= 0.02
    with (directory / "cells.csv").open() as file:
        rows = list(csv.DictReader(file))
    trained = {(int(r["kx"]), int(r["ky"])): float(r["trained_acc"]) for r in rows if r["trained_acc"]}
    assert trained == {tuple(c["direction"]): c["test_acc"] for c in result["spot_checks"]}
    assert all(float(r["uncertainty"]) > 0 and 0.5 <= float(r["test_acc"]) <= 1 for r in rows if not r["trained_acc"])
    assert (directory / "heatmap.png").is_file() and (directory / "result.json").is_file()
    # the spot checks are cells of the sweep with the same settings, in the directory that the experiment sweeping
    # that grid names (experiment=fourier_<arch>, stride 2): that sweep, run as a user runs it, skips them
    sweep_dir = root / "sweeps" / result["spot_check_sweep_dir"].split("/")[-1]
    assert len(list((sweep_dir / "cells").glob("*.json"))) == 4 and all(c["source"] == str(sweep_dir) for c in result["spot_checks"])
    stamps = {p: p.stat().st_mtime_ns for p in (sweep_dir / "cells").glob("*.json")}
    sweep = [f"experiment=fourier_{arch}", f"dataset.shape=[1,{size},{size}]", *TINY_TRAINING]
    done = run_cli(*sweep, env={"NADEXP_ROOT": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(grid)} directions, 4 already done, {len(grid) - 4} to train" in done.stderr + done.stdout
    assert len(list((sweep_dir / "cells").glob("*.json"))) == len(grid)
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    # again, in another run directory: every spot check is reused (nothing trained), the same calibrated map
    again, _ = spot_check_run(root, *settings, "estimator.spot_checks=4", name="again")
    assert again["spot_checks"] == result["spot_checks"] and again["calibration"] == result["calibration"]
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())


def test_spot_checks_with_training_settings_that_cannot_run_stop_before_anything_is_written(tmp_path):
    overrides = [
        "experiment=fourier_predicted",
        "arch=logreg",
        "dataset.shape=[1,8,8]",
        "optimizer.lr=-1",
        f"paths.log_dir={tmp_path}",
        "logger=none",
    ]
    assert "optimizer" in refusal(overrides, tmp_path / "run")
    assert not (tmp_path / "nads").exists() and not (tmp_path / "sweeps").exists()


def test_the_linearised_logistic_regression_is_the_logistic_regression_trained_as_a_cell():
    """Logistic regression is linear in its parameters, so its linearisation trained by the cell's protocol (batches,
    learning-rate decay, clipping) must reach the accuracy its own training reaches."""
    from nadexp.estimators.linearised import linearised_accuracy
    from nadexp.sweeps.runner import cell_config, train_cell

    training = ["dataset.n_train=1024", "dataset.n_test=1024", "trainer.max_epochs=1", "logger=none", "trainer.accelerator=cpu"]
    cell = cell_config(compose_config(["sweep=fourier", "arch=logreg", "dataset.shape=[1,8,8]", *training]), [2, 0])
    trained = train_cell(cell)["test_acc"]
    assert 0.6 < trained < 1.0, trained  # learnt, not saturated: a real comparison
    assert linearised_accuracy(cell) == pytest.approx(trained, abs=2 / 1024)
