"""Dropout whose masks follow from the run's own key, the training step and the position alone: a hash (splitmix64)
of (key, step, layer, element) in integer tensor ops that run the same alone, under vmap and on any device, so a
sweep's cell draws the same masks whatever K and cells it is stacked with. The key: (seed, basis, direction), rank."""

import hashlib
import math

import torch
import torch.nn.functional as F
from torch import nn

DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
MASK_64 = (1 << 64) - 1


def _mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (wrapping arithmetic; shifts made logical by masking)."""
    x = x ^ ((x >> 30) & ((1 << 34) - 1))
    x = x * -4658895280553007687  # 0xbf58476d1ce4e5b9 as int64
    x = x ^ ((x >> 27) & ((1 << 37) - 1))
    x = x * -7723592293110705685  # 0x94d049bb133111eb as int64
    return x ^ ((x >> 31) & ((1 << 33) - 1))


def _int64(value: int) -> int:
    value &= MASK_64
    return value - (1 << 64) if value >= 1 << 63 else value


class Draws:
    """What a network's keyed dropouts draw from: ``key`` (an int, or a (K,)-batched tensor inside vmap) and ``step``."""

    def __init__(self, key: int | None = None):
        self.base, self.key, self.step = key, key, 0

    def on_rank(self, rank: int) -> None:
        """A DDP rank's own masks: rank 0 keeps the run's key, rank r > 0 draws from a key of its own."""
        self.key = self.base if rank == 0 or self.base is None else _int64(self.base + rank * 0x9E3779B97F4A7C15)


class KeyedDropout(nn.Module):
    """nn.Dropout (``channels``: Dropout1d/2d/3d, one draw per channel) with a keyed mask; with no key set (a
    network used outside nadexp's training) it is torch's own dropout."""

    def __init__(self, p: float, channels: bool, layer: int, draws: Draws):
        super().__init__()
        self.p, self.channels, self.layer, self.draws = p, channels, layer, draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        key = self.draws.key
        if key is None:
            dropout = {3: F.dropout1d, 4: F.dropout2d, 5: F.dropout3d}[x.dim()] if self.channels else F.dropout
            return dropout(x, self.p, True)
        shape = (*x.shape[:2], *[1] * (x.dim() - 2)) if self.channels else x.shape
        counter = torch.arange(math.prod(shape), device=x.device).view(shape)
        salt = _int64(((self.draws.step << 20) + self.layer) * 0x9E3779B97F4A7C15)  # the golden-ratio increment
        key = key if isinstance(key, torch.Tensor) else torch.tensor(key, device=x.device)
        bits = _mix(_mix(key + salt) + counter)
        uniform = ((bits >> 40) & ((1 << 24) - 1)).float() / (1 << 24)
        return x * ((uniform >= self.p).to(x.dtype) / (1 - self.p))


def key_of(cfg) -> int:
    """A training run's key: its seed, basis and direction (a cell of a sweep is one such run)."""
    dataset = cfg.get("dataset") or {}
    identity = repr((cfg.get("seed"), dataset.get("basis"), list(dataset.get("direction") or [])))
    return _int64(int(hashlib.sha256(identity.encode()).hexdigest()[:16], 16))


def keyed(net: nn.Module, key: int) -> nn.Module:
    """``net`` with its dropout layers keyed by ``key`` (in place); ``net.keyed_draws`` holds their key and step."""
    draws = Draws(key)
    for layer, (name, module) in enumerate([(n, m) for n, m in net.named_modules() if type(m) in DROPOUTS]):
        parent, _, child = name.rpartition(".")
        replacement = KeyedDropout(module.p, type(module) is not nn.Dropout, layer, draws)
        setattr(net.get_submodule(parent) if parent else net, child, replacement)
    net.keyed_draws = draws
    return net


def draws_of(net: nn.Module) -> Draws | None:
    """The key and step of ``net``'s keyed dropouts (None: it has none, or was not keyed)."""
    return getattr(net, "keyed_draws", None)
