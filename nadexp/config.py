"""Typed schemas of the dataset configs (``<name>_schema`` first in a conf/dataset file's defaults: Hydra rejects a
misspelt key or a wrong type while it composes), and the composed config for notebooks, tests and benchmarks."""

import tempfile
from dataclasses import field, fields, make_dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from nadexp.data.settings import CIFARSettings, DirectionalSettings
from nadexp.errors import ConfigError, did_you_mean
from nadexp.run.identity import CONFIG_DIR, register_resolvers
from nadexp.run.tasks import TASKS


def data_module_schema(name: str, spec: type, target: str, *extra) -> type:
    """A dataset's fields plus the data module's own (target, batch sizes) as one typed schema."""
    sizes = [("batch_size", int, field(default=128)), ("eval_batch_size", int, field(default=1024))]
    return make_dataclass(name, [("_target_", str, field(default=target)), *sizes, *extra], bases=(spec,))


SCHEMAS = {
    "directional_schema": data_module_schema("DirectionalDataConfig", DirectionalSettings, "nadexp.data.datamodule.DirectionalDataModule"),
    "cifar_schema": data_module_schema("CIFARDataConfig", CIFARSettings, "nadexp.data.datamodule.CIFARDataModule", ("seed", int, 0)),
}


def check_dataset(cfg: DictConfig, task: str) -> None:
    """The dataset's settings, checked without torch when ``task`` reads the dataset (ConfigError names the
    option): a bad value is reported before the run imports its libraries."""
    if "dataset" not in TASKS[task].reads or not cfg.get("dataset"):
        return
    schema = next((schema for schema in SCHEMAS.values() if schema._target_ == cfg.dataset.get("_target_")), None)
    if schema is not None:
        settings = schema.__bases__[0]  # the dataset's settings, without the data module's own fields
        values, known = OmegaConf.to_container(cfg.dataset, resolve=True), [f.name for f in fields(schema)]
        for key in values.keys() - set(known):  # added with +dataset.<key>: the typed schema refuses it only without +
            hint = did_you_mean(key, known, "dataset.")  # as Hydra's error for the same key without + says it
            raise ConfigError(f"dataset.{key} is not a setting of dataset{hint} (every setting: nadexp --cfg job)")
        settings(**{f.name: values[f.name] for f in fields(settings) if f.name in values})


def register_configs() -> None:
    """The typed dataset schemas and the resolvers that name run directories (nadexp.run.identity)."""
    register_resolvers()
    for name, schema in SCHEMAS.items():
        ConfigStore.instance().store(group="dataset", name=name, node=schema)


def compose_config(overrides=(), output_dir=None) -> DictConfig:
    """The config `python run.py <overrides>` would run, with ``output_dir`` as its run directory (Hydra's runtime
    values resolve as in a real run; the returned config no longer holds the ``hydra`` node)."""
    register_configs()
    output_dir = str(Path(output_dir or tempfile.mkdtemp(prefix="nadexp-")).resolve())
    users = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    GlobalHydra.instance().clear()  # a notebook's own Hydra session is set aside for this one, then put back
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            cfg = compose("config", return_hydra_config=True, overrides=[*overrides, f"hydra.runtime.output_dir={output_dir}"])
    finally:
        if users is not None:
            GlobalHydra.instance().initialize(users)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg
