"""Runs a researcher can trust: a directory per set of settings, checks before anything is written, the task
decided from the chosen groups with no override ignored, every arch stacked, one reading of the trainer."""

import json
import math
import subprocess
import sys
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from nadexp.config import CONFIG_DIR, compose_config, register_configs
from nadexp.errors import ConfigError
from nadexp.models import LeNet
from nadexp.results.atomic import write_json_atomic
from nadexp.results.claims import claim_new_dir, remove_if_unused
from nadexp.run.context import Run
from nadexp.run.execute import execute
from nadexp.run.identity import NADS_DEFAULT_SHAPE, settings_suffix
from nadexp.run.tasks import check_overrides, decide_task
from nadexp.sweeps.runner import models_at_once, train_cells_stacked
from nadexp.training.stacked import epoch_order, fit_stacked, unsupported_trainer_settings

from conftest import ARCHS, QUICK, ROOT, check_result_schema, cifar10_overrides, run_cli

SWEEP = [
    "experiment=single",
    "sweep=fourier",
    "arch=logreg",
    "dataset.shape=[1,8,8]",
    "sweep.stride=4",
    "dataset.n_train=256",
    "dataset.n_test=64",
    "trainer.max_epochs=1",
    "logger=none",
    "trainer.accelerator=cpu",
]


def suffix(*overrides) -> str:
    """The settings suffix of the fixed directory that `python run.py OVERRIDES` would use."""
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return settings_suffix(cfg, overrides, decide_task(cfg))


# --- identity ------------------------------------------------------------------------------------------------


def test_the_experiments_own_settings_keep_the_plain_name_and_named_choices_do_not_count():
    for overrides in (
        ["experiment=fourier_lenet"],
        ["experiment=fourier_lenet", "seed=3", "arch=vgg11"],
        ["experiment=single", "sweep=fourier", "arch=lenet"],
        ["experiment=fourier_lenet", "dataset.sigma=3"],
        ["experiment=nads", "arch=resnet18"],
        ["experiment=cifar10", "arch=lenet"],
    ):
        assert suffix(*overrides) == "", overrides


def test_an_experiment_on_other_images_finds_the_nads_that_experiment_nads_keeps_for_their_shape():
    for arch in ("lenet", "logreg"):
        nads_suffix = suffix("experiment=nads", f"arch={arch}", "dataset.shape=[1,28,28]")
        assert nads_suffix.startswith("-")  # a directory of its own, apart from the 32 x 32 NADs
        cfg = compose_config(["experiment=fashion_mnist", f"arch={arch}"])
        assert cfg.dataset.nads.endswith(f"/nads/{arch}-finite_difference-s0{nads_suffix}"), cfg.dataset.nads
    assert suffix("experiment=fashion_mnist", "arch=lenet") == ""
    assert compose_config(["experiment=nads"]).dataset.shape == NADS_DEFAULT_SHAPE  # whose NADs need no suffix


def test_settings_that_do_not_change_the_numbers_keep_the_name():
    for extra in (
        "trainer.accelerator=cpu",
        "trainer=gpu",
        "sweep.models_at_once=1",
        "dataset.eval_batch_size=64",
        "trainer.enable_progress_bar=false",
        "sweep.num_shards=2",
        "logger=csv",
        "threads=1",
    ):
        assert suffix("experiment=fourier_lenet", extra) == "", extra
    assert suffix("experiment=nads", "estimator.device=cpu", "estimator.chunk_size=64") == ""


def test_every_result_defining_setting_gives_its_own_directory_name():
    changes = [
        "dataset.sigma=1",
        "dataset.sigma=2",
        "dataset.eps=1",
        "dataset=directional_reference_code",
        "dataset.n_train=5000",
        "optimizer=adam",
        "optimizer.lr=0.1",
        "scheduler=constant",
        "trainer.max_epochs=5",
        "trainer.gradient_clip_val=1",
        "sweep.stride=4",
        "dataset.fourier_phase=sine",
        "dataset.seed=5",
    ]
    names = {change: suffix("experiment=fourier_lenet", change) for change in changes}
    assert all(len(name) == 9 and name.startswith("-") for name in names.values()), names
    assert len(set(names.values())) == len(changes), names
    assert suffix("experiment=nads", "estimator.num_networks=1000") != "" != suffix("experiment=nads", "dataset.shape=[1,16,16]")


