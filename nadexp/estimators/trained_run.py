"""A training run that an estimator analyses (estimator.run_dir): its saved config, data, network and weights."""

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nadexp.errors import ConfigError


def training_run_config(run_dir, cfg: DictConfig) -> DictConfig:
    """The saved config of the training run in ``run_dir``, checked to be of ``cfg``'s arch."""
    saved = Path(run_dir) / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"estimator.run_dir={str(run_dir)!r} has no config.yaml: give the directory of a training run")
    source = OmegaConf.load(saved)
    if not all(key in source for key in ("arch", "dataset", "arch_name")):
        raise ConfigError(f"estimator.run_dir={str(run_dir)!r}: its config.yaml is not a training run's (no arch or dataset)")
    if source.get("arch_name") != cfg.arch_name:
        holds = f"estimator.run_dir={str(run_dir)!r} holds a {source.get('arch_name')} run"
        raise ConfigError(f"{holds}, but arch={cfg.arch_name}: add arch={source.get('arch_name')}")
    return source


def data_and_net_factory(source: DictConfig):
    """The data module of ``source`` (a run's config) and a factory of its network."""
    datamodule = instantiate(source.dataset)
    return datamodule, lambda: instantiate(source.arch, input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The network's state dict from a Lightning checkpoint of the Classifier (keys without ``net.``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    except Exception as error:  # a truncated or foreign file: name it
        raise ConfigError(f"{path} is not a readable checkpoint ({type(error).__name__}: {error})") from None
    return {key.removeprefix("net."): value for key, value in state.items()}
