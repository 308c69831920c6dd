"""An arch's own calibration of its predicted map, from a few trained directions (spot checks): LeNet's logistic
curve refitted to K trained cells of the arch, each other cell read off it with the standard deviation of its
accuracy (the delta method). The K cells: spread over the score's range first, then where the fit is least
certain, results not known yet taken at the curve's current value (docs/predicted_maps.md)."""

from dataclasses import dataclass

import numpy as np

from nadexp.errors import ConfigError
from nadexp.reports.prediction import Calibration, fit_calibration

NOISE = 0.02  # a trained cell's accuracy scatters about 2 points around any smooth curve of the score (seeds, draws)
SPREAD_QUANTILES = (0.9, 0.1, 0.5)  # the first picks: a high score, a low one, the middle
SPREAD = len(SPREAD_QUANTILES)
MIN_CELLS = 2  # a two-parameter curve needs two trained cells of different scores


@dataclass(frozen=True)
class OwnCalibration:
    """A calibration fitted to an arch's trained cells, with the covariance of (slope, centre) and the noise level
    it was computed with; a level curve (no covariance) is as certain as the mean of its cells."""

    curve: Calibration
    covariance: np.ndarray | None
    noise: float
    cells: int

    def __call__(self, scores) -> np.ndarray:
        return self.curve(scores)

    def uncertainty(self, scores) -> np.ndarray:
        """Standard deviation of the predicted accuracy at each score (fractions)."""
        scores = np.atleast_1d(np.asarray(scores, dtype=np.float64))
        if self.covariance is None:
            return np.full(len(scores), self.noise / np.sqrt(self.cells))
        gradient = _gradient(self.curve, scores)
        return np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", gradient, self.covariance, gradient), 0))

    def as_dict(self) -> dict:
        return {**self.curve.as_dict(), "noise": round(self.noise, 4), "cells": self.cells}


def _gradient(curve: Calibration, scores: np.ndarray) -> np.ndarray:
    """(n, 2) derivatives of the curve's accuracy by (slope, centre) at each score."""
    z = np.clip(curve.slope * (scores - curve.centre), -50, 50)
    bump = curve.height * np.exp(-z) / (1 + np.exp(-z)) ** 2  # d accuracy / d z
    return np.stack([bump * (scores - curve.centre), -bump * curve.slope], axis=1)


def fit_own(scores, accuracies, fitted_on: str = "") -> OwnCalibration:
    """The logistic curve (chance to 100 %) through trained cells: ``accuracies`` (fractions) at ``scores``."""
    scores, accuracies = np.asarray(scores, dtype=np.float64), np.asarray(accuracies, dtype=np.float64)
    if len(scores) < MIN_CELLS:
        raise ConfigError(f"a calibration needs at least {MIN_CELLS} trained cells on the grid, got {len(scores)}")
    clipped = np.clip(accuracies, 0.5, 1.0)  # below chance is chance: the curve cannot go there
    flat = _flat(float(clipped.mean()), float(scores.mean()), fitted_on)
    if np.ptp(scores) < 1e-9:  # every trained cell scores alike (logistic regression: an isotropic gradient)
        return OwnCalibration(flat, None, NOISE, len(scores))
    curve = fit_calibration(scores, clipped, ceiling=1.0, fitted_on=fitted_on)
    level = ((clipped - flat(scores)) ** 2).sum() <= ((clipped - curve(scores)) ** 2).sum()
    curve = flat if level else curve  # accuracy that does not rise with the score: the best rising curve is level
    residuals, dof = clipped - curve(scores), len(scores) - (1 if level else 2)
    noise = max(NOISE, float(np.sqrt((residuals**2).sum() / dof))) if dof > 0 else NOISE
    if level:
        return OwnCalibration(flat, None, noise, len(scores))
    jacobian = _gradient(curve, scores)
    covariance = noise**2 * np.linalg.pinv(jacobian.T @ jacobian)
    return OwnCalibration(curve, covariance, noise, len(scores))


def _flat(level: float, score: float, fitted_on: str) -> Calibration:
    """A (nearly) level curve at ``level``: 0.5 + 0.5 / (1 + exp(-slope (s - centre))) = level at ``score``."""
    rise, slope = float(np.clip(2 * level - 1, 1e-4, 1 - 1e-4)), 1e-6
    return Calibration(0.5, slope, score + float(np.log(1 / rise - 1)) / slope, fitted_on)


def _spread(scores: np.ndarray, count: int, taken: list[int]) -> list[int]:
    """Up to ``count`` cells nearest to the score's 90th percentile, its 10th and its median, in that order: not the
    extremes, which are single directions (DC) that an arch often learns unlike its neighbours (LeNet: DC at 72 %,
    the directions next to it at 80 %; benchmarks/prediction_transfer.py measured both choices)."""
    targets, picks = np.quantile(scores, SPREAD_QUANTILES[:count]), list(taken)
    for target in targets:
        free = [i for i in np.argsort(np.abs(scores - target), kind="stable") if i not in picks]
        if free:
            picks.append(int(free[0]))
    return picks[len(taken) :]


def choose_spot_checks(scores, k: int, prior: Calibration, known: dict[int, float] | None = None) -> list[int]:
    """Indices (into ``scores``, one per real direction) of ``k`` cells to train, in the order to train them, besides
    those ``known`` (index -> trained accuracy). Spread picks without results are believed to land on ``prior``."""
    scores, known = np.asarray(scores, dtype=np.float64), dict(known or {})
    if not (isinstance(k, int) and 0 <= k <= len(scores) - len(known)):
        raise ConfigError(f"spot checks: K={k!r} must be an integer from 0 to {len(scores) - len(known)} (the grid's untrained directions)")
    chosen: list[int] = []
    if len(known) < SPREAD:
        chosen = _spread(scores, min(k, SPREAD - len(known)), list(known))
    believed = {**{i: prior(scores[i]) for i in chosen}, **known}
    while len(chosen) < k:
        trained = sorted(believed)
        fitted = fit_own(scores[trained], [believed[i] for i in trained])
        doubt = fitted.uncertainty(scores)
        doubt[trained] = -1
        pick = int(np.argmax(doubt))
        if doubt[pick] <= 0:  # nothing uncertain left (every score alike): the cell farthest in score from the trained
            gap = np.abs(scores[:, None] - scores[trained][None, :]).min(axis=1)
            gap[trained] = -1
            pick = int(np.argmax(gap))
        chosen.append(pick)
        believed[pick] = float(fitted(scores[pick]))
    return chosen


def spot_check(scores, k: int, prior: Calibration, train) -> dict[int, float]:
    """{index: trained accuracy} of ``k`` spot checks, chosen in two rounds: the spread picks, then, with their
    results, the rest where the fitted curve is least certain. ``train(indices)`` trains (or looks up) cells and
    returns their accuracies, so each round's cells train together."""
    trained: dict[int, float] = {}
    picks = choose_spot_checks(scores, min(k, SPREAD), prior)
    while picks:
        trained.update(train(picks))
        left = k - len(trained)
        picks = choose_spot_checks(scores, left, prior, trained) if left else []
    return trained
