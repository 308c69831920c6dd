"""Fourier heat map of a direction sweep: test accuracy per frequency, DC at the centre, 50-100 %."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nadexp.sweeps.directions import conjugate  # noqa: E402


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
    """The swept sub-grid ordered by signed frequency (DC at the centre) and its imshow extent."""
    height, width = grid.shape
    ys, xs = np.arange(0, height, stride), np.arange(0, width, stride)
    signed_y, signed_x = (ys + height // 2) % height - height // 2, (xs + width // 2) % width - width // 2
    oy, ox = np.argsort(signed_y), np.argsort(signed_x)
    image = grid[np.ix_(ys[oy], xs[ox])]
    half = stride / 2
    extent = (signed_x.min() - half, signed_x.max() + half, signed_y.max() + half, signed_y.min() - half)
    return image, extent


def draw(ax, grid: np.ndarray, stride: int = 1, title: str = ""):
    image, extent = centred(grid, stride)
    artist = ax.imshow(image, cmap="viridis", vmin=0.5, vmax=1.0, extent=extent)
    ax.set_xlabel("kx (horizontal frequency)")
    ax.set_ylabel("ky (vertical frequency)")
    ax.set_title(title, fontsize=9)
    return artist


def plot_fourier_heatmap(grid: np.ndarray, path: Path, title: str = "", stride: int = 1) -> list[Path]:
    """Writes ``path`` as PNG and PDF."""
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    fig.colorbar(draw(ax, grid, stride, title), ax=ax, label="test accuracy")
    fig.tight_layout()
    paths = [Path(path).with_suffix(suffix) for suffix in (".png", ".pdf")]
    for out in paths:
        fig.savefig(out, dpi=120)
    plt.close(fig)
    return paths
