"""A predicted Fourier map (nadexp.reports.prediction) as files, scored against every trained map there is for it:
a sweep of the same arch and grid (any subset of its cells) and, for lenet and logreg on 1 x 32 x 32, the
published map. Shared by `experiment=fourier_predicted` and `python -m nadexp.reports --predict`."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import pearsonr, spearmanr

from nadexp.data.directions import conjugate, signed
from nadexp.data.nad_file import load_nads
from nadexp.errors import ConfigError
from nadexp.reports.calibration import OwnCalibration, choose_spot_checks, fit_own
from nadexp.reports.heatmap import draw, fourier_grid, plot_fourier_heatmap, save_figure
from nadexp.reports.metrics import cell_rows
from nadexp.reports.prediction import LEARNABLE, spectrum_of
from nadexp.reports.published import has_published_map, published_map
from nadexp.results.atomic import write_csv_atomic, write_json_atomic
from nadexp.results.schema import read_record, read_record_or_warn

PREDICTED_COLUMNS = ("kx", "ky", "f_rows", "f_cols", "abs_freq", "score", "test_acc", "uncertainty", "trained_acc")
SPOT_CHECK_COLUMNS = ("f_rows", "f_cols", "score")
SCORE_COLUMNS = ("kx", "ky", "f_rows", "f_cols", "predicted", "trained", "difference")


def cell_key(direction, height: int, width: int) -> tuple[int, int]:
    """One key per real direction: a cell and its conjugate share it."""
    kx, ky = direction
    return min((kx, ky), conjugate(kx, ky, height, width))


def published_records(arch: str) -> list[dict]:
    """The published map of ``arch`` (1 x 32 x 32) as trained cell records, the two published cells of each
    direction averaged as docs/reproduction.md compares them."""
    accuracies: dict[tuple[int, int], list[float]] = {}
    for (f_rows, f_cols), accuracy in published_map(arch).items():
        accuracies.setdefault(cell_key((f_cols % 32, f_rows % 32), 32, 32), []).append(accuracy)
    return [trained_cell(list(k), float(np.mean(a))) for k, a in sorted(accuracies.items())]


def trained_cell(direction: list[int], test_acc: float) -> dict:
    """A Fourier cell record of an accuracy that comes from elsewhere (a published map, a predicted map's cells.csv)."""
    return {"basis": "fourier", "direction": direction, "test_acc": test_acc, "status": "ok"}


def matched(predicted: list[dict], trained: list[dict], shape, exclude=()) -> list[dict]:
    """One row per direction both maps hold, accuracies in %; directions ``exclude`` (cell keys: those a
    calibration was fitted to) left out."""
    _, height, width = shape
    left_out = set(exclude)
    ours = {cell_key(r["direction"], height, width): r["test_acc"] for r in predicted if r.get("status") == "ok"}
    ours, rows = {key: value for key, value in ours.items() if key not in left_out}, []
    for record in trained:
        if record.get("status") != "ok" or record.get("basis") != "fourier" or record.get("test_acc") is None:
            continue
        key = cell_key(record["direction"], height, width)
        if key in ours:
            p, t = 100 * ours[key], 100 * record["test_acc"]
            kx, ky = key
            place = {"kx": kx, "ky": ky, "f_rows": signed(ky, height), "f_cols": signed(kx, width)}
            rows.append({**place, "predicted": round(p, 2), "trained": round(t, 2), "difference": round(p - t, 2)})
    return rows


def _stat(function, a, b):
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None  # undefined for a constant map (published logistic regression: 100 % everywhere)
    return round(float(function(a, b)[0]), 4)


def scores(rows: list[dict]) -> dict:
    """Pearson and Spearman correlation, mean absolute difference (points), and how often both maps agree
    on whether a direction is learnable (test accuracy above 75 %) or not."""
    if not rows:
        return {"directions": 0}
    p, t = np.array([r["predicted"] for r in rows]), np.array([r["trained"] for r in rows])
    lp, lt = p > 100 * LEARNABLE, t > 100 * LEARNABLE  # learnable, predicted and trained
    found = dict(directions=len(rows), pearson=_stat(pearsonr, p, t), spearman=_stat(spearmanr, p, t))
    found.update(mean_abs_difference=round(float(np.abs(p - t).mean()), 2), learnable_agreement=round(float((lp == lt).mean()), 4))
    return {**found, "learnable_trained": int(lt.sum()), "learnable_predicted": int(lp.sum()), "learnable_both": int((lp & lt).sum())}


def _shown(value):
    return "-" if value is None else value  # a correlation of a constant map is undefined


def scores_line(name: str, numbers: dict) -> str:
    if not numbers.get("directions"):
        return f"{name}: no direction in common"
    return (
        f"{name}: {numbers['directions']} directions, Pearson {_shown(numbers['pearson'])}, Spearman {_shown(numbers['spearman'])}, "
        f"mean |difference| {numbers['mean_abs_difference']} points, learnable (> {100 * LEARNABLE:.0f} %) agreement "
        f"{100 * numbers['learnable_agreement']:.1f} % ({numbers['learnable_both']} learnable in both, "
        f"{numbers['learnable_predicted']} predicted, {numbers['learnable_trained']} trained)"
    )


def side_by_side(predicted: list[dict], trained: list[dict], shape, stride: int, title: str, numbers: dict, path: Path) -> list[Path]:
    """Predicted | trained | predicted - trained, on the trained map's cells and the heat map's axes and scale."""
    _, height, width = shape
    trained_grid = fourier_grid(trained, height, width)
    predicted_grid = np.where(np.isnan(trained_grid), np.nan, fourier_grid(predicted, height, width))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), layout="constrained")
    image = draw(axes[0], predicted_grid, stride, "predicted from the NADs (no training)")
    draw(axes[1], trained_grid, stride, title)
    fig.colorbar(image, ax=axes[:2], label="test accuracy", shrink=0.85)
    difference = draw(axes[2], predicted_grid - trained_grid, stride, "predicted - trained")
    difference.set(cmap="RdBu_r", clim=(-0.3, 0.3))
    fig.colorbar(difference, ax=axes[2], label="predicted - trained (fraction)", shrink=0.85)
    agreement = f"learnable agreement {100 * numbers['learnable_agreement']:.0f} %"
    correlations = f"Pearson {_shown(numbers['pearson'])}, Spearman {_shown(numbers['spearman'])}"
    difference = f"mean |difference| {numbers['mean_abs_difference']} points"
    fig.suptitle(f"{numbers['directions']} directions: {correlations}, {difference}, {agreement}", fontsize=10)
    return save_figure(fig, path)


