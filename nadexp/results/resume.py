"""Resuming a run folder: a finished run is reported or refused, a failed one starts again, and a folder of
another config is never resumed into."""

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nadexp.errors import ConfigError
from nadexp.results.atomic import write_text_atomic
from nadexp.results.schema import UnreadableRecord, is_failed, read_record, set_aside
from nadexp.run.identity import differing, result_settings

log = logging.getLogger(__name__)


def open_run_dir(cfg: DictConfig, task: str, write_config: bool = True) -> Path:
    """The run directory of ``cfg``, a ``task`` run, with its resolved config.yaml, once every check has passed. A
    sweep always resumes it; another task only with ``resume: true`` (else a finished run there is refused); a failed
    or unreadable result starts again; a directory of another config is never resumed into."""
    output_dir = Path(cfg.paths.output_dir)
    earlier, record = output_dir / "result.json", None
    if earlier.is_file():
        try:
            record = read_record(earlier)
        except UnreadableRecord as error:
            set_aside(earlier, error, then="the run starts again")
    if is_failed(record):
        log.info("%s failed earlier (%s): starting it again", output_dir, record.get("reason"))
    finished = record is not None and not is_failed(record)
    sweep = task == "sweep"
    if sweep or cfg.get("resume"):
        check_same_config(cfg, output_dir, task)
    elif finished:
        fix = "add resume=true to report that result (it also continues an unfinished run from its last checkpoint)"
        raise ConfigError(f"hydra.run.dir={output_dir} already holds a finished run's result.json: {fix}, or give another hydra.run.dir")
    if write_config and (sweep or not finished):
        write_text_atomic(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    return output_dir


def check_same_config(cfg: DictConfig, output_dir: Path, task: str) -> None:
    """Resuming into ``output_dir`` is only safe when its config.yaml describes the same results."""
    saved = Path(output_dir) / "config.yaml"
    if not saved.is_file():
        return
    changed = differing(result_settings(cfg, task), result_settings(OmegaConf.load(saved), task))
    if changed:
        differ = f"settings that differ: {', '.join(sorted(changed))}; see its config.yaml"
        raise ConfigError(f"hydra.run.dir={output_dir} holds results of a different config ({differ}): choose another run directory")
