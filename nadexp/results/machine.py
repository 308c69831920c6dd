"""The machine a result came from: Python's and the packages' versions, the CPU (model, vector extensions, the
kernels torch picks, threads) and the GPU: numbers measured on one machine say little about another."""

import platform
from importlib import metadata
from pathlib import Path

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
    import torch

    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), model)
        flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    extensions = "/".join(name for name in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if name in flags) or "?"
    return f"{model}, {extensions}, torch kernels {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads"


def machine(device=None) -> dict[str, str]:
    """The platform, CPU and, with CUDA, the GPU that ran: ``device`` (cuda:N) if given, else the current one."""
    import torch

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpu": cpu_description()}
    info["cpu_threads"] = str(torch.get_num_threads())
    if torch.cuda.is_available():
        ran = torch.device(device) if device is not None and str(device).startswith("cuda") else None
        info["gpu"] = torch.cuda.get_device_name(ran if ran is not None else torch.cuda.current_device())
    return info
