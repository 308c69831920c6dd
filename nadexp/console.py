"""What a run's log shows: the filter that conf/hydra/default.yaml attaches to the console and log file, and that
the Python API attaches for the length of a call (``quiet_lightning``), so a notebook sees what a shell sees.

Lightning announces the same notices for every Trainer (the devices it found, why fit stopped), so a sweep's
cells and a multirun's jobs would repeat them under the progress bar; each is shown once per process. Its
adverts ("Tip: ...") and a deprecation inside it that users cannot act on are not shown.
"""

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
