"""Class-conditional densities of stage representations (Jamroz & Kurdziel 2023; protocol section 3). A density per (class, stage) of the
class's reduced representations: scikit-learn's variational Dirichlet-process Gaussian mixture (for the paper's collapsed Gibbs sampler) or
one Gaussian; then per-class statistics, the split at the largest gap, relative entropies and score correlations (docs/analyses.md)."""

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from joblib import Parallel, delayed
from omegaconf import DictConfig
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

from nadexp.errors import ConfigError
from nadexp.estimators.base import Estimator
from nadexp.estimators.representations import resolve_stages, stage_representations, svd_reduce
from nadexp.estimators.trained_run import data_and_net_factory, load_weights, training_run_config
from nadexp.generators import drawing_from, seeded
from nadexp.loggers import log_outcome
from nadexp.reports.class_density_figures import between_class_kl, kl_vs_log_density, sorted_log_density
from nadexp.results.atomic import write_csv_atomic, write_json_atomic, write_npy_atomic
from nadexp.run.context import Run

log = logging.getLogger(__name__)
CLASS_COLUMNS = ("stage", "class", "name", "n", "mean", "std", "kl_diagonal", "within_distance", "components", "converged", "group")
DENSITIES = ("dp_mixture", "gaussian")


def fit_density(x: np.ndarray, density: str = "dp_mixture", max_components: int = 10, seed: int = 0):
    """A fitted scikit-learn mixture (``score_samples``: log-density; ``sample``; ``converged_``, recorded instead of a
    warning). With few examples per dimension the variational mixture overfits (full covariances), which biases
    log-densities up and relative entropies to a diagonal Gaussian away from 0: compare like with like."""
    x = np.asarray(x, dtype=np.float64)
    if density == "gaussian":
        model = GaussianMixture(1, covariance_type="full", reg_covar=1e-6, random_state=seed)
    else:
        components, prior = max(1, min(max_components, len(x) // 2)), "dirichlet_process"
        options = dict(weight_concentration_prior_type=prior, reg_covar=1e-6, max_iter=500, random_state=seed)
        model = BayesianGaussianMixture(n_components=components, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x)


def relative_entropy_to_diagonal(model, samples: int, seed: int = 0) -> float:
    """KL(p || N(mean_p, diag var_p)) by Monte Carlo with ``samples`` draws from the fitted density p."""
    draws, _ = _sample(model, samples, seed)
    mean, var = draws.mean(0), draws.var(0) + 1e-12
    log_q = stats.norm(mean, np.sqrt(var)).logpdf(draws).sum(1)
    return float(np.mean(model.score_samples(draws) - log_q))


def kl_between(p, q, samples: int, seed: int = 0) -> float:
    """KL(p || q) of two fitted densities, by Monte Carlo with draws from p."""
    draws, _ = _sample(p, samples, seed)
    return float(np.mean(p.score_samples(draws) - q.score_samples(draws)))


def _sample(model, samples: int, seed: int):
    model.random_state = seed  # scikit-learn draws with the model's own random_state
    return model.sample(samples)


def within_class_distance(x: np.ndarray, max_points: int = 2000, seed: int = 0) -> float:
    """Mean Euclidean distance between distinct examples of one class (on at most ``max_points``)."""
    if len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), max_points, replace=False)]
    points = torch.as_tensor(x, dtype=torch.float64)
    if len(points) < 2:
        return float("nan")
    distances = torch.cdist(points, points)
    return float(distances.sum() / (len(points) * (len(points) - 1)))


def split_at_largest_gap(means: dict, stds: dict, counts: dict, threshold: float = 5.0) -> dict:
    """Classes sorted by mean log-density (descending), split at the largest gap between neighbours; ``gap_z``: the gap
    over the standard error of their difference, ``meaningful`` above ``threshold`` (alike classes stay well below)."""
    order = sorted(means, key=lambda c: -means[c])
    if len(order) < 2:
        return {"order": order, "high": order, "low": [], "gap": 0.0, "gap_z": 0.0, "meaningful": False}
    gaps = [means[a] - means[b] for a, b in zip(order, order[1:])]
    at = int(np.argmax(gaps))
    a, b = order[at], order[at + 1]
    se = math.sqrt(stds[a] ** 2 / counts[a] + stds[b] ** 2 / counts[b])
    gap_z = gaps[at] / se if se > 0 else float("inf")
    split = {"order": order, "high": order[: at + 1], "low": order[at + 1 :], "gap": float(gaps[at]), "gap_z": float(gap_z)}
    return {**split, "meaningful": bool(gap_z > threshold)}


def _fit_class(x, density, max_components, seed, kl_samples):
    model = fit_density(x, density, max_components, seed)
    log_density = model.score_samples(np.asarray(x, dtype=np.float64))
    kl = relative_entropy_to_diagonal(model, kl_samples, seed) if kl_samples else float("nan")
    return model, log_density, kl


