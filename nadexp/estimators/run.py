"""An estimator run: the `estimator` group's estimator prepares (checks, writes nothing) and runs (estimates,
writes its files and logs them) inside the run directory; its result.json is built by nadexp.results."""

import time

from hydra.utils import instantiate
from omegaconf import DictConfig

from nadexp.estimators.base import Estimator
from nadexp.loggers import build_loggers, finish_loggers, log_config
from nadexp.results.atomic import write_json_atomic
from nadexp.results.resume import open_run_dir
from nadexp.results.schema import result_record


def prepare_estimate(cfg: DictConfig) -> tuple[Estimator, object]:
    """Every check an estimate can fail on its config, before anything is written: the estimator and what its
    run step needs."""
    estimator = instantiate(cfg.estimator)
    return estimator, estimator.prepare(cfg)


def estimate(cfg: DictConfig, prepared=None) -> dict:
    """Runs ``cfg.estimator`` in ``cfg``'s run directory; returns its result.json."""
    estimator, inputs = prepared or prepare_estimate(cfg)
    output_dir = open_run_dir(cfg, estimator.name)
    loggers = build_loggers(cfg)
    start = time.perf_counter()
    try:
        log_config(loggers, cfg)
        fields = estimator.run(cfg, inputs, output_dir, loggers)
    finally:
        finish_loggers(loggers)
    result = result_record(estimator.name, cfg, fields, time.perf_counter() - start)
    write_json_atomic(output_dir / "result.json", result)
    return result
