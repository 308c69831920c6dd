"""The figures and tables of direction sweeps (and of predicted Fourier maps, drawn as sweeps): heat maps, NAD-index
curves, pixel maps, cells.csv and summary.md; and `make_report`, which also reports CIFAR-10 runs."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from omegaconf import OmegaConf

from nadexp.data.nad_file import eigenvalues_of
from nadexp.errors import ConfigError
from nadexp.reports.cifar_report import find_cifar_runs, make_cifar_report
from nadexp.reports.comparison import comparable, write_comparison
from nadexp.reports.heatmap import draw, fourier_grid, plot_fourier_heatmap, save_figure
from nadexp.reports.prediction_report import load_prediction
from nadexp.reports.published import COLUMNS as PUBLISHED_COLUMNS
from nadexp.reports.published import PUBLISHED_SHAPE
from nadexp.results.atomic import write_csv_atomic, write_text_atomic
from nadexp.results.schema import CELL_COLUMNS, CELL_KEYS, UnreadableRecord, is_failed, read_record, read_record_or_warn, records_below

CSV_COLUMNS = ("sweep", *CELL_COLUMNS)


def load_sweep(sweep_dir: Path, cells: list[dict] | None = None) -> dict:
    """A sweep directory's config and cell records (``cells``: records already read, to skip reading them)."""
    sweep_dir = Path(sweep_dir)
    if not is_sweep_dir(sweep_dir):
        raise ConfigError(f"{sweep_dir} is not a sweep directory (it needs config.yaml and cells/)")
    config = OmegaConf.load(sweep_dir / "config.yaml")
    if cells is None:
        found = (read_record_or_warn(p, CELL_KEYS) for p in sorted((sweep_dir / "cells").glob("*.json")))
        cells = [cell for cell in found if cell is not None]
    basis = config.sweep.basis
    found = {"name": sweep_dir.name, "dir": sweep_dir, "config": config, "cells": cells, "arch": config.get("arch_name"), "basis": basis}
    eigenvalues = eigenvalues_of(config.dataset.nads) if basis == "nad" else None
    return {**found, "shape": list(config.dataset.shape), "stride": config.sweep.get("stride", 1), "eigenvalues": eigenvalues}


def fourier_panel(sweeps: list[dict], path: Path) -> list[Path]:
    cols = min(len(sweeps), 4)
    rows = int(np.ceil(len(sweeps) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False, layout="constrained")
    image = None
    for ax, sweep in zip(axes.flat, sweeps):
        _, height, width = sweep["shape"]
        image = draw(ax, fourier_grid(sweep["cells"], height, width), sweep["stride"], sweep["name"])
    for ax in list(axes.flat)[len(sweeps) :]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, label="test accuracy", shrink=0.8)
    return save_figure(fig, path)


def nad_curve(sweep: dict, path: Path) -> list[Path]:
    ok = sorted((c["direction"][0], c["test_acc"]) for c in sweep["cells"] if c["status"] == "ok")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot([i for i, _ in ok], [a for _, a in ok], marker="o", markersize=3)
    axes[0].set(ylim=(0.45, 1.02), xlabel="NAD index i", ylabel="test accuracy on D(u_i)")
    axes[0].set_title(f"{sweep['name']}: accuracy along the NADs", fontsize=9)
    if sweep["eigenvalues"] is not None:
        axes[1].semilogy(np.maximum(sweep["eigenvalues"], np.finfo(float).tiny))
    axes[1].set(xlabel="NAD index", ylabel="eigenvalue")
    axes[1].set_title("NAD spectrum", fontsize=9)
    return save_figure(fig, path)


def pixel_map(sweep: dict, path: Path) -> list[Path]:
    _, height, width = sweep["shape"]
    grid = np.full((height, width), np.nan)
    for cell in sweep["cells"]:
        if cell["status"] == "ok":
            grid[tuple(cell["direction"])] = cell["test_acc"]
    fig, ax = plt.subplots(figsize=(5, 4.2))
    image = ax.imshow(grid, cmap="viridis", vmin=0.5, vmax=1.0)
    ax.set_title(f"{sweep['name']}: pixel directions", fontsize=9)
    ax.set(xlabel="column", ylabel="row")
    fig.colorbar(image, ax=ax, label="test accuracy")
    return save_figure(fig, path)


FIGURE_NAMES = {"fourier": "heatmap", "nad": "nad_curve", "pixel": "pixel_map"}


def basis_figure(sweep: dict, path: Path) -> list[Path]:
    """The figure of one sweep for its basis: Fourier heat map, NAD-index curve or pixel map."""
    if sweep["basis"] == "fourier":
        _, height, width = sweep["shape"]
        grid = fourier_grid(sweep["cells"], height, width)
        return plot_fourier_heatmap(grid, path, f"{sweep['name']}: Fourier directions", sweep["stride"])
    return {"nad": nad_curve, "pixel": pixel_map}[sweep["basis"]](sweep, path)


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / "config.yaml").is_file() and (Path(path) / "cells").is_dir()