@dataclass
class ClassDensityEstimator(Estimator):
    """`estimator=class_density` (options in conf/estimator/class_density.yaml)."""

    name: str = "class_density"
    run_dir: Optional[str] = None  # a training run (its config and checkpoints/last.ckpt)
    checkpoint: str = "last"  # last | best | a path to a checkpoint
    stages: object = "auto"  # "auto" or a list of module names
    dims: list[int] = field(default_factory=lambda: [16, 16, 64, 64])  # per stage; the last value repeats
    density: str = "dp_mixture"  # dp_mixture (variational DP-GMM) | gaussian
    max_components: int = 10  # truncation of the Dirichlet process
    kl_samples: int = 2000  # Monte Carlo draws per relative entropy (0: skip)
    kl_classes: Optional[list[int]] = None  # classes for between-class KL (None: the first 10)
    gap_threshold: float = 5.0  # gap_z above which the split is called meaningful
    scores: Optional[str] = None  # a .npy of one score per training example (e.g. memorisation)
    score_bins: int = 10
    max_examples: Optional[int] = None  # use the first N training examples (None: all)
    batch_size: int = 1024
    n_jobs: int = -1  # parallel fits over (class, stage); -1: every core
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.density not in DENSITIES:
            raise ConfigError(f"estimator.density={self.density!r} is unknown: choose one of {', '.join(DENSITIES)}")
        for option in ("max_components", "batch_size", "score_bins"):
            if getattr(self, option) < 1:
                raise ConfigError(f"estimator.{option} must be >= 1, got {getattr(self, option)}")
        if not self.dims or min(self.dims) < 1:
            raise ConfigError(f"estimator.dims must be a list of positive integers, got {list(self.dims)}")
        if self.kl_samples < 0:
            raise ConfigError(f"estimator.kl_samples must be >= 0, got {self.kl_samples}")
        if self.stages != "auto" and (isinstance(self.stages, str) or not list(self.stages)):
            raise ConfigError(f"estimator.stages must be auto or a list of module names, got {self.stages!r}")

    def prepare(self, cfg: DictConfig):
        """The training run's data module, its trained network and the stage names; scores if given."""
        if self.run_dir is None:
            example = "outputs/cifar10/resnet18-cifar10-plain-s0 from `python run.py experiment=cifar10 arch=resnet18`"
            raise ConfigError(f"estimator=class_density needs estimator.run_dir: the directory of a trained run (e.g. {example})")
        datamodule, make_net = data_and_net_factory(training_run_config(self.run_dir, cfg))
        named = self.checkpoint in ("last", "best")
        checkpoint = Path(self.run_dir) / "checkpoints" / f"{self.checkpoint}.ckpt" if named else Path(self.checkpoint)
        if not checkpoint.is_file():
            how = "train with callbacks=checkpoints, as experiment=cifar10 does, or give the path of a checkpoint"
            raise ConfigError(f"estimator.checkpoint={self.checkpoint!r}: {checkpoint} does not exist ({how})")
        with drawing_from(seeded(self.seed)):  # its weights are the checkpoint's
            net = make_net()
        net.load_state_dict(load_weights(checkpoint))
        stages, scores = resolve_stages(net, self.stages), None
        if self.scores:
            try:
                scores = np.load(self.scores, allow_pickle=False).astype(np.float64).ravel()
            except (OSError, ValueError) as error:
                raise ConfigError(f"estimator.scores={self.scores!r} is not a readable .npy file ({error})") from None
        return datamodule, net, stages, scores

    def run(self, run: Run, prepared) -> dict:
        cfg, output_dir, loggers = run.cfg, run.folder, run.loggers
        datamodule, net, stages, scores = prepared
        images, labels = datamodule.load("train")  # the training examples only; batches go to the device one by one
        images, labels = images[: self.max_examples], labels[: self.max_examples].cpu().numpy()
        if scores is not None and len(scores) < len(labels):
            raise ConfigError(f"estimator.scores has {len(scores)} values for {len(labels)} training examples")
        scores = scores[: len(labels)] if scores is not None else None
        start = time.perf_counter()
        representations = stage_representations(net, stages, images, self.batch_size, self.resolved_device())
        extraction_s = time.perf_counter() - start
        reduced, spectra = {}, {}
        for index, stage in enumerate(stages):
            values, _, singular_values = svd_reduce(representations[stage], self.dim_of(index))
            reduced[stage], spectra[stage] = values.numpy(), singular_values.tolist()
        start = time.perf_counter()
        found = self.analyse(reduced, labels, scores)
        fitting_s = time.perf_counter() - start
        names = getattr(datamodule, "class_names", None)
        write_npy_atomic(output_dir / "log_density.npy", np.stack([found["log_density"][s] for s in stages]))
        write_npy_atomic(output_dir / "labels.npy", labels)
        note = "variational Dirichlet-process Gaussian mixture (scikit-learn), a substitute for the paper's collapsed Gibbs sampler"
        times = {"examples": int(len(labels)), "extraction_s": round(extraction_s, 3), "fitting_s": round(fitting_s, 3)}
        report = {"stages": found["stages"], "stage_names": stages, "singular_values": spectra, "density": self.density}
        report["density_note"] = note if self.density == "dp_mixture" else "one Gaussian per class"
        write_json_atomic(output_dir / "class_density.json", {**report, **times})
        rows = []
        for stage in stages:
            split = found["stages"][stage]["split"]
            for c, values in found["stages"][stage]["classes"].items():
                group = "high" if c in split["high"] else "low"
                rows.append({"stage": stage, "class": c, "name": names[c] if names else c, **values, "group": group})
        write_csv_atomic(output_dir / "classes.csv", CLASS_COLUMNS, rows)
        title = f"{cfg.arch_name}: class-conditional densities ({self.density})"
        figures = sorted_log_density(found["stages"], output_dir / "sorted_log_density", title, names)
        figures += kl_vs_log_density(found["stages"], output_dir / "kl_vs_log_density", title)
        figures += between_class_kl(found["stages"], output_dir / "between_class_kl", title, names)
        metrics = {f"class_density/{stage}/{key}": found["stages"][stage]["split"][key] for stage in stages for key in ("gap", "gap_z")}
        tables = {"class_density/classes": (CLASS_COLUMNS, [[r[c] for c in CLASS_COLUMNS] for r in rows])}
        log_outcome(loggers, cfg, metrics, {f"class_density/{p.stem}": p for p in figures if p.suffix == ".png"}, tables)
        splits = {stage: {k: found["stages"][stage]["split"][k] for k in ("gap", "gap_z", "meaningful", "high", "low")} for stage in stages}
        gaps = {s: round(v["gap_z"], 1) for s, v in splits.items()}
        message = "class densities of %s over %d examples: extraction %.1f s, fitting %.1f s; splits %s -> %s"
        log.info(message, cfg.arch_name, len(labels), extraction_s, fitting_s, gaps, output_dir / "class_density.json")
        summary = {k.removeprefix("class_density/"): v for k, v in metrics.items()}
        fields = dict(objective=splits[stages[-1]]["gap_z"], summary=summary, run_dir=self.run_dir, stages=stages, seed=self.seed)
        files = ["class_density.json", "log_density.npy", "labels.npy", "classes.csv", *(p.name for p in figures)]
        return {**fields, "density": self.density, "examples": times["examples"], "splits": splits, **times, "files": files}

    def dim_of(self, index: int) -> int:
        return self.dims[min(index, len(self.dims) - 1)]

    def analyse(self, reduced: dict[str, np.ndarray], labels: np.ndarray, scores: Optional[np.ndarray] = None) -> dict:
        """Densities, per-class statistics, splits and KLs for {stage: (n, k) reduced representations}."""
        classes = sorted(int(c) for c in np.unique(labels))
        members, jobs = {c: labels == c for c in classes}, [(stage, c) for stage in reduced for c in classes]
        fit = delayed(_fit_class)
        options = (self.density, self.max_components, self.seed, self.kl_samples)
        fits = Parallel(n_jobs=self.n_jobs)(fit(reduced[s][members[c]], *options) for s, c in jobs)
        fitted = dict(zip(jobs, fits))  # (stage, class) -> (model, log-densities of its examples, relative entropy)
        out = {"stages": {}, "log_density": {}}
        kl_classes = [c for c in (self.kl_classes if self.kl_classes is not None else classes[:10]) if c in classes]
        for stage, x in reduced.items():
            log_density, per_class = np.full(len(labels), np.nan), {}
            for c in classes:
                model, values, kl = fitted[(stage, c)]
                log_density[members[c]] = values
                moments = {"n": int(len(values)), "mean": float(values.mean()), "std": float(values.std()), "kl_diagonal": kl}
                distance = within_class_distance(x[members[c]], seed=self.seed)
                fit = {"components": int((model.weights_ > 0.01).sum()), "converged": bool(model.converged_)}
                per_class[c] = {**moments, "within_distance": distance, **fit}
            split = split_at_largest_gap(*({c: v[k] for c, v in per_class.items()} for k in ("mean", "std", "n")), self.gap_threshold)
            samples = self.kl_samples or 1000
            kl = lambda a, b: 0.0 if a == b else kl_between(fitted[(stage, a)][0], fitted[(stage, b)][0], samples, self.seed)
            between = {"classes": kl_classes, "kl": [[kl(a, b) for b in kl_classes] for a in kl_classes]}
            out["stages"][stage] = {"dim": int(x.shape[1]), "classes": per_class, "split": split, "between_kl": between}
            if scores is not None:
                out["stages"][stage]["scores"] = score_correlation(log_density, scores, self.score_bins)
            out["log_density"][stage] = log_density
        return out


def score_correlation(log_density: np.ndarray, scores: np.ndarray, bins: int) -> dict:
    """Spearman correlation of log-density with a per-example score, and mean log-density per score bin (quantile bins)."""
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, bins + 1)))
    index = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)
    per_bin = []
    for i in range(len(edges) - 1):
        mean = float(log_density[index == i].mean()) if (index == i).any() else float("nan")
        per_bin.append({"low": float(edges[i]), "high": float(edges[i + 1]), "n": int((index == i).sum()), "mean_log_density": mean})
    rho, p = stats.spearmanr(log_density, scores)
    return {"spearman": float(rho), "p_value": float(p), "bins": per_bin}
