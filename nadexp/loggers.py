"""Lightning loggers from the `logger` config group, shared by training runs and estimators."""

import netrc
import os
from urllib.parse import urlparse

from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import WandbLogger

from nadexp.errors import ConfigError


def build_loggers(cfg: DictConfig) -> list:
    check_credentials(cfg)
    return [instantiate(c) for c in cfg.logger.values()] if cfg.get("logger") else []


def check_credentials(cfg: DictConfig) -> None:
    """Online W&B without credentials would prompt in a terminal; refuse up front instead."""
    if not (cfg.get("logger") and "wandb" in cfg.logger and not cfg.logger.wandb.get("offline", True)):
        return
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


def log_outcome(loggers, metrics: dict | None = None, images: dict | None = None, tables: dict | None = None) -> None:
    """Metrics to every logger; images ({key: png path}) and tables ({key: (columns, rows)}) to those that take them (W&B)."""
    for logger in loggers:
        if metrics:
            logger.log_metrics(metrics)
        if hasattr(logger, "log_image") and hasattr(logger, "log_table"):
            for key, path in (images or {}).items():
                logger.log_image(key=key, images=[str(path)])
            for key, (columns, rows) in (tables or {}).items():
                logger.log_table(key=key, columns=list(columns), data=rows)
        logger.save()


def finish_wandb(loggers) -> None:
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        wandb.finish()
