"""The Fourier heat map that an architecture's NADs predict, with no training (docs/predicted_maps.md).

With S = sum_i lambda_i u_i u_i^T the gradient covariance whose eigenvectors are the NADs, the default predictor is

    score(v) = log10(v^T S v / max_w w^T S w),    v^T S v = sum_i lambda_i <u_i, v>^2,  w: every Fourier direction

(0 for the most favoured direction; a ratio, so neither the spectrum's nor the output's scale matters), turned
into a test accuracy by a logistic calibration fitted on LeNet's published map only."""

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.optimize import curve_fit

from nadexp.data.bases import fourier_direction
from nadexp.data.directions import fourier_cells
from nadexp.errors import ConfigError

LEARNABLE = 0.75  # a direction is learnable when its test accuracy is above this (chance is 0.5)


def projections(nads: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """(n, k) squared projections <u_i, v>^2 of n directions on k NADs (both given as rows, flattened)."""
    nads = np.asarray(nads, dtype=np.float64).reshape(len(nads), -1)
    directions = np.asarray(directions, dtype=np.float64).reshape(len(directions), -1)
    return (directions @ nads.T) ** 2


def variance(p2: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
    """v^T S v = sum_i lambda_i <u_i, v>^2: the variance of a fresh network's input gradient along each v."""
    return p2 @ spectrum


def _log10(values: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(values, 1e-30))


# Every candidate: (squared projections (n, k), spectrum (k,), image dimension D, the largest gradient variance
# of any Fourier direction of the grid) -> one score per direction, larger = more learnable. The first two read the
# spectrum in its own units (eigenvalues, not a rescaled spectrum); the others only relative values.
PREDICTORS = {
    "log_scaled_variance": lambda p2, spectrum, dim, best: _log10(dim * variance(p2, spectrum)),
    "log_variance": lambda p2, spectrum, dim, best: _log10(variance(p2, spectrum)),
    "log_relative_to_best": lambda p2, spectrum, dim, best: _log10(variance(p2, spectrum) / best),
    "log_anisotropy": lambda p2, spectrum, dim, best: _log10(variance(p2, spectrum) / (spectrum.sum() / dim)),
    "anisotropy": lambda p2, spectrum, dim, best: variance(p2, spectrum) / (spectrum.sum() / dim),
    "top10_energy": lambda p2, spectrum, dim, best: p2[:, :10].sum(1),
    "top100_energy": lambda p2, spectrum, dim, best: p2[:, :100].sum(1),
    "mean_index": lambda p2, spectrum, dim, best: -(p2 @ np.arange(p2.shape[1])) / np.maximum(p2.sum(1), 1e-12) / dim,
}
ABSOLUTE = ("log_scaled_variance", "log_variance")
DEFAULT_PREDICTOR = "log_relative_to_best"


@dataclass(frozen=True)
class Calibration:
    """test accuracy = 0.5 + height / (1 + exp(-slope (score - centre))): chance for the least favoured directions, 0.5 + height at best."""

    height: float
    slope: float
    centre: float
    fitted_on: str = ""

    def __call__(self, scores) -> np.ndarray:
        return 0.5 + self.height / (1 + np.exp(-self.slope * (np.asarray(scores, dtype=np.float64) - self.centre)))

    def as_dict(self) -> dict:
        return asdict(self)


def _logistic(score, height, slope, centre):
    return 0.5 + height / (1 + np.exp(-slope * (score - centre)))


def fit_calibration(scores, accuracies, ceiling: float | None = 1.0, fitted_on: str = "") -> Calibration:
    """The least-squares logistic calibration of ``scores`` to test ``accuracies`` (fractions), rising from chance
    to ``ceiling`` (None: fitted too). D(v) is linearly separable, so a direction learnt outright reaches 1.0."""
    scores, accuracies = np.asarray(scores, dtype=np.float64), np.asarray(accuracies, dtype=np.float64)
    start = [4 / max(np.ptp(scores), 1e-12), float(np.median(scores))]
    if ceiling is None:
        curve, start, bounds = _logistic, [accuracies.max() - 0.5, *start], ([0, 0, -np.inf], [0.5, np.inf, np.inf])
    else:
        curve, bounds = (lambda x, slope, centre: _logistic(x, ceiling - 0.5, slope, centre)), ([0, -np.inf], [np.inf, np.inf])
    fitted, _ = curve_fit(curve, scores, accuracies, p0=start, bounds=bounds, maxfev=20000)
    height, (slope, centre) = (fitted[0], fitted[1:]) if ceiling is None else (ceiling - 0.5, fitted)
    return Calibration(round(float(height), 4), round(float(slope), 4), round(float(centre), 4), fitted_on)


# Fitted on LeNet only: its finite-difference NADs (python run.py experiment=nads arch=lenet, 10,000 networks,
# seed 0) against the published LeNet map (130 directions); python benchmarks/prediction_study.py refits them.
CALIBRATIONS = {
    name: Calibration(0.5, slope, centre, "lenet: finite-difference NADs (10,000 networks) vs the published map")
    for name, slope, centre in (
        ("log_relative_to_best", 3.0472, -0.7629),
        ("log_scaled_variance", 3.0472, -3.3661),
        ("log_variance", 3.0472, -6.3764),
        ("log_anisotropy", 3.0472, 0.5535),
        ("anisotropy", 0.7446, 3.6474),
        ("top10_energy", 9.7547, 0.211),
        ("top100_energy", 4.8221, 0.535),
        ("mean_index", 7.8273, -0.1821),
    )
}


def fourier_vectors(shape, cells, phase: str = "cosine") -> np.ndarray:
    """(n, D) unit Fourier directions of ``cells`` ([kx, ky] each) for images of ``shape``, as D(v) draws them."""
    return np.stack([fourier_direction(kx, ky, tuple(shape), torch.float64, phase=phase).flatten().numpy() for kx, ky in cells])


def best_fourier_variance(nads, spectrum, shape, phase: str = "cosine") -> float:
    """The largest gradient variance v^T S v over every Fourier direction v of the image grid."""
    _, height, width = shape
    return float(variance(projections(nads, fourier_vectors(shape, fourier_cells(height, width), phase)), np.asarray(spectrum)).max())


def spectrum_of(eigenvalues=None, singular_values=None, k: int | None = None) -> np.ndarray:
    """The NADs' spectrum as eigenvalues (up to a common factor): eigenvalues as given, or singular values
    squared; checked to be k non-negative numbers that do not all vanish."""
    if eigenvalues is None and singular_values is None:
        raise ConfigError("a predicted map needs the NADs' spectrum: eigenvalues.npy (or singular_values.npy) beside nads.npy")
    spectrum = np.asarray(eigenvalues if eigenvalues is not None else np.square(singular_values), dtype=np.float64).ravel()
    name = "eigenvalues" if eigenvalues is not None else "singular values"
    if k is not None and len(spectrum) != k:
        raise ConfigError(f"{len(spectrum)} {name} for {k} NADs: the spectrum needs one value per NAD")
    if not np.all(np.isfinite(spectrum)) or spectrum.min() < 0 or not spectrum.sum() > 0:
        raise ConfigError(f"the {name} must be finite, non-negative and not all zero")
    return spectrum


def predict_fourier_map(nads, spectrum, shape, stride=1, max_frequency=None, phase="cosine", predictor=DEFAULT_PREDICTOR) -> list[dict]:
    """One record per Fourier direction of the sweep grid (as a sweep's cells: basis, direction [kx, ky],
    test_acc, status), with the predictor's ``score`` and the calibrated ``test_acc``."""
    if predictor not in PREDICTORS:
        raise ConfigError(f"predictor={predictor!r} is unknown: choose one of {', '.join(PREDICTORS)}")
    _, height, width = shape
    cells = fourier_cells(height, width, stride, max_frequency)
    spectrum = np.asarray(spectrum, dtype=np.float64)
    best = best_fourier_variance(nads, spectrum, shape, phase)
    scores = PREDICTORS[predictor](projections(nads, fourier_vectors(shape, cells, phase)), spectrum, math.prod(shape), best)
    accuracies = CALIBRATIONS[predictor](scores)
    cell = lambda kx, ky, s, a: {"basis": "fourier", "direction": [kx, ky], "score": round(float(s), 6), "test_acc": round(float(a), 6)}
    return [{**cell(kx, ky, s, a), "status": "ok"} for (kx, ky), s, a in zip(cells, scores, accuracies)]
