"""Sharing a machine's CPU cores between the nadexp processes on it: each runs cores // processes torch threads (at
least one; ``threads=N`` kept as it is), looked at again between cells, networks and epochs, so two processes split
the cores instead of each taking all of them, which on a CPU slows both many times over."""

import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from nadexp.results.claims import process_alive

_fixed: int | None = None  # threads=N of this process's run: not shared
LOOK_EVERY_S = 1.0  # share() sits in loops (a network at a time): it looks at the registry at most this often
_looked = float("-inf")


def registry() -> Path:
    """The folder that holds one empty file per running nadexp process of this user (its process id)."""
    return Path(os.environ.get("NADEXP_PROCESSES") or Path(tempfile.gettempdir()) / f"nadexp-processes-{os.getuid()}")


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def processes() -> int:
    """The nadexp processes running now (this one included); a process that ended without unregistering is dropped."""
    live = 0
    for path in registry().glob("[0-9]*"):
        if process_alive(int(path.name)):
            live += 1
        else:
            path.unlink(missing_ok=True)
    return max(live, 1)


@contextmanager
def sharing(threads: int | None = None):
    """Around a run: this process is registered for others to count, and its torch threads are its share of the
    cores (or ``threads``), looked at again by ``share``; afterwards the thread count it had is restored."""
    global _fixed
    before, path = torch.get_num_threads(), registry() / str(os.getpid())
    _fixed, registered = threads, path.exists()  # already counted (a run inside a run, a test worker): stays so
    try:
        registry().mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:  # a temporary folder that takes no writes: this process counts only itself
        pass
    try:
        share(now=True)
        yield
    finally:
        if not registered:
            path.unlink(missing_ok=True)
        _fixed = None
        torch.set_num_threads(before)


def share(now: bool = False) -> int:
    """Sets and returns this process's torch threads: its share of the cores, or the run's ``threads`` (looked at
    again at most every LOOK_EVERY_S, unless ``now``)."""
    global _looked
    if not now and _fixed is None and time.monotonic() - _looked < LOOK_EVERY_S:
        return torch.get_num_threads()
    _looked = time.monotonic()
    threads = _fixed or max(1, cores() // processes())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads
