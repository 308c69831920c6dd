"""Fourier maps predicted from NADs with no training (nadexp.reports.prediction, estimator=fourier_prediction,
python -m nadexp.reports --predict): the predicted map of a known spectrum, the calibration, the scores, the
command end to end (its NADs computed once and reused where experiment=nads keeps them), NADs made elsewhere, and
every bad input."""

import json
import math

import numpy as np
import pytest
import torch

from nadexp.config import compose_config
from nadexp.data.bases import fourier_direction
from nadexp.data.directions import fourier_cells
from nadexp.reports.__main__ import main as report_main
from nadexp.reports.prediction import CALIBRATIONS, DEFAULT_PREDICTOR, Calibration, fit_calibration, predict_fourier_map
from nadexp.reports.prediction_report import matched, published_records, scores
from nadexp.run.execute import execute

from conftest import check_config_header, check_result_schema, refusal, run_cli

SHAPE = (1, 8, 8)


def fourier_basis(shape):
    """Every real Fourier wave of the grid, cosine and sine (sine only where it does not vanish): an orthonormal
    basis of R^D, as [(cell, phase, vector)]."""
    _, height, width = shape
    basis = []
    for kx, ky in fourier_cells(height, width):
        basis.append(((kx, ky), "cosine", fourier_direction(kx, ky, shape, torch.float64, phase="cosine").flatten().numpy()))
        if (2 * kx) % width or (2 * ky) % height:
            basis.append(((kx, ky), "sine", fourier_direction(kx, ky, shape, torch.float64, phase="sine").flatten().numpy()))
    return basis


def test_the_fourier_basis_fixture_is_orthonormal():
    vectors = np.stack([v for _, _, v in fourier_basis(SHAPE)])
    assert vectors.shape == (64, 64)
    np.testing.assert_allclose(vectors @ vectors.T, np.eye(64), atol=1e-10)


@pytest.mark.parametrize("phase", ["cosine", "sine"])
def test_nads_that_are_fourier_waves_predict_each_wave_from_its_own_eigenvalue(phase):
    basis = fourier_basis(SHAPE)
    rng = np.random.default_rng(0)
    spectrum = np.sort(rng.uniform(1e-6, 1e-3, len(basis)))[::-1]  # a chosen spectrum, NADs in decreasing order
    order = rng.permutation(len(basis))  # which wave gets which eigenvalue
    nads = np.stack([basis[i][2] for i in order]).reshape(-1, *SHAPE)
    eigenvalue = {}
    for rank, i in enumerate(order):
        cell, wave, _ = basis[i]
        eigenvalue.setdefault(cell, {})[wave] = spectrum[rank]

    predicted = predict_fourier_map(nads, spectrum, SHAPE, stride=1, phase=phase)
    assert len(predicted) == len(fourier_cells(8, 8))
    calibration = CALIBRATIONS[DEFAULT_PREDICTOR]
    along = {cell: waves.get(phase, waves["cosine"]) for cell, waves in eigenvalue.items()}  # self-conjugate cells: cosine
    best = max(along.values())  # the gradient varies most along this wave of the phase D(v) uses
    for record in predicted:
        expected = math.log10(along[tuple(record["direction"])] / best)
        assert record["score"] == pytest.approx(expected, abs=1e-5)
        assert record["test_acc"] == pytest.approx(float(calibration(expected)), abs=1e-5)
    assert max(r["score"] for r in predicted) == pytest.approx(0, abs=1e-9)
    absolute = predict_fourier_map(nads, spectrum, SHAPE, stride=1, phase=phase, predictor="log_scaled_variance")
    assert [r["score"] for r in absolute] == pytest.approx([math.log10(64 * along[tuple(r["direction"])]) for r in absolute], abs=1e-5)
    # more gradient variance along a wave, a higher predicted accuracy: the map orders cells as the spectrum does
    by_value = sorted(predicted, key=lambda r: along[tuple(r["direction"])])
    accuracies = [r["test_acc"] for r in by_value]
    assert accuracies == sorted(accuracies) and accuracies[-1] > accuracies[0]


