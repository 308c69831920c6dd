"""Lightning loggers from the `logger` config group, shared by every task: a run's config (arch, task, basis and seed
at its top), summary metrics, figures and tables, each where its logger takes them (W&B, TensorBoard, CSV)."""

import logging
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.loggers import WandbLogger as LightningWandbLogger

from nadexp.run.tasks import check_credentials

log = logging.getLogger(__name__)


class WandbLogger(LightningWandbLogger):
    """Lightning's W&B logger with W&B's own console output off unless ``verbose``: finish_loggers prints one
    line per run instead (where its files are, and how to upload them)."""

    def __init__(self, *args, verbose: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        # Lightning passes anonymous=None, which W&B warns about on every run; leaving it out changes nothing.
        self._wandb_init.pop("anonymous", None)
        if not verbose:
            settings = self._wandb_init.get("settings") or {}
            if isinstance(settings, dict):
                self._wandb_init["settings"] = {"silent": True, **settings}


def build_loggers(cfg: DictConfig) -> list:
    check_credentials(cfg)
    return [instantiate(c) for c in cfg.logger.values()] if cfg.get("logger") else []


def run_config(cfg: DictConfig) -> dict:
    """The resolved config; the keys runs are compared by are at its top: arch_name, task, seed, and basis (the
    sweep's, or a training run's dataset's)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    return {**config, "basis": (config.get("sweep") or {}).get("basis") or (config.get("dataset") or {}).get("basis")}


def log_config(loggers, cfg: DictConfig) -> None:
    for logger in loggers:
        logger.log_hyperparams(run_config(cfg))


def log_cell(loggers, row: dict, done: int, total: int) -> None:
    """One finished cell of a sweep (its numeric row), as the sweep runs: the dashboard shows the progress."""
    metrics = {f"cell/{key}": value for key, value in row.items() if isinstance(value, (int, float))}
    metrics.update({"cells_done": done, "progress": done / total})
    for logger in loggers:
        logger.log_metrics(metrics, step=done)


def log_outcome(loggers, cfg: DictConfig, summary: dict, images: dict | None = None, tables: dict | None = None) -> None:
    """A finished run: ``summary`` ({key: number}) as metrics and run summary, ``images`` ({key: png path}) and
    ``tables`` ({key: (columns, rows as lists)}) where the logger takes them."""
    summary = {key: value for key, value in summary.items() if isinstance(value, (int, float))}  # no None
    for logger in loggers:
        if isinstance(logger, LightningWandbLogger):
            logger.experiment.summary.update(summary)
            for key, path in (images or {}).items():
                logger.log_image(key=key, images=[str(path)])
            for key, (columns, rows) in (tables or {}).items():
                logger.log_table(key=key, columns=list(columns), data=rows)
        elif isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(run_config(cfg), metrics=summary)  # the hparams tab: config beside its metrics
            for key, path in (images or {}).items():
                logger.experiment.add_image(key, _read_png(path), dataformats="HWC")
            for key, (columns, rows) in (tables or {}).items():
                logger.experiment.add_text(key, _markdown_table(columns, rows))
        else:
            logger.log_metrics(summary)
        logger.save()


def finish_loggers(loggers) -> None:
    """Close the run of each logger; a W&B run prints one line: where it is and how to upload it."""
    for logger in loggers:
        if isinstance(logger, LightningWandbLogger) and logger._experiment is not None:
            run, run_dir = logger.experiment, Path(logger.experiment.dir).parent
            run.finish()
            if logger._offline:
                log.info("W&B offline run %s: upload it with `wandb sync %s`", run.id, run_dir)
            else:
                log.info("W&B run %s: %s", run.id, run.url)
        elif isinstance(logger, TensorBoardLogger):
            logger.finalize("success")


def _read_png(path) -> np.ndarray:
    import matplotlib.image

    image = matplotlib.image.imread(str(path))  # floats in 0..1, RGBA
    return (image[..., :3] * 255).round().astype(np.uint8)


def _markdown_table(columns, rows) -> str:
    lines = [columns, ["---"] * len(columns), *rows]  # header, alignment, rows
    return "\n".join("| " + " | ".join("" if value is None else str(value) for value in line) + " |" for line in lines)
