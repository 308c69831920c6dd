"""One run as its command decided it (nadexp.run.execute), passed down to the code that runs it: the config, the
task, the loggers, and the run folder, opened once when the run first writes (nadexp.results.resume)."""

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from nadexp.loggers import build_loggers, finish_loggers, log_config
from nadexp.results.resume import open_run_dir


@dataclass
class Run:
    cfg: DictConfig
    task: str
    loggers: list = field(default_factory=list)
    folder: Path | None = None

    @classmethod
    def start(cls, cfg: DictConfig, task: str) -> "Run":
        return cls(cfg, task, build_loggers(cfg))

    def open(self, write_config: bool = True) -> Path:
        """The run folder, refused, resumed or started as nadexp.results.resume decides, with its config.yaml."""
        if self.folder is None:
            self.folder = open_run_dir(self.cfg, self.task, write_config)
        return self.folder

    @contextmanager
    def logging(self):
        """The loggers while the run works: its config logged first, each logger's run closed after (so the next
        job of a multirun in this process starts a run of its own)."""
        log_config(self.loggers, self.cfg)
        try:
            yield self.loggers
        finally:
            finish_loggers(self.loggers)
