"""A user's own network: `arch=custom arch.target=...` on the command line, a user's config directory next to
nadexp's, and the Python API (nadexp.api), which gives the command line's numbers."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import nadexp
from nadexp.config import compose_config
from nadexp.errors import ConfigError

from conftest import QUICK, ROOT, refusal, run_cli, run_script

MYNET = textwrap.dedent(
    """
    from torch import nn


    class TinyConv(nn.Module):
        def __init__(self, input_shape, num_classes, width=4):
            super().__init__()
            channels = input_shape[0]
            self.body = nn.Sequential(
                nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.LazyLinear(num_classes)
            )
            self.body(__import__("torch").zeros(1, *input_shape))  # materialise the lazy layer

        def forward(self, x):
            return self.body(x)


    class NoArguments(nn.Module):
        def __init__(self):
            super().__init__()


    class HundredPixels(nn.Module):
        def __init__(self, input_shape, num_classes):
            super().__init__()
            self.fc = nn.Linear(100, num_classes)

        def forward(self, x):
            return self.fc(x.flatten(1))
    """
)
NADS = ["experiment=nads", "dataset.shape=[1,8,8]", "estimator.method=autograd", "estimator.num_networks=32", "logger=none"]


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A user's folder holding mynet.py, importable as it is from a shell started there."""
    (tmp_path / "mynet.py").write_text(MYNET)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("mynet", None)


def test_a_users_run_lands_in_the_folder_it_runs_from_or_in_nadexp_root(user_dir, tmp_path_factory, monkeypatch):
    monkeypatch.delenv("NADEXP_ROOT")
    settings = [*NADS, "arch=custom", "arch.target=mynet.TinyConv", "estimator.num_networks=8"]
    assert run_cli(*settings, cwd=user_dir).returncode == 0
    (here,) = (user_dir / "outputs" / "nads").iterdir()  # the folder it runs from
    assert here.name.startswith("TinyConv-autograd-s0") and (here / "nads.npy").is_file()
    root = tmp_path_factory.mktemp("root")
    assert run_cli(*settings, cwd=user_dir, env={"NADEXP_ROOT": str(root)}).returncode == 0
    assert (root / "outputs" / "nads" / here.name / "nads.npy").is_file() and len(list(user_dir.glob("outputs/*/*"))) == 1


def test_the_command_line_runs_a_users_class_and_names_the_run_after_it(user_dir):
    settings = [*NADS, "arch=custom", "arch.target=mynet.TinyConv", "+arch.kwargs.width=6"]
    done = run_cli(*settings, cwd=user_dir, env={"NADEXP_ROOT": str(user_dir)})
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (user_dir / "outputs" / "nads").iterdir()
    assert run_dir.name.startswith("TinyConv-autograd-s0")
    nads = np.load(run_dir / "nads.npy")
    assert nads.shape == (64, 1, 8, 8)
    np.testing.assert_allclose(nads.reshape(64, -1) @ nads.reshape(64, -1).T, np.eye(64), atol=1e-4)
    config = (run_dir / "config.yaml").read_text()
    assert "width: 6" in config and "arch_name: TinyConv" in config
    assert json.loads((run_dir / "result.json").read_text())["arch"] == "TinyConv"  # the dashboards' and reports' name
    assert compose_config(["arch=custom", "arch.target=mynet.TinyConv"]).logger.wandb.group == "TinyConv"  # W&B's group


@pytest.mark.parametrize(
    "target, words",
    [
        ("nomodule.Net", "arch.target='nomodule.Net' does not import (ModuleNotFoundError"),
        ("mynet.Missing", "module mynet has no Missing"),
        ("mynet.NoArguments", "must take (input_shape, num_classes)"),
        ("mynet.HundredPixels", "cannot take images of shape [1, 8, 8]"),
        ("TinyConv", "is not a dotted path"),
    ],
)
def test_a_target_that_does_not_fit_stops_with_one_line(user_dir, tmp_path, target, words):
    message = refusal([*NADS, "arch=custom", f"arch.target={target}"], tmp_path / "run")
    assert words in message and "arch" in message, message


