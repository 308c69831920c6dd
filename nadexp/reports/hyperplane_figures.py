"""Figures of estimator=hyperplanes: cos distributions per layer, mass across epochs, critical layers."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from nadexp.reports.heatmap import save_figure

SERIES = (("trained", "tab:blue"), ("init", "tab:orange"), ("fresh", "tab:green"), ("null", "tab:gray"))


def cos_violins(layers: dict, path: Path, title: str) -> list[Path]:
    """Per layer, the distribution of cos(filter normal, identity line): trained, at init, at a fresh random
    init, and draws from the null N(0, 1/d)."""
    names, rng = list(layers), np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4))
    width = 0.8 / len(SERIES)
    for k, (series, colour) in enumerate(SERIES):
        null = lambda n: rng.normal(0, 1 / np.sqrt(layers[n]["trained"]["d"]), max(len(layers[n]["cos"]["trained"]), 2))
        data = [np.asarray(layers[n]["cos"][series]) if series != "null" else null(n) for n in names]
        positions = np.arange(len(names)) + (k - (len(SERIES) - 1) / 2) * width
        parts = ax.violinplot(data, positions=positions, widths=width, showmeans=True)
        for body in parts["bodies"]:
            body.set_facecolor(colour)
            body.set_alpha(0.6)
        for lines in ("cbars", "cmins", "cmaxes", "cmeans"):
            parts[lines].set_color(colour)
        ax.plot([], [], color=colour, lw=6, alpha=0.6, label=series)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(np.arange(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("cos(filter normal, 1)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=4)
    return save_figure(fig, path)


def mass_and_critical(epochs: dict, critical: list[dict], layer_names: list[str], path: Path, title: str) -> list[Path]:
    """Left: mass P(cos <= 0) per layer across training snapshots (0.5 = null). Right: the relative drop in
    test accuracy when one layer is reset to a snapshot (or a fresh random init)."""
    panels = 2 if critical else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 0.3 * len(layer_names) + 2.4), squeeze=False)
    labels = sorted(epochs)
    mass = np.array([[epochs[e][n]["mass"] for e in labels] for n in layer_names]) if labels else np.zeros((len(layer_names), 0))
    image = axes[0, 0].imshow(mass, aspect="auto", cmap="RdBu_r", vmin=0, vmax=1, interpolation="nearest")
    _label_axes(axes[0, 0], labels, layer_names, "epoch (snapshot)", "mass P(cos <= 0)")
    fig.colorbar(image, ax=axes[0, 0], label="mass (0.5: null)")
    if critical:
        columns = list(dict.fromkeys(row["snapshot"] for row in critical))
        drop = np.full((len(layer_names), len(columns)), np.nan)
        for row in critical:
            drop[layer_names.index(row["layer"]), columns.index(row["snapshot"])] = row["drop"]
        image = axes[0, 1].imshow(drop, aspect="auto", cmap="magma_r", vmin=0, vmax=1, interpolation="nearest")
        _label_axes(axes[0, 1], columns, layer_names, "layer reset to snapshot", "critical layers")
        fig.colorbar(image, ax=axes[0, 1], label="(acc* - acc) / acc*")
    return save_figure(fig, path, title)


def _label_axes(ax, columns, rows, xlabel: str, title: str) -> None:
    step = max(1, len(columns) // 12)
    ax.set_xticks(range(0, len(columns), step), [str(c) for c in columns][::step], fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set(xlabel=xlabel)
    ax.set_title(title, fontsize=9)
