"""result.json: what a finished run leaves behind, written atomically so a killed run leaves none."""

import csv
import io
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from nadexp.errors import ConfigError

PACKAGES = ("nadexp", "torch", "torchvision", "pytorch-lightning", "hydra-core", "omegaconf", "wandb", "numpy")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine() -> dict[str, str]:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_threads": str(torch.get_num_threads())}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_json_atomic(path: Path, payload: dict) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def write_csv_atomic(path: Path, columns, rows) -> None:
    """rows (dicts) as a CSV of ``columns``; keys outside them are left out."""
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, table.getvalue())


def write_text_atomic(path: Path, text: str) -> None:
    """Readers (and parallel jobs of one sweep) see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


RESULT_DEFINING = ("arch", "dataset", "optimizer", "scheduler", "seed", "trainer")
# Settings that do not change the numbers: display, paths, download permission, evaluation batch size.
NOT_RESULT_DEFINING = {
    "trainer": ("enable_progress_bar", "enable_model_summary", "log_every_n_steps", "default_root_dir"),
    "dataset": ("data_dir", "download", "eval_batch_size"),
}


def result_defining(config: dict, dataset_ignore=()) -> dict:
    """The parts of a resolved config that decide a run's numbers (not its loggers or paths)."""
    kept = {key: config.get(key) for key in RESULT_DEFINING}
    for group, ignored in NOT_RESULT_DEFINING.items():
        ignored = (*ignored, *dataset_ignore) if group == "dataset" else ignored
        kept[group] = {k: v for k, v in (kept[group] or {}).items() if k not in ignored}
    return kept


def _dotted(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_same_config(cfg: DictConfig, output_dir: Path, dataset_ignore=()) -> None:
    """Resuming into ``output_dir`` is only safe when its config.yaml describes the same results."""
    saved = Path(output_dir) / "config.yaml"
    if not saved.is_file():
        return
    ours = result_defining(OmegaConf.to_container(cfg, resolve=True), dataset_ignore)
    theirs = result_defining(OmegaConf.to_container(OmegaConf.load(saved)), dataset_ignore)
    if ours != theirs:
        ours, theirs = _dotted(ours), _dotted(theirs)
        changed = sorted(key for key in set(ours) | set(theirs) if ours.get(key, "?") != theirs.get(key, "?"))
        raise ConfigError(f"hydra.run.dir={output_dir} holds results of a different config (settings that "
                          f"differ: {', '.join(changed)}; see its config.yaml): choose another run directory")


def open_run_dir(cfg: DictConfig, write_config: bool = True) -> Path:
    """The run directory of ``cfg``, with its resolved config.yaml.

    A directory that holds a finished run's result.json is refused, unless ``resume: true``, where the
    caller finds the result there and reports it; with ``resume``, a directory of another config is refused.
    """
    output_dir = Path(cfg.paths.output_dir)
    finished = (output_dir / "result.json").exists()
    if cfg.get("resume") and (finished or (output_dir / "checkpoints").is_dir()):  # something to resume
        check_same_config(cfg, output_dir)
    elif finished:
        raise ConfigError(f"hydra.run.dir={output_dir} already holds a finished run's result.json; choose another run directory")
    if write_config and not finished:
        write_text_atomic(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    return output_dir
