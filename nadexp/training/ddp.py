"""DDP ranks of one job of a Hydra multirun. Lightning starts local ranks > 0 by running the process's command again,
which inside a multirun is the whole multirun: ``ranks_of_this_job`` makes them run this job alone (its overrides,
RUN mode, its directory), then closes its process group and forgets the ranks' environment for the next job."""

import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf, open_dict, read_write
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from nadexp.errors import ConfigError

# What Lightning's launcher sets in the parent's environment (a later trainer would take itself for a child).
LAUNCH_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
RANK_EXIT_TIMEOUT_S = 120
_FAILING_JOB: dict = {}  # the job whose ranks are running now: what to do if its main process cannot end it itself


def _stop_the_ranks(observer) -> None:
    """Lightning's watcher of local ranks, when one exits with an error: instead of killing the main process (which ends a whole multirun
    with no record), it stops this job's other ranks. The main process's collectives then fail (gloo at once) and the job ends as a failed
    run; where they cannot tell (NCCL), the job's failure is recorded and the process ended after RANK_EXIT_TIMEOUT_S."""
    for process in observer._child_processes:
        if process.poll() is None:
            process.kill()
    job = _FAILING_JOB.get("on_failure")
    if job is None:  # the job is over (a rank stopped at its end): nothing left to fail
        return

    def last_resort():
        if _FAILING_JOB.get("on_failure") is job:  # still the same job, still waiting on its ranks
            job()
            os.kill(observer._main_pid, signal.SIGKILL)

    threading.Timer(RANK_EXIT_TIMEOUT_S, last_resort).start()


@contextmanager
def a_failing_rank_fails_this_job(on_failure):
    """Around a job's fit and test: a DDP rank that fails ends this job, not the process (``_stop_the_ranks``).
    ``on_failure()`` records the failure if the main process cannot return from its collectives."""
    from lightning_fabric.strategies.launchers import subprocess_script

    subprocess_script._ChildProcessObserver._terminate_all = _stop_the_ranks  # stays: an observer may outlive its job
    _FAILING_JOB["on_failure"] = on_failure
    try:
        yield
    finally:
        _FAILING_JOB.pop("on_failure", None)


def launches_ranks(trainer: pl.Trainer) -> bool:
    """Whether ``trainer.fit`` will start ranks > 0 as new processes running this command (local DDP, not
    SLURM or torchrun, which start them themselves)."""
    launcher, environment = getattr(trainer.strategy, "launcher", None), getattr(trainer.strategy, "cluster_environment", None)
    local = environment is not None and not environment.creates_processes_externally
    return isinstance(launcher, _SubprocessScriptLauncher) and local and trainer.world_size > 1


def multirun_job():
    """Hydra's config of the multirun job this process runs, or None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return hydra_cfg if hydra_cfg.mode == RunMode.MULTIRUN else None


def check_rank_launch(cfg, trainer: pl.Trainer) -> None:
    """Local DDP ranks can be launched from a multirun job that Hydra's basic launcher runs in this process, not
    from a launcher's worker process (joblib, submitit_local), whose command is the worker's: refused up front."""
    hydra_cfg = multirun_job()
    if hydra_cfg is None or not launches_ranks(trainer):
        return
    if str(OmegaConf.select(hydra_cfg, "launcher._target_", default="")).endswith("BasicLauncher"):
        return
    setting = f"trainer.strategy={cfg.trainer.get('strategy')} with {trainer.world_size} local processes"
    why = "Lightning starts each DDP rank by running the job's command again, and a launcher's worker has none"
    fix = "run the multirun without a hydra/launcher (each job then launches its own ranks), or on SLURM with hydra/launcher=slurm_ddp"
    raise ConfigError(f"{setting} inside hydra/launcher={hydra_cfg.runtime.choices.get('hydra/launcher')}: {why}; {fix}")


@contextmanager
def ranks_of_this_job(trainer: pl.Trainer):
    """Around a job's fit and test: ranks launched inside a multirun run this job only (module docstring)."""
    hydra_cfg = multirun_job()
    if hydra_cfg is None or not launches_ranks(trainer):
        yield
        return
    argv, environment = sys.argv, {key: os.environ.get(key) for key in LAUNCH_ENVIRONMENT}
    run_dir = OmegaConf.to_container(hydra_cfg.run)["dir"]  # as configured, restored after the job
    # The launcher appends hydra.run.dir=<the run directory Hydra reports>: here the job's own directory.
    sys.argv = [argv[0], *hydra_cfg.overrides.task, "hydra.mode=RUN"]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for process in getattr(trainer.strategy.launcher, "procs", []):
            try:  # a rank ends with its job; one still waiting on a collective after a failure is stopped
                process.wait(timeout=RANK_EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        os.environ.update({key: value for key, value in environment.items() if value is not None})
        for key in (key for key, value in environment.items() if value is None):
            os.environ.pop(key, None)
        sys.argv = argv
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.run.dir = run_dir
