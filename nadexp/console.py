"""What a run's log shows, in a shell (conf/hydra/default.yaml) and in a notebook alike (``quiet_lightning``): Lightning's notices, which
every Trainer of a sweep's cells repeats, once per process; not its adverts ("Tip:") or the warnings users cannot act on."""

import logging
import warnings
from contextlib import contextmanager

LIGHTNING = ("pytorch_lightning", "lightning")


class LightningNotices(logging.Filter):
    def __init__(self):
        super().__init__()
        self.first: dict[str, logging.LogRecord] = {}  # one filter serves several handlers: each gets the first

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not record.name.startswith(LIGHTNING):
            return True
        message = record.getMessage()
        return "Tip:" not in message and self.first.setdefault(message, record) is record


NOTICES = LightningNotices()  # the Python API's: one per process, as a shell's run has one


@contextmanager
def quiet_lightning(handlers_of=("", *LIGHTNING)):
    """Around a run: Lightning's notices once per process, no adverts, no warnings users cannot act on (a
    deprecation inside Lightning; the checkpoint folder a resumed run finds)."""
    handlers = {handler for name in handlers_of for handler in logging.getLogger(name).handlers}
    for handler in handlers:
        handler.addFilter(NOTICES)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            yield
    finally:
        for handler in handlers:
            handler.removeFilter(NOTICES)
