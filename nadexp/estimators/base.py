"""What every estimator is: a dataclass that `estimator=<name>` instantiates, with a device and two steps:
``prepare(cfg)`` makes every check that can fail on the config and writes nothing; ``run(run, prepared)`` estimates,
writes and logs its files in the run's folder, and returns its fields of result.json (``summary``, ``objective``)."""

from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig

from nadexp.devices import auto_device, job_index
from nadexp.errors import ConfigError

if TYPE_CHECKING:
    from nadexp.run.context import Run


class Estimator:
    """For estimator dataclasses with a ``device`` field: auto | cpu | cuda | cuda:N. auto takes a GPU when one is
    visible, job i of a local multirun GPU i (modulo the number of GPUs)."""

    name: str
    device: str

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return auto_device(job_index())
        try:
            device = torch.device(self.device)
        except RuntimeError as error:
            raise ConfigError(f"estimator.device={self.device!r} is not a device: use auto, cpu, cuda or cuda:N") from error
        if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
            visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise ConfigError(f"estimator.device={self.device} is not visible here ({visible} GPUs): use auto or cpu")
        return device

    def prepare(self, cfg: DictConfig) -> Any:
        raise NotImplementedError

    def run(self, run: "Run", prepared: Any) -> dict:
        raise NotImplementedError