def test_a_multirun_over_dataset_settings_gives_each_job_a_directory_and_resumes_each(tmp_path):
    # The case that aborted: two jobs that differ only in dataset.sigma were given one sweep directory.
    args = ["-m", *SWEEP, "dataset.sigma=1,3", f"hydra.sweep.dir={tmp_path}"]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    sweeps = sorted(p for p in tmp_path.iterdir() if (p / "cells").is_dir())
    assert len(sweeps) == 2 and all(p.name.startswith("logreg-fourier-stride4-s0-") for p in sweeps)
    assert sorted(json.loads((p / "config.yaml").read_text().split("sigma: ")[1].split("\n")[0]) for p in sweeps) == [1.0, 3.0]
    cells = [json.loads(c.read_text()) for p in sweeps for c in (p / "cells").glob("*.json")]
    assert len(cells) == 8 and all(c["engine"] == "stacked" and c["models_at_once"] == 4 for c in cells)
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("4 already done, 0 to train") == 2


# --- validation before writing ---------------------------------------------------------------------------------


def bad_then_fixed(tmp_path, overrides, bad, fixed):
    """A bad value stops the run and leaves nothing in its directory; the same command with it fixed then runs."""
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError):
        execute(compose_config([*overrides, *bad], output_dir=run_dir), bad)
    assert not run_dir.exists() or not any(run_dir.iterdir())
    return execute(compose_config([*overrides, *fixed], output_dir=run_dir), fixed)


def test_a_bad_value_then_the_fixed_command_succeeds_for_a_single_run(tmp_path):
    result = bad_then_fixed(tmp_path, [*QUICK, "arch=logreg"], ["optimizer.lr=-1"], ["optimizer.lr=0.1"])
    assert result["task"] == "train" and 0 <= result["test_acc"] <= 1
    check_result_schema(result, "train")
    assert result["objective"] == result["test_acc"] and result["summary"]["test_acc"] == result["test_acc"]


@pytest.mark.parametrize("bad", [["dataset.sigma=-1"], ["sweep.models_at_once=0"], ["sweep.max_frequency=-1"]])
def test_a_bad_value_then_the_fixed_command_succeeds_for_a_sweep(tmp_path, bad):
    result = bad_then_fixed(tmp_path, SWEEP, bad, ["dataset.sigma=1"])
    assert result["cells"] == 4


def test_a_bad_value_then_the_fixed_command_succeeds_for_each_estimator(tmp_path, nads_dir):
    nads = ["experiment=nads", "arch=logreg", "dataset.shape=[1,4,4]", "logger=none"]
    result = bad_then_fixed(tmp_path / "nads", nads, ["estimator.num_networks=1"], ["estimator.num_networks=8"])
    assert result["num_components"] == 16

    planes = ["experiment=single", "estimator=hyperplanes", "arch=lenet", "logger=none"]
    result = bad_then_fixed(tmp_path / "planes", planes, [f"estimator.run_dir={tmp_path / 'no_run'}"], ["estimator.run_dir=null"])
    assert result["layers"] == 2

    data = tmp_path / "cifar"
    from nadexp.training import train

    from conftest import write_learnable_cifar10

    write_learnable_cifar10(data / "data", 200, 50, noise=40, seed=0)
    train(
        Run.start(compose_config(cifar10_overrides(data / "data", nads_dir, "dataset.batch_size=50"), output_dir=data / "trained"), "train")
    )
    density = [
        "experiment=class_density_lenet",
        f"estimator.run_dir={data / 'trained'}",
        "estimator.density=gaussian",
        "estimator.kl_samples=0",
        "estimator.n_jobs=1",
        "logger=none",
    ]
    result = bad_then_fixed(tmp_path / "density", density, ["estimator.checkpoint=missing.ckpt"], ["estimator.checkpoint=last"])
    assert result["examples"] == 200


