"""nadexp entry point: `python run.py [group=option ...] [key=value ...]` (Hydra; add -m to sweep)."""

import logging
import sys
import warnings

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from nadexp.config import register_configs
from nadexp.errors import ConfigError

register_configs()

# Quiet two notices that every run would otherwise print: an advert for another logging product and a
# deprecation inside Lightning that users cannot act on.
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(lambda record: "Tip:" not in record.getMessage())
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")  # resuming: expected


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    # Imported after Hydra has parsed the command line, so that `--help` and config errors stay fast.
    import torch

    from nadexp.estimators.run import estimate
    from nadexp.sweeps.runner import run_sweep
    from nadexp.training import train

    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    try:
        if cfg.get("sweep"):
            return run_sweep(cfg)["mean_test_acc"]
        if cfg.get("estimator"):
            return estimate(cfg)["objective"]
        return train(cfg)["test_acc"]
    except (ConfigError, InstantiationException) as error:
        cause = error.__cause__ if isinstance(error.__cause__, ConfigError) else error
        if not isinstance(cause, ConfigError):
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
