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


def open_run_dir(cfg: DictConfig, write_config: bool = True) -> Path:
    """The run directory of ``cfg``, with its resolved config.yaml; refuses one that holds a finished run."""
    output_dir = Path(cfg.paths.output_dir)
    if (output_dir / "result.json").exists():
        raise ConfigError(f"hydra.run.dir={output_dir} already holds a finished run's result.json; choose another run directory")
    if write_config:
        output_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
    return output_dir
