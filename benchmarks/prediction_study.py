"""Which score of the NADs predicts a trained Fourier map best? Every candidate predictor of
nadexp.reports.prediction, from finite-difference and autograd NADs of LeNet (1 x 32 x 32, seed 0), scored against
the published LeNet map; each candidate's calibration fitted on LeNet's finite-difference NADs only, then carried
unchanged to what it was not fitted on: the published logistic-regression map and any (NADs, trained sweep)
pairs given with --transfer. Last, how the chosen prediction changes with the number of networks.

    python benchmarks/prediction_study.py [--networks 10000,3000,1000,300,100] \
        [--transfer NAME=NADS_DIR:SWEEP_DIR ...]

The first --networks count is the one fitted on; the rest are prefixes of the same networks.
"""

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from nadexp.config import compose_config
from nadexp.data.nad_file import eigenvalues_of, load_nads
from nadexp.estimators.nads import principal_directions
from nadexp.reports.prediction import DEFAULT_PREDICTOR, PREDICTORS, best_fourier_variance, fit_calibration, fourier_vectors, projections
from nadexp.reports.prediction_report import matched, published_records, scores
from nadexp.reports.sweep_report import load_sweep
from nadexp.results.machine import cpu_description

SHAPE = (1, 32, 32)
CEILINGS = (1.0, None)  # the calibration rises to 100 %, or to a fitted ceiling


def gradients(arch: str, method: str, networks: int) -> tuple[torch.Tensor, float]:
    """(N, D) input gradients of ``networks`` fresh ``arch`` networks, as experiment=nads computes them."""
    cfg = compose_config(["experiment=nads", f"arch={arch}", f"estimator.method={method}", f"estimator.num_networks={networks}"])
    estimator = instantiate(cfg.estimator)
    start = time.perf_counter()
    found = estimator.gradients(estimator.prepare(cfg), SHAPE)
    return found, time.perf_counter() - start


class Case:
    """NADs (rows, spectrum) and the trained map they are scored against, on the cells of that map."""

    def __init__(self, name, nads, spectrum, shape, trained: list[dict]):
        self.name, self.shape, self.trained = name, tuple(shape), trained
        self.cells = [r["direction"] for r in trained if r.get("status") == "ok"]
        self.p2 = projections(np.asarray(nads).reshape(len(nads), -1), fourier_vectors(shape, self.cells))
        self.spectrum = np.asarray(spectrum, dtype=np.float64)
        self.best = best_fourier_variance(nads, self.spectrum, shape)

    def raw(self, predictor: str) -> np.ndarray:
        return PREDICTORS[predictor](self.p2, self.spectrum, math.prod(self.shape), self.best)

    def accuracies(self) -> np.ndarray:
        return np.array([r["test_acc"] for r in self.trained if r.get("status") == "ok"])

    def scored(self, predictor: str, calibration) -> dict:
        predicted = [
            {"basis": "fourier", "direction": c, "test_acc": float(a), "status": "ok"}
            for c, a in zip(self.cells, calibration(self.raw(predictor)))
        ]
        return scores(matched(predicted, self.trained, self.shape))


def from_gradients(name, found: torch.Tensor, trained) -> Case:
    nads, eigenvalues, _ = principal_directions(torch.as_tensor(found))
    return Case(name, nads.numpy(), eigenvalues.numpy(), SHAPE, trained)