def test_a_bad_value_leaves_no_directory_behind_on_the_command_line(tmp_path):
    run_dir = tmp_path / "sweep"
    done = run_cli(*SWEEP, "dataset.sigma=-1", f"hydra.run.dir={run_dir}")
    assert done.returncode == 2 and done.stderr.startswith("error: dataset.sigma") and not run_dir.exists()


def test_only_a_directory_of_hydras_own_files_is_removed(tmp_path):
    (tmp_path / "empty" / ".hydra").mkdir(parents=True)
    (tmp_path / "empty" / "run.log").write_text("")
    (tmp_path / "kept" / ".hydra").mkdir(parents=True)
    (tmp_path / "kept" / "config.yaml").write_text("seed: 0\n")
    assert remove_if_unused(tmp_path / "empty") and not (tmp_path / "empty").exists()
    assert not remove_if_unused(tmp_path / "kept") and (tmp_path / "kept" / "config.yaml").exists()
    (tmp_path / "outputs" / "nads" / "lenet" / ".hydra").mkdir(parents=True)  # a refused first estimate's folders
    assert remove_if_unused(tmp_path / "outputs" / "nads" / "lenet", up_to=tmp_path / "outputs")
    assert (tmp_path / "outputs").is_dir() and not (tmp_path / "outputs" / "nads").exists()


def test_a_refused_run_in_a_folder_of_its_identity_leaves_no_folder(tmp_path):
    done = run_cli("experiment=nads", "arch=logreg", "estimator.num_networks=2", env={"NADEXP_ROOT": str(tmp_path)})
    assert done.returncode == 2 and "estimator.num_networks must be >= 4" in done.stderr, done.stderr
    assert not (tmp_path / "outputs" / "nads").exists()  # nor the folder above the run's
    done = run_cli(*QUICK, "arch=logreg", "dataset.sigma=-1", env={"NADEXP_ROOT": str(tmp_path)})  # a time-stamped one
    assert done.returncode == 2 and not (tmp_path / "outputs" / "runs").exists()


# --- the task and the command line ------------------------------------------------------------------------------


def test_the_task_comes_from_the_chosen_groups():
    assert decide_task(compose_config([])) == "train"  # python run.py trains once
    assert decide_task(compose_config(["arch=vgg11"])) == "train"
    assert decide_task(compose_config(["estimator=nads", "arch=lenet"])) == "nads"
    assert decide_task(compose_config(["sweep=fourier"])) == "sweep"
    assert decide_task(compose_config(["experiment=fourier_demo"])) == "sweep"
    with pytest.raises(ConfigError, match="sweep=fourier and estimator=nads"):
        decide_task(compose_config(["sweep=fourier", "estimator=nads"]))
    assert "experiment=fourier_demo" in (ROOT / "Makefile").read_text()  # make run keeps the demo


@pytest.mark.parametrize(
    "overrides, task, words",
    [
        (["trainer=gpu"], "nads", ["trainer=gpu", "estimator.device"]),
        (["optimizer.lr=0.1"], "hyperplanes", ["optimizer.lr=0.1", "estimator=hyperplanes"]),
        (["dataset.sigma=2"], "nads", ["dataset.sigma=2", "dataset.shape"]),
        (["dataset.direction=[1,0]"], "sweep", ["dataset.direction", "sweep.stride"]),
        (["callbacks=checkpoints"], "sweep", ["callbacks=checkpoints"]),
        (["sweep.stride=2"], "train", ["sweep.stride=2", "sweep=fourier"]),
        (["task=nads"], "train", ["task=nads"]),
    ],
)
def test_an_override_the_task_would_ignore_stops_the_run_naming_it(overrides, task, words):
    with pytest.raises(ConfigError) as error:
        check_overrides(overrides, task)
    assert all(word in str(error.value) for word in words) and "\n" not in str(error.value)


def test_overrides_the_task_honours_pass():
    check_overrides(
        [
            "arch=vgg11",
            "seed=1",
            "dataset.shape=[1,8,8]",
            "estimator.num_networks=8",
            "logger=none",
            "hydra.run.dir=x",
            "hydra/launcher=local",
            "threads=1",
            "experiment=nads",
            "+tags=[a]",
        ],
        "nads",
    )
    check_overrides([*QUICK, "optimizer=adam", "scheduler=constant", "~callbacks.progress_bar", "resume=true"], "train")
    check_overrides([*SWEEP, "sweep.models_at_once=2", "channels_last=false"], "sweep")


# --- every arch stacks ------------------------------------------------------------------------------------------

SHAPES = {"vgg11": "[1,32,32]", "vgg11_bn": "[1,32,32]", "lenet": "[1,16,16]", "lenet_nopool": "[1,16,16]"}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_trains_stacked_reproducibly(arch):
    # What the GPU default (16 stacked models) runs, on the CPU: dropout (VGG) and BatchNorm included.
    cfg = compose_config(
        [
            "experiment=single",
            "sweep=fourier",
            f"arch={arch}",
            f"dataset.shape={SHAPES.get(arch, '[1,8,8]')}",
            "logger=none",
            "trainer.accelerator=cpu",
            "trainer.max_epochs=1",
            "dataset.n_train=16",
            "dataset.n_test=8",
            "dataset.batch_size=8",
        ]
    )
    first, again = (train_cells_stacked(cfg, [[1, 0], [2, 1]]) for _ in range(2))
    assert [r["direction"] for r in first] == [[1, 0], [2, 1]]
    assert all(
        r["status"] == "ok" and r["engine"] == "stacked" and r["models_at_once"] == 2 and r["steps"] == 2 and math.isfinite(r["test_loss"])
        for r in first
    )
    assert [r["history"] for r in first] == [r["history"] for r in again]  # the same numbers, dropout too


# --- one reading of the trainer config ----------------------------------------------------------------------------


def test_the_stacked_engine_lists_the_trainer_settings_it_does_not_implement():
    default = compose_config(["experiment=single", "sweep=fourier"]).trainer
    assert unsupported_trainer_settings(default) == []
    for extra, listed in (
        ("+trainer.max_steps=5", "trainer.max_steps=5"),
        ("+trainer.accumulate_grad_batches=2", "trainer.accumulate_grad_batches=2"),
        ("trainer.precision=bf16-mixed", "trainer.precision=bf16-mixed"),
        ("trainer.deterministic=true", "trainer.deterministic=True"),
        ("+trainer.limit_train_batches=3", "trainer.limit_train_batches=3"),
    ):
        trainer = compose_config(["experiment=single", "sweep=fourier", extra]).trainer
        assert unsupported_trainer_settings(trainer) == [listed], extra
    clip_value = compose_config(["experiment=single", "sweep=fourier", "trainer.gradient_clip_algorithm=value"]).trainer
    assert unsupported_trainer_settings(clip_value) == []


def test_an_unsupported_trainer_setting_trains_with_lightning_under_auto_and_is_refused_when_stacking_is_asked_for():
    auto = compose_config([*SWEEP, "+trainer.accumulate_grad_batches=2"])
    assert models_at_once(auto) == 1  # logreg would otherwise stack 16
    with pytest.raises(ConfigError, match="sweep.models_at_once=4 .* trainer.accumulate_grad_batches=2"):
        models_at_once(compose_config([*SWEEP, "+trainer.accumulate_grad_batches=2", "sweep.models_at_once=4"]))


