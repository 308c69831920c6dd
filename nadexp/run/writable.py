"""Where a run writes must take writes: a read-only disk, a folder of another user or a full disk is one line. A
probe before a run or multirun starts (exit 2, nothing trained); a write that fails later: exit 1, and every record
written before it is whole and kept, so the same command resumes (nadexp.cli)."""

import errno
import sys
import tempfile
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from nadexp.errors import ConfigError
from nadexp.results.claims import NEW_DIR, claim_new_dir

# The errors of a folder that does not take writes, as opposed to a bug or a missing file.
WRITE_ERRORS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})


def check_writable(folder, option: str, hint: str = "") -> Path:
    """``folder`` once a file could be created in it, or in the nearest folder above it that exists (nothing is
    left behind: a command refused for another reason makes no folder); ConfigError naming ``option`` if not."""
    folder = Path(folder).absolute()
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file")
        with tempfile.TemporaryFile(dir=existing):  # the probe: gone as soon as it is made
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"{option}={folder} cannot be written ({reason}): give {option} a writable folder{hint}") from None
    return folder


def write_failure(error: OSError) -> str | None:
    """The one line for a write that failed once a run started, or None for another OSError (a bug: a traceback)."""
    if error.errno not in WRITE_ERRORS:
        return None
    verb = "open" if error.errno in (errno.EACCES, errno.EPERM) else "write"  # a permission may be a reader's
    where = f" {error.filename}" if error.filename else ""
    kept = "the records written before it are kept, and the same command resumes once that is fixed"
    return f"could not {verb}{where} ({error.strerror}); {kept}"


class WritableOutput(Callback):
    """The owner of a run's (or multirun's) folder: checks hydra.run.dir (hydra.sweep.dir for -m) before Hydra makes
    it and writes .hydra/ and the log there, and claims it when the config asks for a fresh one (nadexp.new_dir)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, option: str) -> None:
        HydraConfig.instance().set_config(config)  # as Hydra does next: the folder's name may use ${hydra:...}
        folder = OmegaConf.select(config, option)
        try:
            check_writable(folder, option, hint=" (or NADEXP_ROOT, for every output)")
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        parent, key = option.rsplit(".", 1)
        if str(OmegaConf.to_container(OmegaConf.select(config, parent))[key]).startswith(NEW_DIR):
            claimed = claim_new_dir(folder)
            with read_write(config.hydra), open_dict(config.hydra):
                OmegaConf.update(config, option, claimed)
                if option == "hydra.sweep.dir":  # each job's config is composed again from the overrides: it names the claim
                    quoted = claimed.replace("\\", "\\\\").replace("'", "\\'")
                    config.hydra.overrides.hydra.append(f"{option}='{quoted}'")