def test_isotropic_gradients_predict_every_direction_learnable_and_the_spectrum_scale_does_not_matter():
    basis = np.linalg.qr(np.random.default_rng(1).standard_normal((64, 64)))[0].T.reshape(-1, *SHAPE)
    flat = [r["test_acc"] for r in predict_fourier_map(basis, np.full(64, 2e-3), SHAPE)]
    assert np.ptp(flat) < 1e-9 and flat[0] > 0.9  # as logistic regression's map: every direction learnt
    spectrum = np.linspace(1, 0.01, 64)
    for predictor in ("log_relative_to_best", "log_anisotropy"):
        relative = [r["test_acc"] for r in predict_fourier_map(basis, spectrum, SHAPE, predictor=predictor)]
        rescaled = [r["test_acc"] for r in predict_fourier_map(basis, 37.0 * spectrum, SHAPE, predictor=predictor)]
        np.testing.assert_allclose(relative, rescaled, atol=1e-9)


def test_the_calibration_rises_from_chance_and_its_fit_recovers_a_known_curve():
    truth = Calibration(0.5, 3.0, -2.0)
    assert truth(-100) == pytest.approx(0.5) and truth(100) == pytest.approx(1.0) and truth(-2.0) == pytest.approx(0.75)
    scores_ = np.linspace(-4, 0, 50)
    noise = np.random.default_rng(2).normal(0, 0.005, 50)
    fitted = fit_calibration(scores_, truth(scores_) + noise)
    assert fitted.height == 0.5 and fitted.slope == pytest.approx(3.0, rel=0.1) and fitted.centre == pytest.approx(-2.0, abs=0.05)
    free = fit_calibration(scores_, Calibration(0.3, 3.0, -2.0)(scores_), ceiling=None)
    assert free.height == pytest.approx(0.3, abs=1e-3)


def test_scores_compare_two_maps_cell_by_cell():
    cells = fourier_cells(8, 8, 2)
    trained = [{"basis": "fourier", "direction": list(c), "test_acc": 0.5 + 0.05 * i, "status": "ok"} for i, c in enumerate(cells[:8])]
    # the prediction names each direction by its conjugate cell: the same direction, so it must still match
    conjugates = [[(-kx) % 8, (-ky) % 8] for kx, ky in cells[:8]]
    predicted = [{"basis": "fourier", "direction": d, "test_acc": 0.51 + 0.05 * i, "status": "ok"} for i, d in enumerate(conjugates)]
    numbers = scores(matched(predicted, trained, SHAPE))
    assert numbers["directions"] == 8 and numbers["pearson"] == pytest.approx(1.0) and numbers["spearman"] == pytest.approx(1.0)
    assert numbers["mean_abs_difference"] == pytest.approx(1.0)
    above = sum(0.5 + 0.05 * i > 0.75 for i in range(8))
    assert numbers["learnable_trained"] == above and numbers["learnable_agreement"] < 1  # 0.76 predicted where 0.75 was trained
    constant = scores(matched(predicted, [{**r, "test_acc": 1.0} for r in trained], SHAPE))
    predicted_above = sum(0.51 + 0.05 * i > 0.75 for i in range(8))
    assert constant["pearson"] is None and constant["learnable_agreement"] == pytest.approx(predicted_above / 8)


def test_the_published_maps_as_records_cover_the_published_grid_once_per_direction():
    records = published_records("lenet")
    assert len(records) == len(fourier_cells(32, 32, 2)) == 130
    assert 0.45 < min(r["test_acc"] for r in records) < 0.55 < 0.75 < max(r["test_acc"] for r in records) < 0.85  # chance to about 80 %
    assert {r["test_acc"] for r in published_records("logreg")} == {1.0}


def predicted_run(tmp_path, *extra):
    """The zero-training map (no spot checks; tests/test_spot_checks.py trains them)."""
    overrides = ["experiment=fourier_predicted", "logger=none", f"paths.log_dir={tmp_path}", "estimator.spot_checks=0", *extra]
    directory = tmp_path / "predicted" / "run"
    return execute(compose_config(overrides, output_dir=directory), overrides), directory


@pytest.mark.parametrize("figure", ["fourier_predicted", "fourier_predicted_library"])
def test_the_experiment_configs_say_how_to_run_them_and_compose_a_prediction(compose, figure):
    check_config_header(figure)
    cfg = compose(f"experiment={figure}", "logger=none")
    assert cfg.task == "fourier_prediction" and cfg.estimator.method == "finite_difference" and cfg.estimator.stride == 2


