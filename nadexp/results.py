"""result.json: what a finished run leaves behind, written atomically so a killed run leaves none."""

import csv
import io
import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from nadexp.errors import ConfigError
from nadexp.identity import check_same_config
from nadexp.tasks import decide_task

PACKAGES = ("nadexp", "torch", "torchvision", "pytorch-lightning", "hydra-core", "omegaconf", "wandb", "numpy")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_description() -> str:
    """The CPU model, its vector extensions and the kernels torch picks for them, and the threads used: numbers
    measured on one CPU (AMX, AVX-512, AVX2 only) say little about another."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), model)
        flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    extensions = "/".join(name for name in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if name in flags) or "?"
    return (f"{model}, {extensions}, torch kernels {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads")


def machine() -> dict[str, str]:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu": cpu_description(), "cpu_threads": str(torch.get_num_threads())}
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


UMASK = os.umask(0o022)
os.umask(UMASK)


def write_text_atomic(path: Path, text: str) -> None:
    """Readers (and parallel jobs of one sweep) see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # as open() would make it (mkstemp makes it private to its owner)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def open_run_dir(cfg: DictConfig, write_config: bool = True) -> Path:
    """The run directory of ``cfg``, with its resolved config.yaml; called once every check has passed.

    A sweep always resumes its directory (its cells); another task resumes only with ``resume: true``, where
    the caller reports the result it finds there; otherwise a directory with a finished run's result.json is
    refused. A directory of another config is never resumed into.
    """
    output_dir = Path(cfg.paths.output_dir)
    finished = (output_dir / "result.json").exists()
    sweep = decide_task(cfg) == "sweep"
    if sweep or cfg.get("resume"):
        check_same_config(cfg, output_dir)
    elif finished:
        raise ConfigError(f"hydra.run.dir={output_dir} already holds a finished run's result.json; choose another run directory")
    if write_config and (sweep or not finished):
        write_text_atomic(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    return output_dir


def remove_if_unused(output_dir) -> bool:
    """Remove a run directory that holds only what Hydra writes before a run starts (.hydra/, the job log):
    after a config error it is no run, and later commands should not find it. True if it was removed."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return False
    entries = list(output_dir.iterdir())
    if any(not (entry.name == ".hydra" or (entry.suffix == ".log" and entry.is_file())) for entry in entries):
        return False
    shutil.rmtree(output_dir, ignore_errors=True)
    return True
