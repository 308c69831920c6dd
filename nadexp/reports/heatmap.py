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


def plot_fourier_heatmap(grid: np.ndarray, path: Path, title: str = "") -> list[Path]:
    """Writes ``path`` as PNG and PDF; frequencies on labelled axes with DC at the centre."""
    height, width = grid.shape
    shifted = np.fft.fftshift(grid)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    extent = (-width // 2 - 0.5, width - width // 2 - 0.5, height - height // 2 - 0.5, -height // 2 - 0.5)
    image = ax.imshow(shifted, cmap="viridis", vmin=0.5, vmax=1.0, extent=extent)
    ax.set_xlabel("kx (horizontal frequency)")
    ax.set_ylabel("ky (vertical frequency)")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="test accuracy")
    fig.tight_layout()
    paths = [Path(path).with_suffix(suffix) for suffix in (".png", ".pdf")]
    for out in paths:
        fig.savefig(out, dpi=120)
    plt.close(fig)
    return paths
