"""Progress of long work: on a terminal a live bar (rich); in a log (output sent to a file: nohup, a cluster job,
CI) one line at most every EVERY_S seconds and at the end, with n/N, the latest figure and an ETA, and no redraw
sequences. Used for a sweep's cells, a NAD estimate's networks and a training run's epochs."""

import logging
import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger(__name__)
EVERY_S = 5.0


def on_terminal() -> bool:
    return sys.stderr.isatty()


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class Steps:
    """``with Steps("lenet fourier", 34, "cells") as steps: ... steps.advance(1, "test acc 0.81")``."""

    def __init__(self, what: str, total: int, unit: str):
        self.what, self.total, self.unit, self.done = what, total, unit, 0
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn()) if on_terminal() else None  # fmt: skip

    def __enter__(self):
        self.start = self.said = time.monotonic()
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task(self.what, total=self.total)
        return self

    def advance(self, count: int = 1, figure: str = "") -> None:
        self.done += count
        if self.bar is not None:
            self.bar.advance(self.task, count)
            return
        now = time.monotonic()
        if now - self.said >= EVERY_S or self.done >= self.total:
            self.said, elapsed = now, now - self.start
            eta = elapsed / self.done * (self.total - self.done) if self.done else 0
            latest = f", {figure}" if figure else ""
            done = f"{self.done}/{self.total} {self.unit}"
            log.info("%s: %s%s, %s elapsed, ETA %s", self.what, done, latest, duration(elapsed), duration(eta))

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
