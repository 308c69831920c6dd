"""Claims: who writes where, decided by the file system, so that concurrent processes never share a target. A fresh
run folder (``${nadexp.new_dir:PATH}``) is claimed when the run starts (nadexp.run.writable): PATH, PATH_2, ..., the
first that os.mkdir creates. A cell (or NADs being estimated) is claimed by an atomic symbolic link whose target
names the owner (no data block: works on a full disk); one whose owner is gone is taken over."""

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)
NEW_DIR = "${nadexp.new_dir:"  # how a config asks for a fresh folder
CLAIM_TIMEOUT_S = 24 * 3600  # a claim from another host counts as abandoned after this long


def new_dir(path: str) -> str:
    """The ``nadexp.new_dir`` resolver: ``path`` itself. It marks a folder to claim; resolving it creates nothing."""
    return path


def claim_new_dir(path) -> str:
    """``path``, else ``path_2``, ``path_3``, ...: the first one this call creates."""
    base, number = Path(path), 1
    base.parent.mkdir(parents=True, exist_ok=True)
    while True:
        candidate = base if number == 1 else base.with_name(f"{base.name}_{number}")
        try:
            os.mkdir(candidate)
            return str(candidate)
        except FileExistsError:
            number += 1


def remove_if_unused(output_dir, up_to=None) -> bool:
    """Remove a run directory that holds only what Hydra writes before a run starts (.hydra/, the job log), and the
    folders above it that it leaves empty, up to ``up_to`` (outputs/): after a config error it is no run, and
    later commands should not find it. True if it was removed."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return False
    entries = list(output_dir.iterdir())
    if any(not (entry.name == ".hydra" or (entry.suffix == ".log" and entry.is_file())) for entry in entries):
        return False
    shutil.rmtree(output_dir, ignore_errors=True)
    top = Path(up_to).absolute() if up_to is not None else None
    for folder in output_dir.absolute().parents:
        if top is None or folder == top or top not in folder.parents:
            break
        try:
            folder.rmdir()  # only an empty one: outputs/nads/ of a refused first estimate, a refused run's date folder
        except OSError:
            break
    return True


def _owner_is_gone(claim: Path) -> bool:
    try:
        owner = json.loads(os.readlink(claim) if claim.is_symlink() else claim.read_text())  # (a file: an older claim)
        host, pid = owner["host"], int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):  # damaged: judged by its age alone
        host, pid = None, None
    try:
        age = time.time() - claim.lstat().st_mtime
    except FileNotFoundError:
        return False  # released meanwhile: the next attempt creates it
    if host == socket.gethostname() and pid is not None:
        return not process_alive(pid)
    return age > (CLAIM_TIMEOUT_S if host is not None else 60)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        pass
    return True


def _create(path: Path, owner: str) -> None:
    """The claim, atomically: a symbolic link, or a file where the file system has no links (FileExistsError: another process holds it)."""
    try:
        os.symlink(owner, path)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        with os.fdopen(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644), "w") as handle:
            handle.write(owner)


def claim(path: Path) -> bool:
    """Whether this process now holds the claim file ``path`` (taking it over from an owner that is gone)."""
    for _ in range(2):
        owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
        try:
            _create(path, owner)
        except FileExistsError:
            if not _owner_is_gone(path):
                return False
            stale = path.with_name(f"{path.name}.stale-{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):  # one taker wins the rename; the others retry the create
                os.replace(path, stale)
                log.warning("%s: its owner is gone; taking it over", path.name)
                stale.unlink(missing_ok=True)
            continue
        except OSError as error:  # a read-only or full folder: the error names the claim, not the link's text
            raise OSError(error.errno, error.strerror, str(path)) from None
        return True
    return False
