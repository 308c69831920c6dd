"""nadexp entry point: `python run.py [group=option ...] [key=value ...]` (Hydra; add -m to sweep).

With no options it trains LeNet once on D(v); `sweep=fourier|pixel|nad` sweeps directions, `estimator=nads|
hyperplanes|class_density` estimates, `experiment=<name>` runs a prepared experiment (`make run` is
`experiment=fourier_demo`). nadexp.tasks decides the task and checks the command line against it.
"""

import logging
import sys
import warnings

import hydra
from hydra.core.hydra_config import HydraConfig
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

    from nadexp.results import remove_if_unused
    from nadexp.tasks import TASKS, execute

    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    hydra_cfg = HydraConfig.get()
    try:
        result = execute(cfg, hydra_cfg.overrides.task)
    except ConfigError as error:
        remove_if_unused(hydra_cfg.runtime.output_dir)  # Hydra made it before the checks ran: no run, no folder
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    return result.get(TASKS[result["task"]].objective)


if __name__ == "__main__":
    main()