def targets(arch: str | None, shape, against: list[dict]) -> list[tuple[str, list[dict], int]]:
    """(name, trained cells, stride) of every trained map to score against: the given sweeps (load_sweep) and the
    published map of lenet or logreg on 1 x 32 x 32."""
    found = []
    for sweep in against:
        if sweep["basis"] != "fourier":
            raise ConfigError(f"--against {sweep['dir']}: a {sweep['basis']} sweep; a predicted map is scored against a Fourier sweep")
        if list(sweep["shape"]) != list(shape):
            kind = f"a sweep of images of shape {sweep['shape']}"
            raise ConfigError(f"--against {sweep['dir']}: {kind}, but the NADs are of shape {list(shape)}")
        found.append((sweep["name"], sweep["cells"], sweep["stride"]))
    if arch and has_published_map(arch, shape):
        found.append((f"published_{arch}", published_records(arch), 2))
    return found


def write_prediction(out_dir: Path, predicted: list[dict], shape, stride: int, title: str, against=(), arch: str | None = None) -> dict:
    """Writes heatmap.png/pdf and cells.csv of the predicted map into ``out_dir`` and, per trained map, the side-by-
    side figure and per-direction table ``against_<name>``; prints and returns the scores per trained map. Cells
    with a ``trained_acc`` (spot checks) are ringed on the heat map and left out of the scores."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _, height, width = shape
    spot_checks = [r["direction"] for r in predicted if r.get("trained_acc") is not None]
    plot_fourier_heatmap(fourier_grid(predicted, height, width), out_dir / "heatmap", title, stride, marked=spot_checks)
    write_csv_atomic(out_dir / "cells.csv", PREDICTED_COLUMNS, cell_rows(predicted, "fourier", shape)[1])
    scored, exclude = {}, [cell_key(direction, height, width) for direction in spot_checks]
    for name, trained, trained_stride in targets(arch, shape, list(against)):
        pairs = matched(predicted, trained, shape, exclude)
        scored[name] = scores(pairs)
        print(scores_line(f"predicted vs {name}", scored[name]))
        write_csv_atomic(out_dir / f"against_{name}.csv", SCORE_COLUMNS, pairs)
        if pairs:
            side_by_side(predicted, trained, shape, max(stride, trained_stride), name, scored[name], out_dir / f"against_{name}")
    write_json_atomic(out_dir / "scores.json", scored)
    return scored


def calibrated(predicted: list[dict], trained: dict, shape, fitted_on: str = "") -> tuple[list[dict], OwnCalibration]:
    """The predicted map with the arch's own calibration, fitted to ``trained`` ({cell key: test accuracy as a
    fraction}, cells of the map): each cell's accuracy read off the fitted curve, with its ``uncertainty`` (standard
    deviation, fraction); the trained cells keep their measured accuracy (``trained_acc``, uncertainty 0)."""
    _, height, width = shape
    keys = [cell_key(r["direction"], height, width) for r in predicted]
    scores, where = np.array([r["score"] for r in predicted]), {key: i for i, key in enumerate(keys)}
    own = fit_own([scores[where[key]] for key in trained], list(trained.values()), fitted_on)
    accuracies, doubts = own(scores), own.uncertainty(scores)
    records = []
    for record, key, accuracy, doubt in zip(predicted, keys, accuracies, doubts):
        if key in trained:
            measured = round(float(trained[key]), 6)
            records.append(record | {"test_acc": measured, "uncertainty": 0.0, "trained_acc": measured})
        else:
            records.append(record | {"test_acc": round(float(accuracy), 6), "uncertainty": round(float(doubt), 6)})
    return records, own


def write_spot_checks(out_dir, predicted: list[dict], shape, k: int, prior, known: dict | None = None) -> list[dict]:
    """OUT/spot_checks.csv: the ``k`` directions of the predicted map to train, in the order to train them (f_rows,
    f_cols, score), besides the cells ``known`` already (cell keys: trained accuracy)."""
    _, height, width = shape
    keys = [cell_key(r["direction"], height, width) for r in predicted]
    known = {keys.index(key): accuracy for key, accuracy in (known or {}).items()}
    picks = choose_spot_checks([r["score"] for r in predicted], k, prior, known)
    rows = [predicted[i] | {"f_rows": signed(keys[i][1], height), "f_cols": signed(keys[i][0], width)} for i in picks]
    write_csv_atomic(Path(out_dir) / "spot_checks.csv", SPOT_CHECK_COLUMNS, rows)
    print(f"{len(rows)} directions to train: {Path(out_dir) / 'spot_checks.csv'}")
    return rows


def read_nads(
    path, shape=None, networks: int | None = None, fallback_shape=None, eigenvalues=None, singular_values=None, absolute: bool = False
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(NADs (k, C, H, W), eigenvalues, the result.json beside them) of NADs made anywhere, for ``--predict``:
    ``path`` a nads.npy or its folder, rows of ``shape`` (else result.json's, else ``fallback_shape``), with
    eigenvalues.npy or singular_values.npy (/ (``networks`` - 1), needed only by an ``absolute`` predictor)."""
    path = Path(path)
    directory, file = (path, path / "nads.npy") if path.is_dir() else (path.parent, path)
    record = (read_record_or_warn(directory / "result.json") or {}) if (directory / "result.json").is_file() else {}
    shape = shape or record.get("shape")
    nads = load_nads(file, tuple(shape) if shape else None, "--predict", rows=True, flat_shape=fallback_shape).astype(np.float64)
    for option, given in (("--eigenvalues", eigenvalues), ("--singular-values", singular_values)):
        if given is not None and not Path(given).is_file():
            raise ConfigError(f"{option} {given}: no such file")
    eigenvalues, singular = Path(eigenvalues or directory / "eigenvalues.npy"), Path(singular_values or directory / "singular_values.npy")
    try:
        if eigenvalues.is_file():
            spectrum = spectrum_of(eigenvalues=np.load(eigenvalues, allow_pickle=False), k=len(nads))
        elif singular.is_file():
            networks = networks or record.get("num_networks") or (None if absolute else 2)
            if not networks or networks < 2:
                why = "gives the spectrum only up to a factor, and this predictor reads it in its own units"
                fix = "the number of networks they were estimated from (eigenvalue = singular value^2 / (N - 1)), or eigenvalues"
                raise ConfigError(f"{singular.name} {why}: give --networks N, {fix}")
            spectrum = spectrum_of(singular_values=np.load(singular, allow_pickle=False), k=len(nads)) / (networks - 1)
        else:
            raise ConfigError("no eigenvalues.npy (or singular_values.npy) beside it: a predicted map needs the NADs' spectrum")
    except (ValueError, OSError, EOFError) as error:
        raise ConfigError(f"--predict {file}: its spectrum is not a readable .npy file ({error})") from error
    except ConfigError as error:
        raise ConfigError(f"--predict {file}: {error}") from None
    return nads, spectrum, record


def load_prediction(run_dir) -> dict:
    """A predicted map's run directory (experiment=fourier_predicted) as a Fourier sweep is loaded
    (nadexp.reports.sweep_report.load_sweep): its name, arch, shape, stride and cells (records with test_acc)."""
    import csv

    run_dir = Path(run_dir)
    result = read_record(run_dir / "result.json")
    with (run_dir / "cells.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    cells = [trained_cell([int(row["kx"]), int(row["ky"])], float(row["test_acc"])) for row in rows]
    spot_checks = [cell for cell, row in zip(cells, rows) if row.get("trained_acc")]  # trained cells it was calibrated on
    # named apart from a trained sweep of the same name
    found = {"name": f"{run_dir.name}-predicted", "dir": run_dir, "arch": result.get("arch"), "basis": "fourier", "shape": result["shape"]}
    return {**found, "stride": result.get("stride", 1), "cells": cells, "spot_checks": spot_checks, "predicted": True}
