import os
import subprocess
import sys
from pathlib import Path

import pytest

from nadexp.config import compose_config

ROOT = Path(__file__).resolve().parents[1]
ARCHS = sorted(p.stem for p in (ROOT / "conf" / "arch").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (ROOT / "conf" / "dataset").glob("*.yaml"))

# Small and quick: a few hundred samples, one epoch, no W&B unless a test asks for it.
QUICK = ["experiment=single", "logger=none", "callbacks=none", "trainer.enable_progress_bar=false",
         "trainer.max_epochs=1", "dataset.n_train=256", "dataset.n_test=256", "trainer.accelerator=cpu"]


@pytest.fixture
def compose(tmp_path):
    def _compose(*overrides):
        return compose_config(list(overrides), output_dir=tmp_path / "run")
    return _compose


def run_cli(*args, cwd=ROOT, timeout=600, env=None):
    """`python run.py ARGS` as a user runs it; returns the CompletedProcess."""
    full_env = {**os.environ, "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
