"""nadexp's command line: `nadexp [group=option ...] [key=value ...]`, the same as `python run.py ...` in the checkout
(Hydra; -m sweeps). Errors in a command are one line (exit 2); a run that fails is one line (exit 1)."""

import os
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from nadexp.config import check_dataset, register_configs
from nadexp.console import quiet_lightning
from nadexp.errors import ConfigError
from nadexp.results.claims import remove_if_unused
from nadexp.run.help import listing, usage
from nadexp.run.hydra_errors import failure_line, hydra_error_line
from nadexp.run.identity import CONFIG_DIR
from nadexp.run.tasks import check_command
from nadexp.run.writable import write_failure

register_configs()
ONE_LINE = True  # errors as one line; HYDRA_FULL_ERROR=1: Hydra's report and the traceback
ONE_LINE_MARK = "NADEXP_ONE_LINE_ERRORS"


def main() -> None:
    """`nadexp ...` and `python run.py ...`: Hydra's main, with the errors it finds in a command as one line (exit 2),
    and a run that fails as one line (exit 1). HYDRA_FULL_ERROR=1 shows Hydra's own report and the traceback."""
    arguments = sys.argv[1:]
    if "--help" in arguments or "-h" in arguments:
        print(usage())
        return
    if arguments[:1] == ["list"]:
        try:
            print(listing(arguments[1] if len(arguments) > 1 else "experiments"))
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        return
    global ONE_LINE
    if os.environ.get("HYDRA_FULL_ERROR") and not os.environ.get(ONE_LINE_MARK):  # the user's: tracebacks
        ONE_LINE = False
        run()
        return
    # Hydra raises what it finds, instead of printing it; the mark tells DDP ranks (this command run again, with
    # this environment) that the one-line errors are still asked for
    ONE_LINE, os.environ["HYDRA_FULL_ERROR"], os.environ[ONE_LINE_MARK] = True, "1", "1"
    try:
        run()
    except HydraException as error:
        from hydra._internal.utils import get_args_parser

        overrides = get_args_parser().parse_known_args(sys.argv[1:])[0].overrides
        print(f"error: {hydra_error_line(error, overrides)}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:  # a multirun's job that failed once it started, named by Hydra just before
        print(f"error: {failure_line(error)}", file=sys.stderr)
        sys.exit(1)
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        os.environ.pop(ONE_LINE_MARK, None)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def run(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    # SIGTERM (a cluster's time limit, `kill`) ends the run as an exception does, so it records its failure.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        # The checks that need no torch come first: --help and a bad option answer at once.
        task = check_command(cfg, hydra_cfg.overrides.task)
        check_dataset(cfg, task)
        from nadexp.run.execute import execute

        with quiet_lightning(handlers_of=()):  # the log's own filter is Hydra's logging config's
            result = execute(cfg, hydra_cfg.overrides.task, task)
    except ConfigError as error:
        remove_if_unused(hydra_cfg.runtime.output_dir, up_to=cfg.paths.log_dir)  # Hydra made it before the checks ran: no folder
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # a folder that stopped taking writes (a full or read-only disk): one line, not a traceback
        message = write_failure(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    except Exception as error:
        if hydra_cfg.mode == RunMode.MULTIRUN or not ONE_LINE:
            raise  # Hydra names the job that failed, and the multirun goes on to the next
        print(f"error: {failure_line(error)}", file=sys.stderr)
        sys.exit(1)
    return result["objective"]