def transfer_case(spec: str) -> Case:
    name, _, paths = spec.partition("=")
    nads_dir, _, sweep_dir = paths.partition(":")
    sweep = load_sweep(Path(sweep_dir))
    return Case(name, load_nads(nads_dir, sweep["shape"]), eigenvalues_of(nads_dir), sweep["shape"], sweep["cells"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default="10000,3000,1000,300,100", help="LeNet networks: the first is fitted on")
    parser.add_argument("--transfer", nargs="*", default=[], metavar="NAME=NADS_DIR:SWEEP_DIR", help="further (NADs, trained map) pairs")
    args = parser.parse_args()
    counts = [int(n) for n in args.networks.split(",")]
    console = Console(width=160)

    lenet_map, logreg_map = published_records("lenet"), published_records("logreg")
    fd, fd_time = gradients("lenet", "finite_difference", counts[0])
    ag, ag_time = gradients("lenet", "autograd", counts[0])
    lg, lg_time = gradients("logreg", "finite_difference", min(counts[0], 1000))
    fit = from_gradients("lenet FD (fitted)", fd, lenet_map)
    cases = [
        fit,
        from_gradients("lenet autograd", ag, lenet_map),
        from_gradients("logreg", lg, logreg_map),
        *[transfer_case(spec) for spec in args.transfer],
    ]
    calibrations = {
        (predictor, ceiling): fit_calibration(fit.raw(predictor), fit.accuracies(), ceiling)
        for predictor in PREDICTORS
        for ceiling in CEILINGS
    }

    where = cpu_description()
    table = Table(
        title=f"Predicted vs trained Fourier maps ({where}); {counts[0]:,} LeNet networks; calibrations fitted on LeNet FD NADs "
        "vs its published map only; mean |diff| in points; trained maps: published (lenet, logreg: 100 % everywhere), else the sweep"
    )
    for column in ("predictor", "ceiling", "NADs", "cells", "Pearson", "Spearman", "mean |diff|", "learnable agreement"):
        table.add_column(column, justify="left" if column in ("predictor", "NADs, trained map") else "right")
    for predictor, ceiling in calibrations:
        for case in cases:
            numbers = case.scored(predictor, calibrations[predictor, ceiling])
            show = lambda key: "-" if numbers.get(key) is None else str(numbers[key])  # noqa: E731
            table.add_row(
                predictor,
                "100 %" if ceiling else "fitted",
                case.name,
                show("directions"),
                show("pearson"),
                show("spearman"),
                show("mean_abs_difference"),
                show("learnable_agreement"),
            )
        table.add_section()
    console.print(table)

    fitted = Table(title="Calibrations: test accuracy = 0.5 + height / (1 + exp(-slope (score - centre)))")
    for column in ("predictor", "ceiling", "height", "slope", "centre"):
        fitted.add_column(column, justify="right")
    for (predictor, ceiling), calibration in calibrations.items():
        fitted.add_row(
            predictor, "100 %" if ceiling else "fitted", str(calibration.height), str(calibration.slope), str(calibration.centre)
        )
    console.print(fitted)

    final = fit.scored(DEFAULT_PREDICTOR, calibrations[DEFAULT_PREDICTOR, CEILINGS[0]])
    reference = calibrations[DEFAULT_PREDICTOR, CEILINGS[0]](fit.raw(DEFAULT_PREDICTOR))
    convergence = Table(title=f"{DEFAULT_PREDICTOR} from the first N of the same LeNet networks, against N = {counts[0]:,}")
    for column in ("networks", "Pearson with N max", "max |diff| (points)", "Pearson with published"):
        convergence.add_column(column, justify="right")
    for count in counts:
        case = from_gradients(str(count), fd[:count], lenet_map)
        predicted = calibrations[DEFAULT_PREDICTOR, CEILINGS[0]](case.raw(DEFAULT_PREDICTOR))
        numbers = case.scored(DEFAULT_PREDICTOR, calibrations[DEFAULT_PREDICTOR, CEILINGS[0]])
        agreement = np.corrcoef(predicted, reference)[0, 1]
        convergence.add_row(f"{count:,}", f"{agreement:.4f}", f"{100 * np.abs(predicted - reference).max():.2f}", str(numbers["pearson"]))
    console.print(convergence)
    console.print(
        f"gradients: LeNet finite differences {fd_time:.1f} s, autograd {ag_time:.1f} s, logreg {lg_time:.1f} s; "
        f"chosen {DEFAULT_PREDICTOR}: {final}"
    )


if __name__ == "__main__":
    main()
