"""One training run: compose -> instantiate -> fit -> test -> result.json (the run-directory contract)."""

import logging
import netrc
import os
import time
from pathlib import Path
from urllib.parse import urlparse

import pytorch_lightning as pl
from hydra.utils import instantiate
from pytorch_lightning.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from nadexp.errors import ConfigError
from nadexp.results import machine, package_versions, write_json_atomic
from nadexp.training.module import Classifier

log = logging.getLogger(__name__)


def build(cfg: DictConfig):
    """The datamodule, LightningModule and Trainer that ``cfg`` describes (no training yet)."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.dataset)
    net = instantiate(cfg.arch, input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    model = Classifier(net, instantiate(cfg.optimizer), scheduler)
    if cfg.get("logger") and "wandb" in cfg.logger and not cfg.logger.wandb.get("offline", True):
        _require_wandb_credentials()
    loggers = [instantiate(c) for c in cfg.logger.values()] if cfg.get("logger") else []
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    return datamodule, model, trainer


def train(cfg: DictConfig) -> dict:
    output_dir = Path(cfg.paths.output_dir)
    result_path = output_dir / "result.json"
    if result_path.exists():
        raise ConfigError(f"hydra.run.dir={output_dir} already holds a finished run's result.json; choose another run directory")

    datamodule, model, trainer = build(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if trainer.is_global_zero:
        OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    for logger in trainer.loggers:
        logger.log_hyperparams(resolved)

    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule)
        final = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    finally:
        _finish_wandb(trainer)  # the next job of a sweep in this process must start a run of its own
    wall_time = time.perf_counter() - start

    history = model.history
    result = {
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


def _require_wandb_credentials() -> None:
    """Online W&B without credentials would prompt in a terminal; refuse up front instead."""
    if os.environ.get("WANDB_API_KEY"):
        return
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        if netrc.netrc().authenticators(host):
            return
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    raise ConfigError(
        "logger.wandb.offline=false needs W&B credentials: run `wandb login` or set WANDB_API_KEY "
        "(or keep the default logger.wandb.offline=true and `wandb sync` later)"
    )


def _finish_wandb(trainer: pl.Trainer) -> None:
    if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
        import wandb

        wandb.finish()
