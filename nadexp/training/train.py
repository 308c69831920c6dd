"""One training run: compose -> instantiate -> fit -> test -> result.json (the run-directory contract)."""

import logging
import sys
import time
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks.progress import ProgressBar

from nadexp.devices import is_rank_zero
from nadexp.errors import ConfigError
from nadexp.generators import drawing_from, seeded
from nadexp.loggers import log_outcome
from nadexp.progress import Steps, on_terminal
from nadexp.results.atomic import write_json_atomic
from nadexp.results.schema import finished_record, record_failure, result_record, training_fields, training_metrics
from nadexp.run.context import Run
from nadexp.training.ddp import a_failing_rank_fails_this_job, check_rank_launch, ranks_of_this_job
from nadexp.training.keyed_dropout import key_of, keyed
from nadexp.training.module import Classifier

log = logging.getLogger(__name__)


def build_data_and_net(cfg: DictConfig, generator: Optional[torch.Generator] = None):
    """The datamodule and the network of ``cfg``, initialised from ``generator`` (default: seeded with cfg.seed),
    channels-last if the config says so."""
    datamodule = instantiate(cfg.dataset)
    with drawing_from(generator or seeded(cfg.seed)):
        net = instantiate(cfg.arch, input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
    keyed(net, key_of(cfg))  # dropout masks of the run's own, the same whatever engine or group trains it
    if cfg.get("channels_last"):
        net = net.to(memory_format=torch.channels_last)
    return datamodule, net


def optimization(cfg: DictConfig):
    """The optimizer and scheduler partials of ``cfg``, tried once on a dummy parameter so that an impossible value
    (a negative learning rate, ...) stops the run before it starts, naming the group."""
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    group = "optimizer"
    try:
        trial = optimizer(params=[torch.nn.Parameter(torch.zeros(1))])
        group = "scheduler"
        if scheduler is not None:
            scheduler(optimizer=trial, total_iters=1)
    except (ValueError, TypeError) as error:
        name = str(cfg[group]["_target_"]).rsplit(".", 1)[-1]
        raise ConfigError(f"{group}: {name} refuses these settings ({error}); see {group}.* in the config") from None
    return optimizer, scheduler


def build(cfg: DictConfig, loggers=()):
    """The datamodule, LightningModule and Trainer that ``cfg`` describes (no training yet), logging to ``loggers``.
    Besides keyed dropout, what Lightning draws (CIFAR augmentation, other random layers) comes from torch's global
    generator, seeded as seed_everything does and then set to the run's stream after the network's draws."""
    generator = seeded(cfg.seed)
    datamodule, net = build_data_and_net(cfg, generator)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_rng_state(generator.get_state())
    optimizer, scheduler = optimization(cfg)
    model = Classifier(net, optimizer, scheduler, channels_last=cfg.get("channels_last", False), seed=cfg.seed)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    bar = cfg.trainer.get("enable_progress_bar", True)
    if not bar or not on_terminal():  # no bar asked for, or a log: the callbacks' bar stays out too
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)] + ([EpochLines()] if bar else [])
    trainer = instantiate(cfg.trainer, logger=list(loggers) or False, callbacks=callbacks, enable_progress_bar=bar and on_terminal())
    return datamodule, model, trainer


class EpochLines(pl.Callback):
    """A training run's progress in a log (not a terminal): a line per epoch at most every few seconds."""

    def on_train_start(self, trainer, pl_module):
        self.first = trainer.current_epoch  # a resumed run counts its own epochs
        if is_rank_zero():
            self.steps = Steps("training", trainer.max_epochs - self.first, "epochs").__enter__()

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch > self.first:  # the epoch before has its metrics now (the module logs them after callbacks)
            self._line(trainer)

    def on_train_end(self, trainer, pl_module):
        self._line(trainer)

    def _line(self, trainer) -> None:
        if is_rank_zero():
            metrics = trainer.callback_metrics
            figures = ", ".join(f"{name} {float(metrics[name]):.4f}" for name in ("train/loss", "train/acc") if name in metrics)
            self.steps.advance(1, figures)


def last_checkpoint(cfg: DictConfig, trainer: pl.Trainer) -> Optional[str]:
    """With ``resume: true``, the last.ckpt that an earlier attempt of this run left in its directory."""
    callback = trainer.checkpoint_callback
    if not cfg.get("resume") or callback is None or callback.dirpath is None:
        return None
    path = Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    if path.is_file():
        log.info("resuming %s from %s", cfg.run_name, path)
        return str(path)
    return None


def fit_and_test(cfg: DictConfig, datamodule, model, trainer) -> dict:
    """Train, then measure on the test split: the metrics of one (arch, dataset, direction, seed) cell."""
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=last_checkpoint(cfg, trainer))
    final = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    seconds = time.perf_counter() - start
    metrics = training_metrics(model.history, final["test/loss"], final["test/acc"], trainer.current_epoch, trainer.global_step, seconds)
    return {**training_fields(cfg), **metrics}


def prepare(run: Run):
    """Every check a training run can fail on its config (dataset values and files, arch, optimizer, trainer
    keys, where DDP ranks can be launched), before anything is written; what ``train`` then runs."""
    datamodule, model, trainer = build(run.cfg, run.loggers)
    check_rank_launch(run.cfg, trainer)
    return datamodule, model, trainer


def rank_failed(run: Run, started: float) -> None:
    """A DDP rank failed and this process could not return from its collectives: its record and one line."""
    error = RuntimeError("a DDP rank exited with an error and the main process could not return from its collectives")
    record_failure(run.cfg, "train", error, time.perf_counter() - started)
    print(f"error: {run.cfg.run_name}: {error}; the failure is recorded in {run.folder}", file=sys.stderr, flush=True)


def train(run: Run, prepared=None) -> dict:
    cfg = run.cfg
    datamodule, model, trainer = prepared or prepare(run)
    result_path = run.open(write_config=is_rank_zero()) / "result.json"
    earlier, started = finished_record(result_path), time.perf_counter()  # resume: true
    if earlier is not None:
        log.info("%s finished earlier: test acc %.4f (%s)", cfg.run_name, earlier["test_acc"], result_path)
        return earlier
    with run.logging():
        with ranks_of_this_job(trainer), a_failing_rank_fails_this_job(lambda: rank_failed(run, started)):
            metrics = fit_and_test(cfg, datamodule, model, trainer)
        summary = {key: metrics[key] for key in ("test_acc", "test_loss", "train_acc")}
        if is_rank_zero():
            log_outcome(trainer.loggers, cfg, summary)
    fields = {**metrics, "summary": summary, "world_size": trainer.world_size, "device": str(trainer.strategy.root_device)}
    result = result_record("train", cfg, fields, fields.pop("wall_time_s"))
    if is_rank_zero():
        write_json_atomic(result_path, result)
        accuracies = (result["test_acc"], result["train_acc"] or float("nan"))
        log.info("%s: test acc %.4f (train %.4f) in %.1f s -> %s", cfg.run_name, *accuracies, result["wall_time_s"], result_path)
    return result
