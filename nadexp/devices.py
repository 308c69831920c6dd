"""Where a run computes and in what precision: the GPU that ``auto`` picks, which rank writes, the TF32 policy (a
setting of every run's identity: it changes a GPU's float32 results) and how closely two computations must agree."""

import os
from contextlib import contextmanager

import torch

# Where a process's rank is read: torchrun's RANK, SLURM's task id, Lightning's local launcher's LOCAL_RANK and
# NODE_RANK (it sets no RANK), and Lightning's own record of the global rank once a Trainer has set it.
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of its job (the only one that writes a run's files), in any launcher."""
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) != 0:
        return False
    return all(int(os.environ.get(name) or 0) == 0 for name in RANK_VARIABLES)


def job_index() -> int:
    """This job's number in a Hydra multirun (0 outside one): local jobs spread over the visible GPUs by it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return 0
    number = OmegaConf.select(HydraConfig.get(), "job.num", default=0, throw_on_missing=False)
    return number if isinstance(number, int) else 0


def auto_device(index: int = 0) -> torch.device:
    """``cuda:{index % visible GPUs}`` when CUDA is available, else the CPU: shard i of a sweep, or job i of a
    local multirun, takes its own GPU (under SLURM each task sees one GPU, so all take cuda:0, theirs)."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(f"cuda:{index % torch.cuda.device_count()}")


def apply_tf32(enabled: bool) -> None:
    """TF32 (10-bit mantissa) in float32 matrix products and convolutions on Ampere and later GPUs, on or off.
    PyTorch's own default differs between the two (convolutions on, matrix products off); nadexp sets both."""
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


@contextmanager
def tf32_kept():
    """The TF32 flags as they were before, whatever the code inside sets."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@contextmanager
def full_float32():
    """float32 products in full precision for what is data rather than a network (the CIFAR variants' flips and
    poison), whatever ``tf32`` says for the network's own products."""
    with tf32_kept():
        apply_tf32(False)
        yield


def tf32_enabled() -> bool:
    return bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)


def agreement_tolerance(dtype: torch.dtype, device) -> float:
    """The relative tolerance within which two computations of one network's outputs (side by side and one by
    one, on a device and on the CPU) agree in ``dtype`` on ``device``: float32 rounds at 6e-8 and 1e-3 leaves
    room for summation order; TF32 rounds a product's inputs at 5e-4, bfloat16 at 4e-3."""
    if dtype in (torch.bfloat16, torch.float16):
        return 5e-2
    if torch.device(device).type == "cuda" and tf32_enabled() and dtype == torch.float32:
        return 1e-2
    return 1e-3


def agree(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, device) -> bool:
    """``got`` equals ``want`` (compared on the CPU) within `agreement_tolerance`, relative to want's scale."""
    got, want = got.detach().float().cpu(), want.detach().float().cpu()
    rtol = agreement_tolerance(dtype, device)
    return got.shape == want.shape and torch.allclose(got, want, rtol=rtol, atol=rtol * 1e-2 * float(want.abs().max()))
