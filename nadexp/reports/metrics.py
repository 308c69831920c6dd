"""The numbers that compare sweeps across archs: one row per cell with numeric columns (for plots of accuracy
against frequency or NAD index over many runs) and a few summary metrics per basis (for runs tables and bar
charts). Logged to W&B and TensorBoard, stored in result.json, shown on the dashboard page."""

import math

import numpy as np
from scipy.integrate import trapezoid

from nadexp.data.directions import signed

LEARNED = {"learned_90": 0.9, "learned_75": 0.75}  # fraction of directions with test accuracy at least this
LOW_FREQUENCY = 6  # the low window: abs(f_rows), abs(f_cols) <= 6, where LeNet learns (docs/reproduction.md)
NAD_DROP = 0.75  # a NAD-index curve "falls" at the first index with test accuracy below this

ROW_COLUMNS = {
    "fourier": ("kx", "ky", "f_rows", "f_cols", "abs_freq", "test_acc", "train_acc", "status"),
    "nad": ("nad_index", "eigenvalue", "test_acc", "train_acc", "status"),
    "pixel": ("row", "col", "test_acc", "train_acc", "status"),
}


def is_low(f_rows: int, f_cols: int) -> bool:
    return max(abs(f_rows), abs(f_cols)) <= LOW_FREQUENCY


def cell_row(record: dict, shape, eigenvalues=None) -> dict:
    """One cell record as numbers: its direction's coordinates (signed frequencies and their size for
    Fourier cells, the index and its eigenvalue for NAD cells), then its accuracies."""
    basis, direction = record["basis"], record["direction"]
    row = {}
    if basis == "fourier":
        (kx, ky), (_, height, width) = direction, shape
        f_rows, f_cols = signed(ky, height), signed(kx, width)
        row = {"kx": kx, "ky": ky, "f_rows": f_rows, "f_cols": f_cols, "abs_freq": round(math.hypot(f_rows, f_cols), 4)}
    elif basis == "nad":
        index = direction[0]
        has_value = eigenvalues is not None and index < len(eigenvalues)
        row = {"nad_index": index, "eigenvalue": float(eigenvalues[index]) if has_value else None}
    elif basis == "pixel":
        row = {"row": direction[0], "col": direction[1]}
    # a predicted map's score, and with spot checks each cell's uncertainty and the trained accuracy of those trained
    extra = {key: record[key] for key in ("score", "uncertainty", "trained_acc") if key in record}
    return {**row, **extra, "test_acc": record.get("test_acc"), "train_acc": record.get("train_acc"), "status": record.get("status")}


def cell_rows(records: list[dict], basis: str, shape, eigenvalues=None) -> tuple[tuple[str, ...], list[dict]]:
    """(columns, rows) of a sweep's cells, ordered by direction."""
    rows = [cell_row(record, shape, eigenvalues) for record in records if record.get("basis") == basis]
    keys = {"fourier": ("abs_freq", "f_rows", "f_cols"), "nad": ("nad_index",), "pixel": ("row", "col")}[basis]
    return ROW_COLUMNS[basis], sorted(rows, key=lambda row: [row[key] for key in keys])


def summary_metrics(records: list[dict], basis: str, shape, eigenvalues=None) -> dict:
    """Summary numbers of a sweep (cells trained so far): mean test accuracy and the fractions learned;
    Fourier: the mean over the low window; NAD index: where the curve first falls below NAD_DROP and the area
    under it (the mean accuracy over the swept index range, trapezoidal). Keys absent when nothing is known."""
    _, rows = cell_rows(records, basis, shape, eigenvalues)
    ok = [row for row in rows if row["status"] == "ok" and row["test_acc"] is not None]
    summary = {"cells": len(rows), "cells_ok": len(ok)}
    if not ok:
        return summary
    accs = np.array([row["test_acc"] for row in ok])
    summary["mean_test_acc"] = round(float(accs.mean()), 6)
    summary.update({name: round(float((accs >= level).mean()), 6) for name, level in LEARNED.items()})
    if basis == "fourier":
        low = [row["test_acc"] for row in ok if is_low(row["f_rows"], row["f_cols"])]
        if low:
            summary["low_mean_test_acc"] = round(float(np.mean(low)), 6)
    if basis == "nad":
        indices = np.array([row["nad_index"] for row in ok])
        fallen = indices[accs < NAD_DROP]
        summary["first_index_below_75"] = int(fallen[0]) if len(fallen) else int(indices[-1]) + 1  # never: past the end
        span = indices[-1] - indices[0]
        area = trapezoid(accs, indices) / span if span else accs[0]
        summary["auc"] = round(float(area), 6)
    return summary
