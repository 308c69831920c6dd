"""Predicted maps on archs they were not fitted on: each arch's map predicted from its NADs with LeNet's fixed
calibration (K = 0) and with its own, fitted to K spot checks chosen as `experiment=fourier_predicted` chooses them
(their accuracies read off the arch's trained map), scored on the cells that were not trained; with the time of
the NADs and the spot checks against the trained map's. With --ntk N, the linearised network's ranking
(nadexp.estimators.linearised) beside the NADs', Spearman against each trained map on N of its directions.

    python benchmarks/prediction_transfer.py [--k 6] [--ntk N] NAME=NADS_DIR:TRAINED[:TIMING] ...

TRAINED: a Fourier sweep directory, or `published` (the published LeNet or logistic-regression map, 1 x 32 x 32,
for NAME lenet or logreg). TIMING: a sweep directory of the same arch and shape whose cells' mean wall time stands
for one cell's (for a published map, which was not trained here). The table goes to stdout; --json writes it.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table
from scipy.stats import spearmanr

from nadexp.config import compose_config, register_configs
from nadexp.data.nad_file import eigenvalues_of, load_nads
from nadexp.estimators.linearised import linearised_accuracy
from nadexp.reports.calibration import spot_check
from nadexp.reports.prediction import CALIBRATIONS, DEFAULT_PREDICTOR, predict_fourier_map
from nadexp.reports.prediction_report import calibrated, cell_key, matched, published_records, scores
from nadexp.reports.sweep_report import load_sweep
from nadexp.results.machine import cpu_description
from nadexp.sweeps.runner import cell_config


def trained_map(spec: str, name: str) -> tuple[list[dict], list[int], int]:
    """(cell records, shape, stride) of a sweep directory or of the published map of ``name``."""
    if spec == "published":
        return published_records(name), [1, 32, 32], 2
    sweep = load_sweep(Path(spec))
    return [c for c in sweep["cells"] if c.get("status") == "ok"], sweep["shape"], sweep["stride"]


def sweep_config(spec: str, name: str):
    """The config the trained map was swept with (a published map: experiment=fourier_<name>'s)."""
    if spec == "published":
        return compose_config([f"experiment=fourier_{name}", "logger=none"])
    return OmegaConf.load(Path(spec) / "config.yaml")


def cell_seconds(records: list[dict], timing: str | None) -> float | None:
    """Mean wall time of one trained cell."""
    if timing:
        records = load_sweep(Path(timing))["cells"]
    times = [r["wall_time_s"] for r in records if r.get("wall_time_s")]
    return float(np.mean(times)) if times else None


def run_case(spec: str, k: int, ntk: int) -> dict:
    name, _, paths = spec.partition("=")
    nads_dir, trained_spec, *timing = paths.split(":")
    trained, shape, stride = trained_map(trained_spec, name)
    _, height, width = shape
    nads, eigenvalues = load_nads(nads_dir, tuple(shape)), eigenvalues_of(nads_dir)
    nads_record = json.loads((Path(nads_dir) / "result.json").read_text()) if (Path(nads_dir) / "result.json").is_file() else {}
    start = time.perf_counter()
    predicted = predict_fourier_map(nads, eigenvalues, tuple(shape), stride)
    predict_seconds = time.perf_counter() - start
    accuracy = {cell_key(r["direction"], height, width): r["test_acc"] for r in trained}
    keys = [cell_key(r["direction"], height, width) for r in predicted]
    scores_ = [r["score"] for r in predicted]
    on_map = [i for i, key in enumerate(keys) if key in accuracy]
    # spot checks are chosen among the cells the trained map holds (all of them for a whole map)
    lookup = lambda picks: {i: accuracy[keys[on_map[i]]] for i in picks}  # noqa: E731
    chosen = spot_check([scores_[i] for i in on_map], k, CALIBRATIONS[DEFAULT_PREDICTOR], lookup)
    checks = {keys[on_map[i]]: value for i, value in chosen.items()}
    ours, _ = calibrated(predicted, checks, shape, "spot checks")
    untrained = list(checks)
    zero = scores(matched(predicted, trained, shape, untrained))
    fitted = scores(matched(ours, trained, shape, untrained))
    per_cell = cell_seconds(trained, timing[0] if timing else None)
    nads_seconds = nads_record.get("gradient_time_s") or 0.0
    row = {
        "arch": name,
        "shape": "x".join(map(str, shape)),
        "cells": len(on_map),
        "k": k,
        "k0": zero,
        "calibrated": fitted,
        "nads_networks": nads_record.get("num_networks"),
        "nads_s": round(nads_seconds, 1),
        "map_s": round(per_cell * len(on_map), 1) if per_cell else None,
        "spot_checks_s": round(per_cell * k, 1) if per_cell else None,
        "predicted_s": round(nads_seconds + predict_seconds + (per_cell or 0) * k, 1),
    }
    if ntk:  # on ``ntk`` cells spread over the NADs' score order (all when ntk >= the map's cells)
        by_score = sorted(on_map, key=lambda i: scores_[i])
        subset = [by_score[int(round(j))] for j in np.linspace(0, len(by_score) - 1, min(ntk, len(by_score)))]
        cfg = sweep_config(trained_spec, name)
        start = time.perf_counter()
        linearised = [linearised_accuracy(cell_config(cfg, predicted[i]["direction"])) for i in subset]
        trained_acc = [accuracy[keys[i]] for i in subset]
        row["ntk_cells"] = len(subset)
        row["ntk_s"] = round(time.perf_counter() - start, 1)
        constant = np.ptp(trained_acc) == 0  # a map learnt everywhere (logistic regression): no ranking to compare
        row["spearman_ntk"] = None if constant else round(float(spearmanr(linearised, trained_acc)[0]), 4)
        row["spearman_nads"] = None if constant else round(float(spearmanr([scores_[i] for i in subset], trained_acc)[0]), 4)
        row["ntk_per_cell_s"] = round(row["ntk_s"] / len(subset), 2)
    return row


def show(value):
    """A number, or "-" where it is undefined (a correlation with a constant map)."""
    return "-" if value is None or value != value else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="+", metavar="NAME=NADS_DIR:TRAINED[:TIMING]")
    parser.add_argument("--k", type=int, default=6, help="spot checks per arch (default %(default)s)")
    parser.add_argument(
        "--ntk", type=int, default=0, metavar="N", help="also rank N directions per map (spread over the score) by the linearised network"
    )
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    register_configs()
    rows = [run_case(spec, args.k, args.ntk) for spec in args.cases]
    table = Table(title=f"Predicted maps, K = 0 and K = {args.k} spot checks, on the untrained cells ({cpu_description()})")
    for column in (
        "arch",
        "cells",
        "K=0 Pearson / Spearman / |diff|",
        f"K={args.k} Pearson / Spearman / |diff|",
        "time: predicted / trained map (ratio)",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        zero, fitted = row["k0"], row["calibrated"]
        table.add_row(
            f"{row['arch']} ({row['shape']})",
            str(row["cells"]),
            f"{show(zero['pearson'])} / {show(zero['spearman'])} / {zero['mean_abs_difference']}",
            f"{show(fitted['pearson'])} / {show(fitted['spearman'])} / {fitted['mean_abs_difference']}",
            f"{row['predicted_s']} s / {show(row['map_s'])} s" + (f" ({row['predicted_s'] / row['map_s']:.2f})" if row["map_s"] else ""),
        )
    Console(width=160).print(table)
    if args.ntk:
        ntk = Table(title="Zero-training ranking: Spearman against the trained map")
        for column in ("arch", "directions", "NADs (log_relative_to_best)", "linearised network (NTK)", "NTK time per direction"):
            ntk.add_column(column, justify="right")
        for row in rows:
            ntk.add_row(
                row["arch"],
                str(row["ntk_cells"]),
                str(show(row["spearman_nads"])),
                str(show(row["spearman_ntk"])),
                f"{row['ntk_per_cell_s']} s",
            )
        Console(width=160).print(ntk)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
