"""An estimator run: estimate, save the arrays and figures, log them, write result.json."""

import logging
import time

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nadexp.estimators.nads import save_nads
from nadexp.loggers import build_loggers, finish_wandb, log_outcome
from nadexp.reports.nad_figures import nad_figures
from nadexp.results import machine, open_run_dir, package_versions, write_json_atomic

log = logging.getLogger(__name__)


def estimate(cfg: DictConfig) -> dict:
    estimator = instantiate(cfg.estimator)
    shape = tuple(cfg.dataset.shape)
    make_net = lambda: instantiate(cfg.arch, input_shape=shape, num_classes=1)  # noqa: E731
    make_net()  # a bad arch config fails before the run directory is touched
    output_dir = open_run_dir(cfg)
    loggers = build_loggers(cfg)
    start = time.perf_counter()
    try:
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        found = estimator.estimate(make_net, shape)
        save_nads(output_dir, found)
        figures = nad_figures(found["nads"], found["eigenvalues"], output_dir, label=f"({cfg.arch_name}, {estimator.method})")
        _log(loggers, found, figures)
    finally:
        finish_wandb(loggers)
    device = estimator.resolved_device()
    result = {
        "task": cfg.task,
        "arch": cfg.arch_name,
        "method": estimator.method,
        "num_networks": estimator.num_networks,
        "eval_point": estimator.eval_point,
        "scale": estimator.scale if estimator.method == "finite_difference" else None,
        "seed": estimator.seed,
        "shape": list(shape),
        "dtype": str(estimator.resolved_dtype(device)).removeprefix("torch."),
        "device": str(device),
        "num_components": len(found["nads"]),
        "diagnostic": {"split_half_overlap": found["diagnostic"]},
        "top_eigenvalues": [round(float(v), 8) for v in found["eigenvalues"][:10]],
        "gradient_time_s": found["gradient_time_s"],
        "wall_time_s": round(time.perf_counter() - start, 3),
        "files": ["nads.npy", "eigenvalues.npy", "singular_values.npy", *figures],
        "versions": package_versions(),
        "machine": machine(),
    }
    write_json_atomic(output_dir / "result.json", result)
    log.info("%s NADs of %s from %d networks in %.1f s; split-half overlap %s -> %s",
             estimator.method, cfg.arch_name, estimator.num_networks, result["wall_time_s"],
             found["diagnostic"], output_dir / "nads.npy")
    return result


def _log(loggers, found: dict, figures: dict) -> None:
    metrics = {f"nads/overlap_{key}": value for key, value in found["diagnostic"].items()}
    metrics["nads/gradient_time_s"] = found["gradient_time_s"]
    images = {f"nads/{name.removesuffix('.png')}": path for name, path in figures.items()}
    spectrum = (("index", "eigenvalue"), [[index, float(value)] for index, value in enumerate(found["eigenvalues"])])
    log_outcome(loggers, metrics, images, {"nads/spectrum_table": spectrum})
