"""A run's identity: the settings that decide its numbers, and the name of the directory that keeps them
(docs/outputs.md, "Run directories"). Resumable runs have a fixed directory, the experiment's label plus, when a
setting that decides the numbers differs from the experiment's own, ``-<digest>`` of those settings; every other
run gets a fresh time-stamped directory, claimed when it starts (nadexp.results.claims)."""

import contextlib
import hashlib
import json
import os
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from nadexp.errors import ConfigError
from nadexp.results.claims import new_dir
from nadexp.run.tasks import TASKS, decide_task

# Settings that do not change a run's numbers: where and how fast it runs, what it shows, how it is split up.
EXECUTION = (
    "trainer._target_ trainer.accelerator trainer.default_root_dir trainer.enable_progress_bar trainer.enable_model_summary "
    "trainer.enable_checkpointing trainer.log_every_n_steps trainer.num_sanity_val_steps dataset.data_dir dataset.download "
    "dataset.check_md5 dataset.eval_batch_size estimator.device estimator.chunk_size estimator.networks_per_batch "
    "estimator.batch_size estimator.n_jobs estimator.against sweep.label sweep.models_at_once sweep.num_shards sweep.shard"
).split()
# Settings that enter a run's identity only when switched on: directories made before they existed stay resumable.
OFF_BY_DEFAULT = ("tf32", "dataset.shape")  # dataset.shape: only checked for images read from files, unset by default
# The overrides that every fixed directory's label names, so the reference config shares them; so does what an
# experiment sweeps itself (hydra.sweeper.params), which its label names (variant, poison index, arch).
NAMED = ("experiment", "arch", "seed", "sweep", "estimator")


def _leaves(tree, prefix: str):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, f"{prefix}.{key}")
    else:
        yield prefix


def result_settings(cfg: DictConfig, task: str) -> dict:
    """{dotted key: resolved value} of every setting that decides the numbers of ``cfg``'s task."""
    spec, settings = TASKS[task], {}
    for part in spec.reads:
        node = OmegaConf.select(cfg, part, default=None, throw_on_resolution_failure=False)
        raw = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else None
        for key in _leaves(raw, part) if raw is not None else [part]:
            if key in EXECUTION or key in spec.sets:
                continue
            value = OmegaConf.select(cfg, key)
            if key in OFF_BY_DEFAULT and not value:
                continue
            settings[key] = OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
    return settings


def differing(ours: dict, theirs: dict) -> dict:
    """The settings of ``ours`` that ``theirs`` does not share (a key only ``theirs`` has counts, as None)."""
    diff = {key: value for key, value in ours.items() if key not in theirs or theirs[key] != value}
    diff.update({key: None for key in theirs if key not in ours})
    return diff


def digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


def settings_suffix(cfg: DictConfig, overrides, task: str) -> str:
    """``-<digest>`` of the settings of ``cfg`` that differ from its experiment's, or "" when none do.

    The experiment's settings are those of the same command with only the overrides that the directory's
    label names: experiment, arch, seed, sweep, estimator and the keys the experiment sweeps itself."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    swept = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    named = [o.input_line for o in parsed if o.key_or_group in (*NAMED, *swept)]
    reference = compose_reference(named)
    diff = differing(result_settings(cfg, task), result_settings(reference, task))
    return f"-{digest(diff)}" if diff else ""


CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_reference(overrides) -> DictConfig:
    """compose("config", overrides) inside a run (Hydra already set up) or outside one (a notebook, a test)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides=list(overrides))
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("config", overrides=list(overrides))


def nads_run_dir(nads_cfg: DictConfig, overrides) -> Path:
    """The directory `python run.py experiment=nads` keeps the NAD estimate of ``nads_cfg`` in (an estimator=nads
    config), for a command with ``overrides``: outputs/nads/<arch>-<method>-s<seed>[-<digest>], its settings
    measured against experiment=nads's as that command's own directory name measures them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    as_nads = ["experiment=nads", *(o.input_line for o in parsed if o.key_or_group not in ("experiment", "estimator"))]
    estimator, suffix = nads_cfg.estimator, settings_suffix(nads_cfg, as_nads, "nads")
    return Path(nads_cfg.paths.log_dir) / "nads" / f"{nads_cfg.arch_name}-{estimator.method}-s{estimator.seed}{suffix}"


NADS_DEFAULT_SHAPE = [1, 32, 32]  # experiment=nads's dataset.shape (conf/dataset/directional.yaml)


def nads_shape_suffix(*shape: int) -> str:
    """The directory suffix of `python run.py experiment=nads dataset.shape=[C,H,W]` (nothing else changed): how an
    experiment on images of another shape names the NADs of its arch (e.g. dataset=fashion_mnist's 1 x 28 x 28)."""
    shape = [int(n) for n in shape]
    return "" if shape == NADS_DEFAULT_SHAPE else f"-{digest({'dataset.shape': shape})}"


def _settings_suffix_resolver(*, _root_: DictConfig) -> str:
    """``${nadexp.settings_suffix:}`` in a fixed run directory's name (conf/sweep, conf/experiment)."""
    if not OmegaConf.select(_root_, "hydra.runtime.choices"):
        # Still being composed: OmegaConf also resolves a value that a later config merges over (cifar10_snapshots
        # over cifar10's directory), and that value is replaced. Composing a reference for it is wasted work.
        return ""
    with contextlib.suppress(ConfigError):  # run.py reports the same error before it writes anything
        return settings_suffix(_root_, _root_.hydra.overrides.task, decide_task(_root_))
    return ""


LIBRARY_ARCHS = ("torchvision", "timm")


def arch_name(choice: str, model: str = "") -> str:
    """The arch's name in run names and directories: the config group's option, after arch=torchvision or arch=timm the model's name
    (timm-convnext_atto), and after arch=custom the last part of its target (mynet.TinyConv -> TinyConv, as a file name)."""
    if choice == "custom" and model:
        last = str(model).rsplit(".", 1)[-1]
        return "".join(c if c.isalnum() or c in "-_" else "_" for c in last).strip("_") or choice
    return f"{choice}-{model}" if choice in LIBRARY_ARCHS and model else choice


def first_dir(*candidates: str) -> str:
    """The first of ``candidates`` that is a directory, else the last (a default location's messages name it)."""
    return next((c for c in candidates if os.path.isdir(c)), candidates[-1])


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("nadexp.arch_name", arch_name, replace=True)
    OmegaConf.register_new_resolver("nadexp.settings_suffix", _settings_suffix_resolver, replace=True)
    OmegaConf.register_new_resolver("nadexp.new_dir", new_dir, replace=True)
    OmegaConf.register_new_resolver("nadexp.first_dir", first_dir, replace=True)
    OmegaConf.register_new_resolver("nadexp.nads_shape_suffix", nads_shape_suffix, replace=True)
