"""Unit directions v in R^(C x H x W), addressed by basis name and a list of integers. Fourier (docs/configs.md): ``[kx, ky]`` (0 <= kx < W
along columns, 0 <= ky < H along rows) is the unit wave cos or sin(2 pi (ky row / H + kx col / W)) in every channel (the cosine where the
sine vanishes: DC, Nyquist); conjugate cells give one direction. NAD: ``[i]`` is the i-th NAD of an estimate."""

import math

import torch

from nadexp.data.settings import validate_direction


def fourier_direction(kx: int, ky: int, shape, dtype=torch.float32, device=None, phase: str = "sine") -> torch.Tensor:
    channels, height, width = shape
    rows = torch.arange(height, dtype=torch.float64)[:, None]
    cols = torch.arange(width, dtype=torch.float64)[None, :]
    angle = 2 * math.pi * (ky * rows / height + kx * cols / width)
    self_conjugate = (2 * kx) % width == 0 and (2 * ky) % height == 0
    wave = torch.cos(angle) if self_conjugate or phase == "cosine" else torch.sin(angle)
    v = wave.expand(channels, height, width)
    return (v / v.norm()).to(dtype=dtype, device=device)


def pixel_direction(row: int, col: int, shape, dtype=torch.float32, device=None) -> torch.Tensor:
    channels = shape[0]
    v = torch.zeros(shape, dtype=dtype, device=device)
    v[:, row, col] = 1 / math.sqrt(channels)
    return v


def random_direction(index: int, shape, seed: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Column ``index`` of a random orthogonal matrix (QR of a seeded Gaussian matrix)."""
    dim, generator = math.prod(shape), torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # makes the basis a unique function of the seed
    return q[:, index].reshape(shape).to(dtype=dtype, device=device)


def direction_vector(
    basis: str, direction, shape, basis_seed=0, nads=None, dtype=torch.float32, device=None, fourier_phase="sine"
) -> torch.Tensor:
    """The unit vector of shape ``shape`` that ``direction`` addresses in ``basis``."""
    validate_direction(basis, direction, shape, nads)
    if basis == "fourier":
        return fourier_direction(*direction, shape, dtype, device, fourier_phase)
    if basis == "pixel":
        return pixel_direction(*direction, shape, dtype, device)
    if basis == "nad":
        v = torch.as_tensor(nads[direction[0]], dtype=torch.float64)
        return (v / v.norm()).to(dtype=dtype, device=device)
    return random_direction(direction[0], shape, basis_seed, dtype, device)
