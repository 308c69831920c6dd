"""Figures of estimator=class_density: sorted class log-densities with the split, relative entropy against log-density, between-class KL."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from nadexp.reports.heatmap import save_figure


def _name(c, class_names) -> str:
    return class_names[c] if class_names and c < len(class_names) else str(c)


def sorted_log_density(stages: dict, path: Path, title: str, class_names=None) -> list[Path]:
    """One panel per stage: classes sorted by the mean log-density of their own examples, std bars, the
    largest gap marked (solid when it is meaningful, dotted otherwise)."""
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.8), squeeze=False)
    for ax, (stage, found) in zip(axes.flat, stages.items()):
        split, classes = found["split"], found["classes"]
        order = split["order"]
        means = [classes[c]["mean"] for c in order]
        colours = ["tab:blue" if c in split["high"] else "tab:red" for c in order]
        for i, (mean, c, colour) in enumerate(zip(means, order, colours)):  # points, not bars: log-densities have no zero
            ax.errorbar(i, mean, yerr=classes[c]["std"], fmt="o", color=colour, capsize=2, markersize=4)
        ax.axvline(len(split["high"]) - 0.5, color="black", ls="-" if split["meaningful"] else ":")
        step = max(1, len(order) // 20)
        ax.set_xticks(range(0, len(order), step), [_name(c, class_names) for c in order][::step], rotation=70, fontsize=6)
        ax.set_title(f"{stage} (d={found['dim']}): gap {split['gap']:.2f}, z {split['gap_z']:.1f}", fontsize=8)
        ax.set_ylabel("mean log-density of own examples")
    return save_figure(fig, path, title)


def kl_vs_log_density(stages: dict, path: Path, title: str) -> list[Path]:
    fig, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 3.6), squeeze=False)
    for ax, (stage, found) in zip(axes.flat, stages.items()):
        classes, high = found["classes"], set(found["split"]["high"])
        for c, values in classes.items():
            ax.scatter(values["mean"], values["kl_diagonal"], s=14, color="tab:blue" if c in high else "tab:red")
        ax.set_xlabel("mean log-density")
        ax.set_ylabel("KL(p_c || diagonal Gaussian)")
        ax.set_title(stage, fontsize=8)
    return save_figure(fig, path, title)


def between_class_kl(stages: dict, path: Path, title: str, class_names=None) -> list[Path]:
    fig, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 3.8), squeeze=False)
    for ax, (stage, found) in zip(axes.flat, stages.items()):
        names = [_name(c, class_names) for c in found["between_kl"]["classes"]]
        kl = np.asarray(found["between_kl"]["kl"], dtype=float)
        image = ax.imshow(np.log10(np.maximum(kl, 1e-3)), cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=70, fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_title(f"{stage}: log10 KL(row || column)", fontsize=8)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return save_figure(fig, path, title)