def test_a_predicted_map_end_to_end_estimates_the_nads_once_where_experiment_nads_keeps_them(tmp_path):
    settings = ["arch=logreg", "dataset.shape=[1,8,8]", "estimator.num_networks=32"]
    result, directory = predicted_run(tmp_path, *settings)
    check_result_schema(result, "fourier_prediction")
    cells = fourier_cells(8, 8, 2)
    assert result["cells"] == len(cells) and not result["nads_reused"]
    for name in ("heatmap.png", "heatmap.pdf", "cells.csv", "scores.json", "result.json", "config.yaml"):
        assert (directory / name).is_file(), name
    rows = (directory / "cells.csv").read_text().splitlines()
    assert rows[0] == "kx,ky,f_rows,f_cols,abs_freq,score,test_acc,uncertainty,trained_acc" and len(rows) == len(cells) + 1
    # logistic regression's input gradient is its weight vector, isotropic over initialisations: every direction is
    # predicted learnable, as logistic regression learns every one (up to the noise of 32 networks)
    accuracies = [float(line.split(",")[6]) for line in rows[1:]]
    assert min(accuracies) > 0.85

    nads_dir = tmp_path / "nads" / result["nads_dir"].split("/")[-1]
    assert (
        nads_dir.parent == tmp_path / "nads"
        and (nads_dir / "nads.npy").is_file()
        and nads_dir.name.startswith("logreg-finite_difference-s0-")
    )
    # the very directory that experiment=nads with these settings names (run here in a root of its own)
    done = run_cli("experiment=nads", "logger=none", *settings, env={"NADEXP_ROOT": str(tmp_path / "root")}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "root" / "outputs" / "nads" / nads_dir.name / "nads.npy").is_file()

    stamp = (nads_dir / "nads.npy").stat().st_mtime_ns
    again, _ = predicted_run(tmp_path, *settings)
    assert again["nads_reused"] and (nads_dir / "nads.npy").stat().st_mtime_ns == stamp
    assert again["summary"] == result["summary"]

    # the report command draws a predicted map as it draws a trained sweep
    assert report_main([str(directory), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "heatmap_run-predicted.png").is_file()
    assert "| run-predicted | logreg | fourier | 10 | 0 |" in (tmp_path / "report" / "summary.md").read_text()


def test_lenet_on_the_published_grid_is_scored_against_the_published_map_and_a_trained_sweep(tmp_path):
    from test_dashboards import published_like_sweep

    published_like_sweep(tmp_path / "sweep")
    result, directory = predicted_run(tmp_path, "arch=lenet", "estimator.num_networks=24", f"estimator.against={tmp_path / 'sweep'}")
    assert set(result["scores"]) == {"sweep", "published_lenet"}
    for name, numbers in result["scores"].items():
        assert numbers["directions"] == 130
        assert numbers["pearson"] > 0.5, numbers  # even 24 networks find LeNet's learnable low frequencies
        assert (directory / f"against_{name}.png").is_file() and len((directory / f"against_{name}.csv").read_text().splitlines()) == 131
    assert result["scores"]["sweep"]["pearson"] == pytest.approx(result["scores"]["published_lenet"]["pearson"], abs=1e-3)
    assert result["objective"] == result["scores"]["sweep"]["pearson"]


def write_published_style(directory, rows, singular_values=None, eigenvalues=None):
    directory.mkdir(parents=True)
    np.save(directory / "nads.npy", rows)
    if singular_values is not None:
        np.save(directory / "singular_values.npy", singular_values)
    if eigenvalues is not None:
        np.save(directory / "eigenvalues.npy", eigenvalues)
    return directory


def test_nads_made_elsewhere_flat_rows_and_singular_values_predict_the_same_map_as_their_eigenvalues(tmp_path, capsys):
    rng = np.random.default_rng(3)
    rows = np.linalg.qr(rng.standard_normal((1024, 1024)))[0].T.astype(np.float32)  # (k, D): no shape in the file
    eigenvalues = np.sort(rng.uniform(1e-9, 1e-6, 1024))[::-1]
    singular = np.sqrt(eigenvalues * 99)  # from 100 networks
    elsewhere = tmp_path / "published"  # files named as their authors named them
    elsewhere.mkdir()
    np.save(elsewhere / "LeNet_NADs.npy", rows)
    np.save(elsewhere / "LeNet_singular_values.npy", singular)
    by_eigen = write_published_style(tmp_path / "ours", rows, eigenvalues=eigenvalues)
    args = ["--shape", "1,32,32", "--arch", "lenet"]
    singular_args = ["--singular-values", str(elsewhere / "LeNet_singular_values.npy"), "--networks", "100"]
    assert report_main(["--predict", str(elsewhere / "LeNet_NADs.npy"), *args, *singular_args, "--out", str(tmp_path / "a")]) == 0
    assert report_main(["--predict", str(by_eigen / "nads.npy"), *args, "--out", str(tmp_path / "b")]) == 0
    assert "predicted vs published_lenet: 130 directions" in capsys.readouterr().out
    assert (tmp_path / "a" / "cells.csv").read_text() == (tmp_path / "b" / "cells.csv").read_text()
    # the chosen predictor is a ratio: the singular values alone give the same map; an absolute one needs --networks
    no_count = ["--singular-values", str(elsewhere / "LeNet_singular_values.npy")]
    assert report_main(["--predict", str(elsewhere / "LeNet_NADs.npy"), *args, *no_count, "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "cells.csv").read_text() == (tmp_path / "b" / "cells.csv").read_text()
    absolute = ["--predictor", "log_scaled_variance"]
    assert (
        report_main(["--predict", str(elsewhere / "LeNet_NADs.npy"), *args, *singular_args, *absolute, "--out", str(tmp_path / "d")]) == 0
    )
    assert report_main(["--predict", str(by_eigen), *args, *absolute, "--out", str(tmp_path / "e")]) == 0
    assert (tmp_path / "d" / "cells.csv").read_text() == (tmp_path / "e" / "cells.csv").read_text()
    assert json.loads((tmp_path / "a" / "scores.json").read_text())["published_lenet"]["directions"] == 130


def bad_nads(tmp_path):
    rows = np.eye(64, dtype=np.float32)
    return {
        "no spectrum": (
            write_published_style(tmp_path / "bare", rows),
            ["--shape", "1,8,8"],
            "no eigenvalues.npy (or singular_values.npy)",
        ),
        "singular values without networks": (
            write_published_style(tmp_path / "sv", rows, singular_values=np.ones(64)),
            ["--shape", "1,8,8", "--predictor", "log_scaled_variance"],
            "give --networks N",
        ),
        "wrong shape": (
            write_published_style(tmp_path / "shape", rows, eigenvalues=np.ones(64)),
            ["--shape", "1,16,16"],
            "not rows of NADs of shape",
        ),
        "no shape for flat rows": (write_published_style(tmp_path / "flat", rows, eigenvalues=np.ones(64)), [], "give --shape C,H,W"),
        "spectrum of another length": (
            write_published_style(tmp_path / "short", rows, eigenvalues=np.ones(10)),
            ["--shape", "1,8,8"],
            "10 eigenvalues for 64 NADs",
        ),
        "not unit rows": (
            write_published_style(tmp_path / "norms", 2 * rows, eigenvalues=np.ones(64)),
            ["--shape", "1,8,8"],
            "not unit vectors",
        ),
        "missing": (tmp_path / "nowhere", [], "no nads.npy there"),
        "missing spectrum file": (tmp_path / "bare", ["--shape", "1,8,8", "--eigenvalues", str(tmp_path / "no.npy")], "--eigenvalues"),
        "bad predictor": (tmp_path / "bare", ["--predictor", "vibes"], "--predictor vibes is unknown"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "no spectrum",
        "singular values without networks",
        "wrong shape",
        "no shape for flat rows",
        "spectrum of another length",
        "not unit rows",
        "missing",
        "bad predictor",
    ],
)
def test_bad_nads_for_a_prediction_get_one_line_and_no_files(tmp_path, capsys, case):
    path, args, words = bad_nads(tmp_path)[case]
    assert report_main(["--predict", str(path), *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and words in err, err
    assert not (tmp_path / "out").exists()


def test_against_a_sweep_of_another_shape_or_basis_is_refused(tmp_path, capsys):
    from test_dashboards import published_like_sweep

    published_like_sweep(tmp_path / "sweep32")
    nads = write_published_style(tmp_path / "nads", np.eye(64, dtype=np.float32).reshape(64, 1, 8, 8), eigenvalues=np.ones(64))
    assert report_main(["--predict", str(nads), "--against", str(tmp_path / "sweep32"), "--out", str(tmp_path / "out")]) == 2
    assert "a sweep of images of shape [1, 32, 32], but the NADs are of shape [1, 8, 8]" in capsys.readouterr().err
    assert report_main(["--predict", str(nads), "--against", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert "is not a sweep directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, words",
    [
        ("estimator.predictor=vibes", "estimator.predictor='vibes' is unknown: choose one of log_relative_to_best, log_scaled_variance"),
        ("estimator.stride=0", "estimator.stride must be an integer >= 1"),
        ("estimator.max_frequency=-1", "estimator.max_frequency must be an integer >= 0"),
        ("estimator.against=/no/such/sweep", "/no/such/sweep is not a sweep directory"),
        ("estimator.against={sweep32}", "sweep of images of shape [1, 32, 32]: give a Fourier sweep of dataset.shape=[1, 8, 8]"),
        ("estimator.num_networks=2", "estimator.num_networks must be >= 4"),
        ("dataset.fourier_phase=tilted", "dataset.fourier_phase='tilted' is unknown"),
        ("callbacks=checkpoints", "has no effect on a predicted Fourier map"),
        ("estimator.spot_checks=-1", "estimator.spot_checks must be an integer >= 0"),
        ("estimator.spot_checks=11", "estimator.spot_checks=11 is more than the 10 directions of the map's grid"),
    ],
)
def test_bad_settings_of_the_experiment_stop_it_before_anything_is_written(tmp_path, override, words):
    if "{sweep32}" in override:
        from test_dashboards import published_like_sweep

        published_like_sweep(tmp_path / "sweep32")
        override = override.format(sweep32=tmp_path / "sweep32")
    overrides = [
        "experiment=fourier_predicted",
        "arch=logreg",
        "dataset.shape=[1,8,8]",
        "logger=none",
        f"paths.log_dir={tmp_path}",
        override,
    ]
    assert words in refusal(overrides, tmp_path / "run")
    assert not (tmp_path / "nads").exists()


def test_the_command_line_prints_its_scores(tmp_path):
    ok = run_cli(
        "experiment=fourier_predicted",
        "arch=logreg",
        "estimator.num_networks=8",
        "estimator.spot_checks=0",
        "logger=none",
        env={"NADEXP_ROOT": str(tmp_path)},
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "predicted vs published_logreg: 130 directions" in ok.stdout
    (run_dir,) = (tmp_path / "outputs" / "predicted").iterdir()  # named as experiment=nads names its NADs: a digest of the settings
    assert run_dir.name.startswith("logreg-fourier-stride2-s0-") and (run_dir / "result.json").is_file()


def test_two_jobs_that_need_the_same_nads_estimate_them_once(tmp_path, monkeypatch, caplog):
    """While one process estimates the NADs (it holds their claim), another job waits and then reads them."""
    import shutil
    import threading
    import time

    from nadexp.estimators import fourier_prediction
    from nadexp.results import claims

    small = ["arch=logreg", "dataset.shape=[1,8,8]", "estimator.num_networks=16"]
    predicted_run(tmp_path / "first", *small)
    (estimated,) = (tmp_path / "first" / "nads").iterdir()
    nads_dir = tmp_path / "second" / "nads" / estimated.name  # the same settings: the same folder name
    claim = nads_dir.parent / f".{nads_dir.name}.claim"
    claim.parent.mkdir(parents=True)
    assert claims.claim(claim)  # the other process, estimating (alive: this test's own pid)

    def the_other_process_finishes():
        time.sleep(1.0)
        shutil.copytree(estimated, nads_dir)
        claim.unlink()

    calls = []
    monkeypatch.setattr(fourier_prediction, "estimate", lambda *args: calls.append(args))
    monkeypatch.setattr(fourier_prediction, "NADS_POLL_S", 0.2)
    other = threading.Thread(target=the_other_process_finishes)
    other.start()
    with caplog.at_level("INFO", logger="nadexp.estimators.fourier_prediction"):
        result, _ = predicted_run(tmp_path / "second", *small)
    other.join()
    assert calls == [] and "being estimated into" in caplog.text and not claim.exists()
    first = json.loads((tmp_path / "first" / "predicted" / "run" / "result.json").read_text())
    assert result["summary"] == first["summary"]  # the same NADs, the same map
