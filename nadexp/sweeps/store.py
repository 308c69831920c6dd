"""A sweep's results: one JSON record per (arch, direction, seed) cell, each written atomically.

A re-run of the same sweep skips the cells whose record exists; a killed sweep loses at most the cell in
flight (its record is never half-written). A record that cannot be read all the same (a full disk, a copy cut
short, an edit) is moved aside, kept as <name>.json.unreadable, with a warning naming it, and its cell counts as
not done, so the sweep trains it again.

Processes that share a sweep (the same command started twice, a requeued job beside the first, shards started
twice) claim a group of cells before training it: <name>.claim, created atomically, holds the owner's host,
process id and start time. A claim whose owner is gone (its process ended on this host, or, from another host,
older than CLAIM_TIMEOUT_S) is taken over.
"""

import json
import logging
import os
import socket
import time
from pathlib import Path

from nadexp.results import CELL_KEYS, UnreadableRecord, read_record, set_aside, write_json_atomic

log = logging.getLogger(__name__)
CLAIM_TIMEOUT_S = 24 * 3600  # a claim from another host counts as abandoned after this long


def _owner_is_gone(claim: Path) -> bool:
    try:
        owner = json.loads(claim.read_text())
        host, pid = owner["host"], int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):  # being written, or damaged: judged by its age alone
        host, pid = None, None
    try:
        age = time.time() - claim.stat().st_mtime
    except FileNotFoundError:
        return False  # released meanwhile: the next attempt creates it
    if host == socket.gethostname() and pid is not None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False
    return age > (CLAIM_TIMEOUT_S if host is not None else 60)


class CellStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(arch: str, basis: str, direction, seed: int) -> str:
        return f"{arch}-{basis}-{'_'.join(str(d) for d in direction)}-s{seed}"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def read(self, key: str) -> dict | None:
        """The record of ``key``; None when there is none, or when it is unreadable or another cell's (then it is
        moved aside)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            record = read_record(path, CELL_KEYS)
            own = self.key(record["arch"], record["basis"], record["direction"], record["seed"])
            if own != key:
                raise UnreadableRecord(f"{path} holds the record of another cell ({own})")
            return record
        except UnreadableRecord as error:
            set_aside(path, error, then="its cell is trained again")
            return None

    def __contains__(self, key: str) -> bool:
        return self.read(key) is not None

    def write(self, key: str, record: dict) -> None:
        write_json_atomic(self.path(key), record)

    def records(self) -> list[dict]:
        return [record for path in sorted(self.root.glob("*.json")) if (record := self.read(path.stem)) is not None]

    def claim(self, name: str) -> bool:
        """Whether this process now holds the claim ``name`` (taking it over from an owner that is gone)."""
        path = self.root / f"{name}.claim"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not _owner_is_gone(path):
                    return False
                try:  # one taker wins the rename; the others find no stale claim left and retry the create
                    os.replace(path, path.with_name(f"{path.name}.stale-{os.getpid()}"))
                    log.warning("%s: its owner is gone; taking it over", path.name)
                    Path(path.with_name(f"{path.name}.stale-{os.getpid()}")).unlink(missing_ok=True)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}, handle)
            return True
        return False

    def release(self, name: str) -> None:
        (self.root / f"{name}.claim").unlink(missing_ok=True)

    def remove_orphans(self) -> None:
        """Temporary files of writers killed between writing and renaming; call once every cell is recorded,
        when no writer of this sweep is left."""
        for path in self.root.glob(".*.json.*.tmp"):
            path.unlink(missing_ok=True)