def test_a_users_config_directory_adds_archs_and_experiments(user_dir):
    conf = user_dir / "myconf"
    (conf / "arch").mkdir(parents=True)
    (conf / "experiment").mkdir()
    (conf / "dataset").mkdir()
    (conf / "arch" / "tiny.yaml").write_text("_target_: nadexp.models.custom.custom_model\ntarget: mynet.TinyConv\nkwargs:\n  width: 3\n")
    (conf / "dataset" / "small.yaml").write_text("defaults:\n  - directional\n  - _self_\n\nshape: [1, 8, 8]\n")  # built on nadexp's
    (conf / "experiment" / "tiny_nads.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /estimator: nads\n  - override /arch: tiny\n  - override /dataset: small\n"
        "estimator:\n  method: autograd\n  num_networks: 16\n"
    )
    done = run_cli("--config-dir", str(conf), "experiment=tiny_nads", "logger=none", "hydra.run.dir=run", cwd=user_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((user_dir / "run" / "result.json").read_text())
    assert result["arch"] == "tiny" and np.load(user_dir / "run" / "nads.npy").shape == (64, 1, 8, 8)


def test_the_api_gives_the_command_lines_nads_twice_in_one_process(user_dir, tmp_path):
    from mynet import TinyConv

    done = run_cli(*NADS, "arch=custom", "arch.target=mynet.TinyConv", "hydra.run.dir=cli", cwd=user_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    cli = np.load(user_dir / "cli" / "nads.npy")
    for model in (TinyConv, "mynet.TinyConv"):  # the class itself, or its dotted path
        found = nadexp.nads(model, (1, 8, 8), method="autograd", num_networks=32)
        np.testing.assert_array_equal(found.nads, cli)
        assert found.run_dir is None and set(found.diagnostic) >= {"top1", "top10"} and found.settings["arch"] == "TinyConv"
    figures = found.plot(tmp_path / "figures")
    assert all(path.stat().st_size > 1000 for path in figures.values())


def test_a_model_defined_in_a_notebook_needs_no_import(tmp_path):
    from torch import nn

    class Notebook(nn.Module):  # defined here, as in a notebook cell: not importable by its path
        def __init__(self, input_shape, num_classes):
            super().__init__()
            self.fc = nn.Linear(int(np.prod(input_shape)), num_classes)

        def forward(self, x):
            return self.fc(x.flatten(1))

    found = nadexp.nads(Notebook, (1, 4, 4), method="autograd", num_networks=8, run_dir=tmp_path / "nads")
    assert found.nads.shape == (16, 1, 4, 4) and (tmp_path / "nads" / "nads.npy").is_file()
    again = nadexp.load(tmp_path / "nads")
    np.testing.assert_array_equal(again.nads, found.nads)
    assert again.settings["arch"] == "Notebook"


def test_a_trained_direction_and_a_sweep_match_the_command_line_and_resume_from_it(user_dir, tmp_path):
    from mynet import TinyConv

    fast = {"dataset.n_train": 256, "dataset.n_test": 128, "trainer.max_epochs": 2}
    cli_overrides = [*QUICK, "arch=custom", "arch.target=mynet.TinyConv", "dataset.shape=[1,8,8]", "dataset.direction=[1,2]"]
    done = run_cli(*cli_overrides, "hydra.run.dir=one", cwd=user_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    cli = json.loads((user_dir / "one" / "result.json").read_text())
    settings = {o.split("=")[0]: o.split("=")[1] for o in QUICK if o.startswith(("dataset.n_", "trainer.max_epochs"))}
    api = nadexp.train_direction(TinyConv, [1, 2], input_shape=(1, 8, 8), settings={k: int(v) for k, v in settings.items()})
    assert api["test_acc"] == cli["test_acc"] and api["history"] == cli["history"]

    sweep = nadexp.sweep(TinyConv, "fourier", input_shape=(1, 8, 8), stride=4, run_dir=tmp_path / "sweep", settings=fast)
    assert len(sweep.cells) == len(sweep.accuracy()) >= 2 and all(0 <= a <= 1 for a in sweep.accuracy().values())
    (tmp_path / "sweep" / "cells" / sorted(p.name for p in (tmp_path / "sweep" / "cells").iterdir())[0]).unlink()
    resumed = run_cli(
        "experiment=single", "sweep=fourier", "arch=custom", "arch.target=mynet.TinyConv", "dataset.shape=[1,8,8]", "sweep.stride=4",
        *(f"{k}={v}" for k, v in fast.items()), "logger=none", f"hydra.run.dir={tmp_path / 'sweep'}", cwd=user_dir,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert nadexp.load(tmp_path / "sweep").accuracy() == sweep.accuracy()  # the one cell trained again, to the same number
    assert sweep.plot(tmp_path / "figures")[0].stat().st_size > 1000


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: nadexp.nads("lenet", (1, 32)), "input_shape must be (channels, height, width)"),
        (lambda: nadexp.nads("lenett", (1, 32, 32)), "model='lenett' is neither an arch of the zoo"),
        (lambda: nadexp.nads(42, (1, 32, 32)), "model must be a zoo name"),
        (lambda: nadexp.nads("lenet", (1, 32, 32), method="adjoint"), "estimator.method='adjoint' is unknown"),
        (lambda: nadexp.sweep("lenet", "wavelet"), "basis='wavelet' cannot be swept"),
        (lambda: nadexp.load(ROOT / "docs"), "is not a run directory"),
    ],
)
def test_bad_arguments_from_python_raise_the_packages_error_naming_them(call, words):
    with pytest.raises(ConfigError, match=None) as caught:
        call()
    assert words in str(caught.value), str(caught.value)


def test_the_console_entry_point_is_run_py(tmp_path):
    command = Path(sys.executable).parent / "nadexp"
    if not command.is_file():
        pytest.skip(f"the package is not installed with its console command beside {sys.executable}")
    same = ["experiment=nads", "arch=lenet", "seed=4", "--cfg", "job"]
    installed = subprocess.run([str(command), *same], cwd=tmp_path, capture_output=True, text=True, timeout=120)  # its round trip
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert installed.stdout == run_cli(*same, cwd=tmp_path).stdout and "seed: 4" in installed.stdout
    refused = run_cli("arch=lenett", cwd=tmp_path)  # the same entry function, in this process
    assert refused.returncode != 0 and "lenett" in refused.stderr


def test_the_api_leaves_a_notebooks_own_hydra_session_as_it_was():
    import hydra
    from hydra.core.global_hydra import GlobalHydra

    hydra.initialize(version_base="1.3", config_path=None)
    try:
        mine = GlobalHydra.instance().hydra
        assert nadexp.nads("lenet", (1, 16, 16), method="autograd", num_networks=8).nads.shape == (256, 1, 16, 16)
        assert GlobalHydra.instance().hydra is mine and hydra.compose(config_name=None, overrides=["+a=1"]) == {"a": 1}
    finally:
        GlobalHydra.instance().clear()


def test_the_notebook_example_runs_every_cell_and_draws_its_figures(tmp_path):
    env = {"NADEXP_EXAMPLE_OUT": str(tmp_path / "out"), "NADEXP_EXAMPLE_QUICK": "1"}
    done = run_script(ROOT / "docs" / "examples" / "custom_architecture.py", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "direction [8, 8]: test accuracy" in done.stdout and "split-half overlap" in done.stdout
    for name in ("nads.png", "spectrum.png", "heatmap.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000, name
    assert nadexp.load(tmp_path / "out" / "sweep").settings["arch"] == "StridedNet"


def test_the_docs_example_network_runs_as_documented(tmp_path):
    readme = (ROOT / "docs" / "configs.md").read_text()
    start = readme.index("```python\n# mynet.py") + len("```python\n")
    (tmp_path / "mynet.py").write_text(readme[start : readme.index("```", start)])
    done = run_cli(
        "experiment=nads", "arch=custom", "arch.target=mynet.TinyConv", "+arch.kwargs.width=16", "dataset.shape=[1,16,16]",
        "estimator.method=autograd", "estimator.num_networks=16", "logger=none", cwd=tmp_path, env={"NADEXP_ROOT": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "outputs" / "nads").iterdir()
    assert run_dir.name.startswith("TinyConv-autograd-s0-") and np.load(run_dir / "nads.npy").shape == (256, 1, 16, 16)


def test_arch_custom_without_a_target_asks_for_one(tmp_path):
    message = refusal([*NADS, "arch=custom"], tmp_path / "run")
    assert message.startswith("arch.target must be given") and "arch.target=mymodule.MyNet" in message, message


def test_the_api_is_as_quiet_as_the_command_line(tmp_path, caplog):
    import warnings

    settings = {"dataset.n_train": 64, "dataset.n_test": 64, "trainer.max_epochs": 1}
    with caplog.at_level("INFO"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            nadexp.train_direction("logreg", [1, 0], input_shape=(1, 8, 8), settings=settings)
    messages = [record.getMessage() for record in caplog.records]
    assert not [m for m in messages if "Tip:" in m], messages  # Lightning's advert
    assert sum("GPU available" in m for m in messages) <= 1, messages  # its notices once per process, as a shell shows them
    assert not [w for w in caught if "LeafSpec" in str(w.message)]  # a deprecation inside Lightning


def test_the_api_leaves_the_callers_process_as_it_found_it(monkeypatch):
    import os
    import random

    import torch

    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    threads, tf32 = torch.get_num_threads(), (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.set_num_threads(1)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        random.seed(5), np.random.seed(5), torch.manual_seed(5)
        expected = draws()
        random.seed(5), np.random.seed(5), torch.manual_seed(5)
        monkeypatch.setenv("PL_GLOBAL_SEED", "12345")  # the caller's own seed_everything
        settings = {"dataset.n_train": 64, "dataset.n_test": 64, "trainer.max_epochs": 1, "tf32": False, "seed": 3}
        nadexp.train_direction("logreg", [1, 0], input_shape=(1, 8, 8), settings=settings)
        assert draws() == expected  # the caller's random streams continue where they were
        assert torch.get_num_threads() == 1 and torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert os.environ["PL_GLOBAL_SEED"] == "12345"  # the call seeded 3 and gave the caller's back
    finally:
        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
