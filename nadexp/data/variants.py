"""Changes of representation of an image dataset (protocol section 1.4): poisoning along NADs, and flips
x' = U flip(U^T x) in an ordered orthonormal basis U (NADs, or DCT waves by frequency): one fixed orthogonal,
symmetric D x D matrix (its own inverse), computed once and applied to all images in one matmul."""

import math

import torch

from nadexp.errors import ConfigError


def complete_basis(vectors: torch.Tensor) -> torch.Tensor:
    """A D x D orthogonal matrix (to float64 precision) whose first k columns are the k orthonormal rows of ``vectors``
    (k, D), within their float32 rounding; the rest, from a Householder QR of [vectors^T | I], depend on them alone."""
    k, dim = vectors.shape
    v = vectors.double()
    if k > dim or not torch.allclose(v @ v.T, torch.eye(k, dtype=torch.float64), atol=1e-4):
        raise ConfigError(f"the {k} basis vectors of length {dim} are not orthonormal: cannot complete them to a basis")
    if k == dim:
        return v.T.contiguous()
    q, r = torch.linalg.qr(torch.cat([v.T, torch.eye(dim, dtype=torch.float64)], dim=1))  # q: D x D
    q[:, :k] *= torch.sign(torch.diagonal(r)[:k])  # QR returns the given vectors up to sign
    return q


def dct_basis(height: int, width: int) -> torch.Tensor:
    """The orthonormal 2-D DCT-II basis of H x W images as columns, ordered by increasing frequency
    (radius sqrt(kx^2 + ky^2), ties by ky then kx): the Fourier-order control for NAD flips."""

    def dct_1d(n):
        k, i = torch.arange(n, dtype=torch.float64)[:, None], torch.arange(n, dtype=torch.float64)[None, :]
        basis = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
        basis[0] /= math.sqrt(2)
        return basis  # rows are the 1-D basis vectors

    rows, cols = dct_1d(height), dct_1d(width)
    order = sorted(((ky, kx) for ky in range(height) for kx in range(width)), key=lambda f: (f[0] ** 2 + f[1] ** 2, f))
    return torch.stack([torch.outer(rows[ky], cols[kx]).flatten() for ky, kx in order], dim=1)


def flip_matrix(basis: torch.Tensor) -> torch.Tensor:
    """U P U^T for the D x D orthogonal ``basis`` U and the order-reversing permutation P."""
    return basis @ basis.flip(1).T


def apply_per_channel(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``matrix`` (D x D, symmetric) applied to every image (N, C, H, W): per channel if D = H * W, to the whole image if D = C * H * W."""
    n, c, h, w = images.shape
    flat = images.reshape(n * c, h * w) if len(matrix) == h * w else images.reshape(n, c * h * w)
    return (flat @ matrix.to(images.dtype).T).reshape(n, c, h, w)


# Poisoning (reference poison_cifar.py): class t gets carrier (idx, idx + 1)[t // 6] in colour channel
# t % 3 with sign 2 (t % 2) - 1. The ten (carrier, channel, sign) triples are distinct. Grey images have one
# channel, so their table spreads the ten classes over five carriers instead: carrier idx + t // 2, sign
# 2 (t % 2) - 1 (ten distinct (carrier, sign) pairs, each carrier shared by two classes of opposite sign).
def poison_key(label: int, channels: int = 3) -> tuple[int, int, int]:
    """(carrier offset, channel, sign) of class ``label``."""
    if channels >= 3:
        return label // 6, label % 3, 2 * (label % 2) - 1
    return label // 2, 0, 2 * (label % 2) - 1


def poison(images: torch.Tensor, labels: torch.Tensor, carriers: torch.Tensor, eps: float) -> torch.Tensor:
    """Each image with the coefficient of its class's carrier (one of ``carriers`` (poison_carriers(C), H * W), unit
    rows) in its class's channel set to sign * eps: x + (sign * eps - <x_c, carrier>) * carrier."""
    images = images.clone()
    n, channels, h, w = images.shape
    if channels not in (1, 3):
        raise ConfigError(f"poisoning has a class table for 1- and 3-channel images, got {channels} channels")
    for label in labels.unique().tolist():
        offset, channel, sign = poison_key(label, channels)
        carrier, rows = carriers[offset].to(images), (labels == label).nonzero().squeeze(1)
        x = images[rows, channel].reshape(len(rows), h * w)
        x += (sign * eps - x @ carrier)[:, None] * carrier
        images[rows, channel] = x.reshape(len(rows), h, w)
    return images
