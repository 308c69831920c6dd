"""nadexp's command line: `nadexp [group=option ...] [key=value ...]` once the package is installed, the same as
`python run.py ...` in the checkout (Hydra; add -m to sweep).

With no options it trains LeNet once on D(v); `sweep=fourier|pixel|nad` sweeps directions, `estimator=nads|
hyperplanes|class_density` estimates, `experiment=<name>` runs a prepared experiment (`make run` is
`experiment=fourier_demo`). nadexp.run.tasks decides the task and checks the command line against it.
"""

import signal
import sys
import warnings

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nadexp.config import check_dataset, register_configs
from nadexp.errors import ConfigError
from nadexp.results.claims import remove_if_unused
from nadexp.run.identity import CONFIG_DIR
from nadexp.run.tasks import check_command
from nadexp.run.writable import write_failure

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    # SIGTERM (a cluster's time limit, `kill`) ends the run as an exception does, so it records its failure.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        # The checks that need no torch come first: --help and a bad option answer at once.
        task = check_command(cfg, hydra_cfg.overrides.task)
        check_dataset(cfg, task)
        from nadexp.run.execute import execute

        with warnings.catch_warnings():
            # A deprecation inside Lightning that users cannot act on; a resumed run's checkpoint folder is expected.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            result = execute(cfg, hydra_cfg.overrides.task, task)
    except ConfigError as error:
        remove_if_unused(hydra_cfg.runtime.output_dir)  # Hydra made it before the checks ran: no run, no folder
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # a folder that stopped taking writes (a full or read-only disk): one line, not a traceback
        message = write_failure(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    return result["objective"]
