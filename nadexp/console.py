"""What a run's log shows: the filter that conf/hydra/default.yaml attaches to the console and log file.

Lightning announces the same notices for every Trainer (the devices it found, why fit stopped), so a sweep's
cells and a multirun's jobs would repeat them under the progress bar; each is shown once per process. Its
adverts ("Tip: ...") are not shown.
"""

import logging

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