def test_clipping_by_value_is_the_clipping_of_torch():
    torch.manual_seed(0)
    nets = [LeNet((1, 16, 16), 2) for _ in range(2)]
    singles = [LeNet((1, 16, 16), 2) for _ in range(2)]
    for single, net in zip(singles, nets):
        single.load_state_dict(net.state_dict())
    x, y = torch.randn(2, 64, 1, 16, 16), torch.randint(0, 2, (2, 64))
    sgd = partial(torch.optim.SGD, lr=0.5)
    stacked, _ = fit_stacked(
        nets, (x, y), (x, y), [torch.Generator().manual_seed(k) for k in range(2)], sgd, epochs=1, batch_size=32, clip_value=0.01
    )
    for k, net in enumerate(singles):
        opt, order = sgd(params=net.parameters()), epoch_order(torch.Generator().manual_seed(k), 64)
        for start in range(0, 64, 32):
            idx = order[start : start + 32]
            opt.zero_grad()
            F.cross_entropy(net(x[k][idx]), y[k][idx]).backward()
            torch.nn.utils.clip_grad_value_(net.parameters(), 0.01)
            opt.step()
        for name, value in net.state_dict().items():
            assert torch.allclose(stacked.unstack(k)[name], value, atol=1e-5), name


# --- concurrent starts --------------------------------------------------------------------------------------------


def test_a_claimed_directory_is_never_handed_out_twice(tmp_path):
    (tmp_path / "run").mkdir()  # someone else's
    first = claim_new_dir(str(tmp_path / "run"))
    assert first == str(tmp_path / "run_2") and claim_new_dir(str(tmp_path / "run")) == str(tmp_path / "run_3")


def test_two_runs_started_at_once_write_into_two_directories(tmp_path):
    # As a job array does: the same command at the same moment, in separate processes, one run directory pattern.
    args = [sys.executable, str(ROOT / "run.py"), *QUICK, "arch=logreg", f"hydra.run.dir=${{nadexp.new_dir:{tmp_path}/run}}"]
    processes = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    assert sorted(p.name for p in tmp_path.glob("run*/result.json") for p in [p.parent]) == ["run", "run_2"]


def test_a_multiruns_fresh_folder_is_claimed_when_it_starts_and_its_jobs_land_in_the_claim(tmp_path):
    sweep_dir = tmp_path / "it's"  # a quote in the path too, escaped as Hydra reads one
    pattern = f"hydra.sweep.dir=${{nadexp.new_dir:'{str(sweep_dir).replace(chr(39), chr(92) + chr(39))}/m'}}"
    for _ in range(2):
        done = run_cli("-m", *QUICK, "arch=logreg", "dataset.direction=[1,0],[2,0]", pattern)
        assert done.returncode == 0, done.stderr[-2000:]
    found = sorted(str(p.relative_to(sweep_dir)) for p in sweep_dir.glob("*/*/result.json"))
    assert found == ["m/0/result.json", "m/1/result.json", "m_2/0/result.json", "m_2/1/result.json"]


def test_composing_a_config_creates_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("NADEXP_ROOT", str(tmp_path))
    for overrides in ([], ["experiment=fourier_lenet"], ["experiment=nads"]):
        assert run_cli(*overrides, "--cfg", "all", "--resolve").returncode == 0  # the run folder's name resolved too
        compose_config(overrides, output_dir=tmp_path / "given")
    assert not list(tmp_path.iterdir())  # neither outputs/runs/ nor outputs/multiruns/, nor the given folder


def test_what_an_experiment_sweeps_itself_is_named_by_its_label_not_by_a_digest():
    for variant in ("plain", "nad_flip", "fourier_flip"):
        assert suffix("experiment=cifar10_flip_table", "arch=lenet", f"dataset.variant={variant}") == ""
    assert suffix("experiment=cifar10", "arch=lenet", "dataset.variant=nad_flip") != ""  # not swept there: a digest


def test_results_written_atomically_get_the_permissions_open_gives(tmp_path):
    write_json_atomic(tmp_path / "result.json", {"test_acc": 0.5})
    (tmp_path / "plain.json").write_text("{}")
    assert (tmp_path / "result.json").stat().st_mode == (tmp_path / "plain.json").stat().st_mode  # not owner-only
