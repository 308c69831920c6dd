"""An estimator run: the `estimator` group's estimator prepares (checks, writes nothing) and runs (estimates,
writes its files and logs them) inside the run folder; its result.json is built by nadexp.results."""

import time

from hydra.utils import instantiate

from nadexp.estimators.base import Estimator
from nadexp.results.atomic import write_json_atomic
from nadexp.results.schema import result_record
from nadexp.run.context import Run


def prepare_estimate(run: Run) -> tuple[Estimator, object]:
    """Every check an estimate can fail on its config, before anything is written: the estimator and what its run step needs."""
    estimator = instantiate(run.cfg.estimator)
    return estimator, estimator.prepare(run.cfg)


def estimate(run: Run, prepared=None) -> dict:
    """Runs ``run.cfg.estimator`` in the run folder; returns its result.json."""
    estimator, inputs = prepared or prepare_estimate(run)
    output_dir = run.open()
    start = time.perf_counter()
    with run.logging():
        fields = estimator.run(run, inputs)
    result = result_record(estimator.name, run.cfg, fields, time.perf_counter() - start)
    write_json_atomic(output_dir / "result.json", result)
    return result
