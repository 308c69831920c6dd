"""Fourier heat map of a direction sweep: test accuracy per frequency, DC at the centre, 50-100 %."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from nadexp.data.directions import conjugate, signed


def fourier_grid(records: list[dict], height: int, width: int) -> np.ndarray:
    """(H, W) test accuracies indexed [ky, kx], each cell mirrored into its conjugate; NaN where not swept."""
    grid = np.full((height, width), np.nan)
    for record in records:
        if record.get("status") != "ok" or record.get("basis") != "fourier":
            continue
        kx, ky = record["direction"]
        for x, y in ((kx, ky), conjugate(kx, ky, height, width)):
            grid[y, x] = record["test_acc"]
    return grid


def centred(grid: np.ndarray, stride: int = 1):
    """The swept sub-grid ordered by signed frequency (DC at the centre), cropped to the swept cells, and the
    signed frequencies of its rows (ky) and columns (kx)."""
    height, width = grid.shape
    ys, xs = np.arange(0, height, stride), np.arange(0, width, stride)
    fy, fx = np.sort(signed(ys, height)), np.sort(signed(xs, width))
    image = grid[np.ix_(ys[np.argsort(signed(ys, height))], xs[np.argsort(signed(xs, width))])]
    rows, cols = np.flatnonzero(~np.isnan(image).all(1)), np.flatnonzero(~np.isnan(image).all(0))
    if len(rows) and len(cols):  # a low-frequency window: show only that window
        image = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        fy, fx = fy[rows[0] : rows[-1] + 1], fx[cols[0] : cols[-1] + 1]
    return image, fy, fx


def draw(ax, grid: np.ndarray, stride: int = 1, title: str = ""):
    image, fy, fx = centred(grid, stride)
    half = stride / 2
    extent = (fx.min() - half, fx.max() + half, fy.max() + half, fy.min() - half)
    artist = ax.imshow(image, cmap="viridis", vmin=0.5, vmax=1.0, extent=extent)
    # integer ticks on the swept frequencies, as on the dashboard
    ax.set(xticks=fx[:: 1 if len(fx) <= 9 else 2], yticks=fy[:: 1 if len(fy) <= 9 else 2])
    ax.set(xlabel="kx (horizontal frequency)", ylabel="ky (vertical frequency)")
    ax.set_title(title, fontsize=9)
    return artist


def save_figure(fig, path, title: str | None = None) -> list[Path]:
    """Writes ``fig`` (with ``title`` above its panels, laid out tight unless it has a layout of its own) as
    ``path``.png and ``path``.pdf and closes it."""
    if title is not None:
        fig.suptitle(title, fontsize=9)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    paths = [Path(path).with_suffix(suffix) for suffix in (".png", ".pdf")]
    for out in paths:
        fig.savefig(out, dpi=120)
    plt.close(fig)
    return paths


def mark_cells(ax, cells, height: int, width: int, label: str = "trained") -> None:
    """Rings the Fourier cells ``cells`` ([kx, ky] each) and their conjugates on a heat map drawn by ``draw``."""
    points = {(signed(x, width), signed(y, height)) for kx, ky in cells for x, y in ((kx, ky), conjugate(kx, ky, height, width))}
    if points:
        fx, fy = zip(*sorted(points))
        ax.scatter(fx, fy, s=60, facecolors="none", edgecolors="red", linewidths=1.4, label=label)
        ax.legend(loc="upper right", fontsize=7, framealpha=0.8)


def plot_fourier_heatmap(grid: np.ndarray, path: Path, title: str = "", stride: int = 1, marked=()) -> list[Path]:
    """Writes ``path`` as PNG and PDF; the cells ``marked`` ([kx, ky] each) are ringed as trained."""
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    fig.colorbar(draw(ax, grid, stride, title), ax=ax, label="test accuracy")
    height, width = grid.shape
    mark_cells(ax, marked, height, width)
    return save_figure(fig, path)
