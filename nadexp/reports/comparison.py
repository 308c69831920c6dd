"""A Fourier sweep beside the published heat map of its arch: the two maps and their difference on the same grid and colour scale, a
per-direction table and summary numbers (docs/reproduction.md). Direction [kx, ky] is the published cell (f_rows, f_cols) = (ky, kx) in -16
.. 15, compared with the mean of the published cell and its conjugate (two trainings of one direction); odd frequencies were not
published."""

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from nadexp.data.directions import conjugate, signed
from nadexp.reports.heatmap import fourier_grid, save_figure
from nadexp.reports.metrics import LOW_FREQUENCY, is_low
from nadexp.reports.published import PUBLISHED_SHAPE, has_published_map, published_map
from nadexp.results.atomic import write_csv_atomic

# Windows of the summary: every matched direction; the low frequencies, where LeNet learns; the high-frequency
# corner (both frequencies at least 10 in size), where the published LeNet map is at chance.
WINDOWS = {
    "all": lambda f_rows, f_cols: True,
    f"low: abs(f_rows), abs(f_cols) <= {LOW_FREQUENCY}": is_low,
    "high: abs(f_rows), abs(f_cols) >= 10": lambda f_rows, f_cols: min(abs(f_rows), abs(f_cols)) >= 10,
}
# The signed frequencies of the published grid's rows and columns: the even ones, -16 .. 14.
PUBLISHED_FREQUENCIES = np.arange(-PUBLISHED_SHAPE[1] // 2, PUBLISHED_SHAPE[1] // 2, 2)
TABLE_COLUMNS = ("kx", "ky", "f_rows", "f_cols", "reproduced", "published", "published_cell", "published_conjugate", "difference")


def comparable(sweep: dict) -> bool:
    """Whether a sweep (nadexp.reports.sweep_report.load_sweep) has a published map to be compared with."""
    return sweep["basis"] == "fourier" and has_published_map(sweep["arch"], sweep["shape"])


def match_directions(records: list[dict], published: dict[tuple[int, int], float]) -> list[dict]:
    """One row per trained direction that ``published`` (nadexp.reports.published.published_map) covers; accuracies in percent."""
    _, height, width = PUBLISHED_SHAPE
    rows = []
    for record in records:
        if record.get("status") != "ok" or record.get("basis") != "fourier":
            continue
        kx, ky = record["direction"]
        cell = signed(ky, height), signed(kx, width)
        conjugate_kx, conjugate_ky = conjugate(kx, ky, height, width)
        mirror = signed(conjugate_ky, height), signed(conjugate_kx, width)
        if cell not in published:  # an odd frequency: not on the published grid
            continue
        reproduced, mean_published = 100 * record["test_acc"], 50 * (published[cell] + published[mirror])
        accuracies = (reproduced, mean_published, 100 * published[cell], 100 * published[mirror], reproduced - mean_published)
        rows.append(dict(zip(TABLE_COLUMNS, (kx, ky, *cell, *(round(a, 2) for a in accuracies)))))
    return sorted(rows, key=lambda row: (max(abs(row["f_rows"]), abs(row["f_cols"])), row["f_rows"], row["f_cols"]))


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Per window: directions, means, mean and largest absolute difference (points), correlation, counts."""
    summary = {}
    for name, inside in WINDOWS.items():
        chosen = [row for row in rows if inside(row["f_rows"], row["f_cols"])]
        ours = np.array([row["reproduced"] for row in chosen])
        theirs = np.array([row["published"] for row in chosen])
        both_vary, gap = len(chosen) > 2 and ours.std() > 0 and theirs.std() > 0, np.abs(ours - theirs)
        means = [ours.mean(), theirs.mean(), gap.mean(), gap.max()] if chosen else [None] * 4
        numbers = dict(zip(("mean_reproduced", "mean_published", "mean_abs_difference", "max_abs_difference"), map(_round, means)))
        numbers["correlation"] = _round(np.corrcoef(ours, theirs)[0, 1], 3) if both_vary else None
        counts = {"reproduced_above_90": int((ours > 90).sum()), "published_above_90": int((theirs > 90).sum())}
        counts["within_5_points"] = int((gap <= 5).sum())
        farthest = _round(np.abs(ours - 50).max()) if chosen else None
        summary[name] = {"directions": len(chosen), **numbers, **counts, "max_distance_from_chance": farthest}
    return summary


def _round(value, digits: int = 2):
    return None if value is None or math.isnan(value) else round(float(value), digits)


def summary_markdown(summary: dict[str, dict], title: str) -> str:
    keys = list(next(iter(summary.values())))
    lines = [f"{title}", "", "| window | " + " | ".join(k.replace("_", " ") for k in keys) + " |", "| --- |" + " ---: |" * len(keys)]
    for name, numbers in summary.items():
        lines.append(f"| {name} | " + " | ".join("-" if numbers[k] is None else str(numbers[k]) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def comparison_grids(records: list[dict], published_cells: dict[tuple[int, int], float]):
    """(reproduced, published) maps on the published 16 x 16 grid, in [f_rows, f_cols] order from -16; the
    reproduced one is the sweep's heat map (conjugates mirrored) at the even frequencies."""
    _, height, width = PUBLISHED_SHAPE
    reproduced = fourier_grid(records, height, width)[np.ix_(PUBLISHED_FREQUENCIES % height, PUBLISHED_FREQUENCIES % width)]
    index, published = {f: i for i, f in enumerate(PUBLISHED_FREQUENCIES)}, np.full_like(reproduced, np.nan)
    for (f_rows, f_cols), accuracy in published_cells.items():
        published[index[f_rows], index[f_cols]] = accuracy
    return reproduced, published


def comparison_figure(records: list[dict], published_cells: dict, arch: str, name: str, overall: dict, path: Path) -> list[Path]:
    reproduced, published = comparison_grids(records, published_cells)
    extent = (-17, 15, 15, -17)  # cells of width 2 centred on the even frequencies -16 .. 14, DC in the middle
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), layout="constrained")
    panels = ((reproduced, f"{name} (reproduced)"), (published, f"published {arch}"))
    for ax, (grid, title) in zip(axes, panels):
        image = ax.imshow(grid, cmap="viridis", vmin=0.5, vmax=1.0, extent=extent)
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=axes[:2], label="test accuracy", shrink=0.85)
    difference = axes[2].imshow(100 * (reproduced - published), cmap="RdBu_r", vmin=-30, vmax=30, extent=extent)
    fig.colorbar(difference, ax=axes[2], label="reproduced - published (points)", shrink=0.85)
    axes[2].set_title("reproduced - published", fontsize=9)
    numbers = f"mean absolute difference {overall['mean_abs_difference']} points, correlation {overall['correlation']}"
    fig.suptitle(f"{overall['directions']} directions compared: {numbers}", fontsize=10)
    for ax in axes:
        ax.set(xlabel="f_cols = kx (horizontal frequency)", ylabel="f_rows = ky (vertical frequency)")
    return save_figure(fig, path)


