"""The directional dataset D(v) (NAD paper, section 1.1 of the protocol).

x = y * (eps / 2) * v + P_perp(sigma * n), with n ~ N(0, I) and P_perp = I - v v^T, so <x, v> = +-eps/2
exactly and the noise has variance sigma^2 along every direction orthogonal to v. Class index 1 is y = +1.
"""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from nadexp.data.bases import FOURIER_PHASES, direction_vector, validate_direction
from nadexp.errors import ConfigError
from nadexp.estimators.nads import load_nads


@dataclass
class DirectionalDataset:
    """What D(v) is: the direction, the constants and the seed. Validated on construction."""

    basis: str = "fourier"  # fourier | pixel | random | nad
    direction: list[int] = field(default_factory=lambda: [1, 0])
    eps: float = 2.0  # the published figures; the authors' code used 1
    sigma: float = 3.0
    n_train: int = 10_000
    n_test: int = 10_000
    shape: list[int] = field(default_factory=lambda: [1, 32, 32])
    seed: int = 0
    basis_seed: int = 0
    fourier_phase: str = "cosine"  # basis=fourier: cosine | sine (the authors' code; cosine where the sine vanishes)
    nads: Optional[str] = None  # basis=nad: a nads.npy, or the run directory of an estimator=nads run

    num_classes = 2

    def __post_init__(self):
        self.shape, self.direction = list(self.shape), list(self.direction)  # plain lists, also from a config
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ConfigError(f"dataset.shape must be [channels, height, width] of positive integers, got {list(self.shape)}")
        if not self.eps > 0:
            raise ConfigError(f"dataset.eps must be > 0, got {self.eps}")
        if not self.sigma >= 0:
            raise ConfigError(f"dataset.sigma must be >= 0, got {self.sigma}")
        for name in ("n_train", "n_test"):
            if getattr(self, name) < 2:
                raise ConfigError(f"dataset.{name} must be >= 2 so that both classes appear, got {getattr(self, name)}")
        if self.fourier_phase not in FOURIER_PHASES:
            raise ConfigError(f"dataset.fourier_phase={self.fourier_phase!r} is unknown: choose one of {', '.join(FOURIER_PHASES)}")
        self._nad_array = None
        if self.basis == "nad":
            if not self.nads:
                raise ConfigError("dataset.basis=nad needs dataset.nads: the path of a nads.npy or of an estimator=nads run directory")
            self._nad_array = load_nads(self.nads, self.shape)
        validate_direction(self.basis, self.direction, self.shape, self._nad_array)

    def vector(self, device=None) -> torch.Tensor:
        return direction_vector(self.basis, self.direction, self.shape, self.basis_seed, self._nad_array, device=device,
                                fourier_phase=self.fourier_phase)

    def sample(self, split: str, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``n_train`` or ``n_test`` samples of a split at once: images (N, C, H, W) and labels (N,)."""
        size = {"train": self.n_train, "test": self.n_test}[split]
        # Train and test come from independent streams, so resizing one split leaves the other unchanged.
        stream = np.random.SeedSequence([self.seed, ("train", "test").index(split)]).generate_state(1)[0]
        generator = torch.Generator(device=device).manual_seed(int(stream))
        v = self.vector(device).flatten()
        noise = self.sigma * torch.randn(size, v.numel(), generator=generator, device=device)
        noise -= (noise @ v)[:, None] * v
        labels = (torch.arange(size, device=device) % 2)[torch.randperm(size, generator=generator, device=device)]
        signs = 2.0 * labels - 1.0
        images = noise + (self.eps / 2) * signs[:, None] * v
        return images.reshape(size, *self.shape), labels
