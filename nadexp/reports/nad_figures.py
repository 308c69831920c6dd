"""Figures of an NAD estimate (the directions, their Fourier magnitudes, the eigenvalue spectrum) and numbers summarising its spectrum."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def _grid(images: np.ndarray, title: str, cmap: str, symmetric: bool):
    count = len(images)
    cols = int(np.ceil(np.sqrt(count)))
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.4), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < count:
            image = images[index]
            limit = np.abs(image).max() or 1.0
            ax.imshow(image, cmap=cmap, vmin=-limit if symmetric else 0, vmax=limit)
            ax.set_title(str(index), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def nad_figures(nads: np.ndarray, eigenvalues: np.ndarray, out_dir: Path, label: str = "", count: int = 16) -> dict:
    """Writes the three PNGs into ``out_dir``; returns {name: path}. Multi-channel NADs show their channel mean."""
    out_dir = Path(out_dir)
    first = nads[:count].mean(axis=1)  # (k, H, W)
    spectra = np.abs(np.fft.fftshift(np.fft.fft2(nads[:count]), axes=(-2, -1))).mean(axis=1)
    magnitudes = f"|Fourier| of the first {len(first)} NADs (DC at centre) {label}".strip()
    figures = {"nads.png": _grid(first, f"First {len(first)} NADs {label}".strip(), "RdBu_r", symmetric=True)}
    figures["nads_fourier.png"] = _grid(spectra, magnitudes, "magma", symmetric=False)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy(np.arange(len(eigenvalues)), np.maximum(eigenvalues, np.finfo(float).tiny))
    ax.set(xlabel="NAD index", ylabel="eigenvalue (gradient variance)", title=f"NAD spectrum {label}".strip())
    fig.tight_layout()
    figures["spectrum.png"] = fig
    paths = {}
    for name, figure in figures.items():
        paths[name] = out_dir / name
        figure.savefig(paths[name], dpi=110)
        plt.close(figure)
    return paths


def spectrum_summary(eigenvalues) -> dict[str, float]:
    """How fast the NAD spectrum decays: the number of NADs holding 90 % of its sum, its effective rank
    (exp of the entropy of the normalised spectrum) and the 10th eigenvalue over the first."""
    values = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0, None)
    if not len(values) or values.sum() <= 0:
        return {}
    share = values / values.sum()
    nonzero = share[share > 0]
    summary = {"components_90": int(np.searchsorted(np.cumsum(share), 0.9) + 1)}
    summary["effective_rank"] = round(float(np.exp(-(nonzero * np.log(nonzero)).sum())), 4)
    if len(values) > 10:
        summary["eigenvalue_ratio_10"] = float(values[10] / values[0])
    return summary