def write_comparison(sweep: dict, path: Path) -> tuple[list[Path], dict, str]:
    """Writes ``path``.png/.pdf (the maps), .csv (per direction) and .md (summary and table); returns the files,
    the summary per window and the summary as Markdown."""
    path = Path(path)
    published = published_map(sweep["arch"])
    rows = match_directions(sweep["cells"], published)
    summary, dataset = summarise(rows), sweep["config"].dataset
    protocol = f"eps {dataset.get('eps')}, {dataset.get('fourier_phase', 'sine')} phase"
    title = f"{sweep['name']} ({protocol}) against the published {sweep['arch']} heat map (accuracies in %, differences in points)"
    text = summary_markdown(summary, title)
    files = comparison_figure(sweep["cells"], published, sweep["arch"], sweep["name"], summary["all"], path) if rows else []
    write_csv_atomic(path.with_suffix(".csv"), TABLE_COLUMNS, rows)
    table = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + " ---: |" * len(TABLE_COLUMNS)]
    table += ["| " + " | ".join(str(row[c]) for c in TABLE_COLUMNS) + " |" for row in rows]
    path.with_suffix(".md").write_text(text + "\n" + "\n".join(table) + "\n")
    return files + [path.with_suffix(".csv"), path.with_suffix(".md")], summary, text
