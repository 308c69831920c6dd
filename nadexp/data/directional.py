"""The directional dataset D(v) (protocol section 1.1): x = y (eps / 2) v + P_perp(sigma n), n ~ N(0, I), P_perp =
I - v v^T, so <x, v> = +-eps/2 exactly and the noise has variance sigma^2 orthogonally to v; class 1 is y = +1."""

from dataclasses import dataclass

import numpy as np
import torch

from nadexp.data.bases import direction_vector
from nadexp.data.settings import DirectionalSettings


@dataclass
class DirectionalDataset(DirectionalSettings):
    """D(v) as its settings describe it (checked on construction), drawn split by split."""

    def vector(self, device=None) -> torch.Tensor:
        phase = self.fourier_phase
        basis, nads = (self.basis, self.direction, self.shape, self.basis_seed), self._nad_array
        return direction_vector(*basis, nads, device=device, fourier_phase=phase)

    def sample(self, split: str, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``n_train`` or ``n_test`` samples of a split: images (N, C, H, W) and labels (N,), drawn on the CPU and
        moved to ``device``, so one seed gives bitwise the same data on every device."""
        size = {"train": self.n_train, "test": self.n_test}[split]
        # Train and test come from independent streams, so resizing one split leaves the other unchanged.
        stream = np.random.SeedSequence([self.seed, ("train", "test").index(split)]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(stream))
        v = self.vector().flatten()
        noise = self.sigma * torch.randn(size, v.numel(), generator=generator)
        noise -= (noise @ v)[:, None] * v
        labels = (torch.arange(size) % 2)[torch.randperm(size, generator=generator)]
        signs = 2.0 * labels - 1.0
        images = noise + (self.eps / 2) * signs[:, None] * v
        return images.reshape(size, *self.shape).to(device), labels.to(device)
