"""One training run: compose -> instantiate -> fit -> test -> result.json (the run-directory contract)."""

import logging
import time

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nadexp.loggers import build_loggers, finish_wandb
from nadexp.results import machine, open_run_dir, package_versions, write_json_atomic
from nadexp.training.module import Classifier

log = logging.getLogger(__name__)


def build(cfg: DictConfig):
    """The datamodule, LightningModule and Trainer that ``cfg`` describes (no training yet)."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.dataset)
    net = instantiate(cfg.arch, input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    model = Classifier(net, instantiate(cfg.optimizer), scheduler)
    loggers = build_loggers(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    return datamodule, model, trainer


def train(cfg: DictConfig) -> dict:
    datamodule, model, trainer = build(cfg)
    result_path = open_run_dir(cfg, write_config=trainer.is_global_zero) / "result.json"
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:
        logger.log_hyperparams(resolved)

    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule)
        final = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    finally:
        finish_wandb(trainer.loggers)  # the next job of a sweep in this process must start a run of its own
    wall_time = time.perf_counter() - start

    history = model.history
    result = {
        "task": cfg.task,
        "arch": cfg.arch_name,
        "dataset": cfg.dataset_name,
        "basis": cfg.dataset.get("basis"),
        "direction": resolved["dataset"].get("direction"),
        "seed": cfg.seed,
        "train_acc": history[-1]["train/acc"] if history else None,
        "train_loss": history[-1]["train/loss"] if history else None,
        "test_acc": round(final["test/acc"], 6),
        "test_loss": round(final["test/loss"], 6),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "wall_time_s": round(wall_time, 3),
        "world_size": trainer.world_size,
        "device": str(trainer.strategy.root_device),
        "history": history,
        "versions": package_versions(),
        "machine": machine(),
    }
    if trainer.is_global_zero:
        write_json_atomic(result_path, result)
        log.info(
            "%s on %s %s: test acc %.4f (train %.4f) in %.1f s -> %s",
            result["arch"], result["basis"], result["direction"], result["test_acc"],
            result["train_acc"] or float("nan"), wall_time, result_path,
        )
    return result
