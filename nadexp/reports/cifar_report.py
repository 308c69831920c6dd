"""The figures and tables of runs on image files (CIFAR-10, CIFAR-100, Fashion-MNIST): plain vs NAD-flipped vs
Fourier-flipped accuracy per arch, and clean test accuracy against the poisoned NAD index beside the NAD spectrum."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from omegaconf import OmegaConf

from nadexp.data.nad_file import eigenvalues_of
from nadexp.data.settings import SHAPES, poison_carriers
from nadexp.reports.heatmap import save_figure
from nadexp.results.atomic import write_csv_atomic
from nadexp.results.schema import records_below

FLIP_VARIANTS = ("plain", "nad_flip", "fourier_flip")
FLIP_COLUMNS = ("arch", "dataset", "seed", *FLIP_VARIANTS, "nad_flip - plain", "fourier_flip - plain")
POISON_COLUMNS = ("arch", "seed", "nad_index", "test_acc", "train_acc", "epochs")
TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fashion_mnist": "Fashion-MNIST"}


def data_set_names(runs: list[dict]) -> str:
    """The data sets of ``runs``, as their papers write them."""
    return " + ".join(TITLES[name] for name in sorted({r["dataset"] for r in runs}))


def find_cifar_runs(directory: Path) -> list[dict]:
    """result.json of every finished CIFAR-10 (or CIFAR-100, Fashion-MNIST) run in ``directory`` or its sub-directories (two levels)."""
    found = records_below(directory)
    return [{**result, "dir": run_dir} for run_dir, result in found if result.get("dataset") in TITLES and result.get("variant")]


def flip_table(runs: list[dict], out_dir: Path) -> list[Path]:
    """flip_table.csv / .md / .png: test accuracy per arch (and seed) on each representation."""
    cells = {}
    for run in runs:
        if run["variant"] in FLIP_VARIANTS:
            cells.setdefault((run["arch"], run["dataset"], run["seed"]), {})[run["variant"]] = run["test_acc"]
    rows = []
    for (arch, dataset, seed), accs in sorted(cells.items()):
        row = {"arch": arch, "dataset": dataset, "seed": seed, **accs}
        for variant in FLIP_VARIANTS[1:]:
            if variant in accs and "plain" in accs:
                row[f"{variant} - plain"] = round(accs[variant] - accs["plain"], 4)
        rows.append(row)
    write_csv_atomic(out_dir / "flip_table.csv", FLIP_COLUMNS, rows)
    lines = ["| " + " | ".join(FLIP_COLUMNS) + " |", "| --- | --- | ---: |" + " ---: |" * (len(FLIP_COLUMNS) - 3)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in FLIP_COLUMNS) + " |")
    (out_dir / "flip_table.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(rows), 3.6))
    positions = np.arange(len(rows))
    for offset, variant in enumerate(FLIP_VARIANTS):
        heights = [row.get(variant, np.nan) for row in rows]
        bars = ax.bar(positions + (offset - 1) * 0.27, heights, width=0.27, label=variant)
        ax.bar_label(bars, fmt="%.3f", fontsize=6)
    ax.set_xticks(positions, [f"{r['arch']}\n{r['dataset']} s{r['seed']}" for r in rows], fontsize=7)
    low = np.nanmin([row.get(v, np.nan) for row in rows for v in FLIP_VARIANTS])
    ax.set_ylim(max(0.0, np.floor((low - 0.05) * 10) / 10) if np.isfinite(low) else 0.0, 1)  # the gaps are points, not tens
    ax.set(ylabel="test accuracy")
    ax.set_title(f"{data_set_names(runs)}: original vs flipped representations", fontsize=9)
    ax.legend(fontsize=8)
    return [out_dir / "flip_table.csv", out_dir / "flip_table.md", *save_figure(fig, out_dir / "flip_table")]


def poison_curve(runs: list[dict], out_dir: Path) -> list[Path]:
    """poison_curve.csv / .png: clean test accuracy (and poisoned train accuracy) against the carrier's NAD
    index, per arch, with the plain data's accuracy as a line and the NAD spectrum beside it."""
    poisoned = sorted((r for r in runs if r["variant"] == "poison"), key=lambda r: (r["arch"], r["seed"], r["nad_index"]))
    write_csv_atomic(out_dir / "poison_curve.csv", POISON_COLUMNS, poisoned)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for arch, seed in sorted({(r["arch"], r["seed"]) for r in poisoned}):
        mine = [r for r in poisoned if (r["arch"], r["seed"]) == (arch, seed)]
        index = [r["nad_index"] for r in mine]
        (line,) = axes[0].plot(index, [r["test_acc"] for r in mine], marker="o", label=f"{arch} s{seed}: clean test")
        axes[0].plot(index, [r["train_acc"] for r in mine], ls=":", color=line.get_color(), label=f"{arch} s{seed}: poisoned train")
        plain = [r["test_acc"] for r in runs if (r["arch"], r["seed"], r["variant"]) == (arch, seed, "plain")]
        if plain:
            axes[0].axhline(plain[0], ls="--", lw=1, color=line.get_color(), label=f"{arch} s{seed}: unpoisoned")
        eigenvalues = _eigenvalues(mine[0]["dir"])
        if eigenvalues is not None:
            axes[1].semilogy(np.maximum(eigenvalues, np.finfo(float).tiny), color=line.get_color(), label=arch)
    for ax in axes:  # the curve changes within the first tens of NADs: both panels on one index scale
        ax.set_xscale("symlog", linthresh=4)
        ax.set_xlim(0, max(r["nad_index"] for r in poisoned) * 1.2 + 1)
    axes[0].set(xlabel="carrier NAD index (linear to 4, logarithmic above)", ylabel="accuracy", ylim=(0, 1.02))
    axes[0].legend(fontsize=7)
    last = " or ".join(str(k - 1) for k in sorted({poison_carriers(SHAPES[r["dataset"]][0]) for r in poisoned}))
    axes[0].set_title(f"{data_set_names(poisoned)} poisoned along NADs idx to idx + {last}", fontsize=9)
    axes[1].set(xlabel="NAD index (linear to 4, logarithmic above)", ylabel="eigenvalue")
    axes[1].set_title("NAD spectrum", fontsize=9)
    return [out_dir / "poison_curve.csv", *save_figure(fig, out_dir / "poison_curve")]


def _eigenvalues(run_dir: Path):
    """The spectrum of the NADs a run used (from the eigenvalues.npy beside its nads.npy), if still there."""
    config = Path(run_dir) / "config.yaml"
    nads = OmegaConf.load(config).dataset.get("nads") if config.is_file() else None
    return eigenvalues_of(nads) if nads else None


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("" if value is None else str(value))


def make_cifar_report(runs: list[dict], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    if any(r["variant"] in FLIP_VARIANTS for r in runs):
        files += flip_table(runs, out_dir)
    if any(r["variant"] == "poison" for r in runs):
        files += poison_curve(runs, out_dir)
    return files