def is_prediction_dir(path: Path) -> bool:
    """A finished experiment=fourier_predicted run: drawn and tabled as a Fourier sweep is."""
    try:
        return (Path(path) / "cells.csv").is_file() and read_record(Path(path) / "result.json").get("task") == "fourier_prediction"
    except UnreadableRecord:
        return False


def make_report(dirs, out_dir: Path, published: bool = False) -> list[Path]:
    """Writes every figure (PNG and PDF) and table into ``out_dir``: for each direction sweep directory in ``dirs``, its maps, cells.csv and
    summary.md; for CIFAR-10 runs found in the other directories, the flip table and the poisoning curve. ``published``: also compare each
    Fourier sweep of an arch with a published map (nadexp.reports.published) with that map, and print the summary."""
    out_dir = Path(out_dir)
    if not dirs:
        raise ConfigError("no directories given")
    sweep_dirs, cifar_runs, failed = [], [], []
    for directory in dirs:
        failed_here = [{**result, "dir": run_dir} for run_dir, result in records_below(directory) if is_failed(result)]
        failed += failed_here
        if is_sweep_dir(directory) or is_prediction_dir(directory):
            sweep_dirs.append(directory)
        elif runs := find_cifar_runs(directory):
            cifar_runs += runs
        elif not failed_here:
            kinds = "a predicted map (experiment=fourier_predicted) nor a directory of CIFAR-10 runs (result.json)"
            raise ConfigError(f"{directory} is neither a direction sweep directory (it needs config.yaml and cells/), {kinds}")
    files = make_cifar_report(cifar_runs, out_dir) if cifar_runs else []
    files += make_sweep_report(sweep_dirs, out_dir, published) if sweep_dirs else []
    return files + (failed_runs_table(failed, out_dir) if failed else [])


def failed_runs_table(failed: list[dict], out_dir: Path) -> list[Path]:
    """failed_runs.md: each run that failed (its directory, task, arch, seed and reason), beside the figures of
    those that finished; the same command as the run's starts it again."""
    lines = ["| run | task | arch | seed | reason |", "| --- | --- | --- | ---: | --- |"]
    lines += [f"| {r['dir']} | {r.get('task')} | {r.get('arch')} | {r.get('seed')} | {r.get('reason')} |" for r in failed]
    path = out_dir / "failed_runs.md"
    write_text_atomic(path, f"{len(failed)} failed run(s); the command of each starts it again.\n\n" + "\n".join(lines) + "\n")
    return [path]


def compare_with_published(sweeps: list[dict], out_dir: Path) -> list[Path]:
    chosen = [sweep for sweep in sweeps if comparable(sweep) and not sweep.get("predicted")]  # a prediction scores itself
    if not chosen:
        archs = f"{', '.join(PUBLISHED_COLUMNS)} on images of shape {list(PUBLISHED_SHAPE)}"
        raise ConfigError(f"--published: none of the sweeps is a Fourier sweep of an arch with a published map ({archs})")
    files = []
    for sweep in chosen:
        compared, _, _ = write_comparison(sweep, out_dir / f"published_comparison_{sweep['name']}")
        print(next(path for path in compared if path.suffix == ".md").read_text())  # the summary and the per-cell table
        files += compared
    return files


def make_sweep_report(sweep_dirs, out_dir: Path, published: bool = False) -> list[Path]:
    sweeps = [load_prediction(d) if is_prediction_dir(d) else load_sweep(d) for d in sweep_dirs]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = compare_with_published(sweeps, out_dir) if published else []
    for sweep in sweeps:
        files += basis_figure(sweep, out_dir / f"{FIGURE_NAMES[sweep['basis']]}_{sweep['name']}")
    fourier = [s for s in sweeps if s["basis"] == "fourier"]
    if len(fourier) > 1:
        files += fourier_panel(fourier, out_dir / "heatmap_panel")
    write_csv_atomic(out_dir / "cells.csv", CSV_COLUMNS, [{**cell, "sweep": s["name"]} for s in sweeps for cell in s["cells"]])
    header = "| sweep | arch | basis | cells | failed | mean test acc | min | max |"
    lines = [header, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for sweep in sweeps:
        accs = [c["test_acc"] for c in sweep["cells"] if c["status"] == "ok"]
        stats = [f"{f(accs):.4f}" if accs else "" for f in (np.mean, np.min, np.max)]
        counts = [sweep["name"], sweep["arch"], sweep["basis"], len(sweep["cells"]), len(sweep["cells"]) - len(accs)]
        lines.append("| " + " | ".join(map(str, [*counts, *stats])) + " |")
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")
    return files + [out_dir / "cells.csv", out_dir / "summary.md"]
