"""The ``estimator.device`` option shared by every estimator."""

import torch

from nadexp.errors import ConfigError


class OnDevice:
    """For estimator dataclasses with a ``device`` field: auto | cpu | cuda | cuda:N."""

    device: str

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            return torch.device(self.device)
        except RuntimeError as error:
            raise ConfigError(f"estimator.device={self.device!r} is not a device: use auto, cpu, cuda or cuda:N") from error
