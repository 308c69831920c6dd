"""What `python run.py <overrides>` does with its composed config: check the command, prepare the task (every check
that can fail on the config; nothing written), then run it. STEPS is the one place that maps tasks to code."""

import time

from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from nadexp.config import check_dataset
from nadexp.cores import sharing
from nadexp.devices import apply_tf32
from nadexp.errors import ConfigError
from nadexp.estimators.run import estimate, prepare_estimate
from nadexp.results.schema import record_failure
from nadexp.run.context import Run
from nadexp.run.settings import check_run_settings
from nadexp.run.tasks import ESTIMATORS, check_command
from nadexp.sweeps.runner import plan, run_sweep
from nadexp.sweeps.spot_checks import prepare_prediction
from nadexp.training.train import prepare, train

MISSING_HINTS = {"arch.target": "arch=custom builds your own network; add arch.target=mymodule.MyNet (docs/custom_architectures.md)"}
STEPS = {  # task: (prepare, run)
    "train": (prepare, train),
    "sweep": (plan, run_sweep),
    **dict.fromkeys(ESTIMATORS, (prepare_estimate, estimate)),
    "fourier_prediction": (prepare_prediction, estimate),  # its spot checks are cells of a sweep
}


def execute(cfg: DictConfig, overrides=(), task: str | None = None) -> dict:
    """Runs ``cfg``'s task and returns its result.json; every check that can fail on the config raises
    ConfigError before the run writes anything. ``task``: decided already by the caller's checks (nadexp.cli)."""
    if task is None:
        task = check_command(cfg, overrides)
        check_dataset(cfg, task)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:  # a value the config leaves for the command line (???)
        hint = MISSING_HINTS.get(missing[0], f"add {missing[0]}=<value>")
        raise ConfigError(f"{missing[0]} must be given: {hint}")
    check_run_settings(cfg, task)
    apply_tf32(cfg.get("tf32", False))
    prepare_task, run_task = STEPS[task]
    run = Run.start(cfg, task)  # decided once: the task, the loggers and (on first write) the run folder
    with sharing(cfg.get("threads")):  # the cores, shared with the other nadexp processes on this machine
        try:
            prepared = prepare_task(run)
        except InstantiationException as error:  # Hydra wraps what a config's constructor raises
            if isinstance(error.__cause__, ConfigError):
                raise error.__cause__ from None
            raise
        start = time.perf_counter()
        try:
            return run_task(run, prepared)
        except ConfigError:  # bad input found once the run looked at it (a damaged data file): one line, no record
            raise
        except BaseException as error:  # an exception inside Lightning, a divergence, Ctrl-C, SIGTERM (nadexp.cli)
            record_failure(cfg, task, error, time.perf_counter() - start)
            raise
