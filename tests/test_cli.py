"""`python run.py` as users run it, through the entry function run.py calls (tests/conftest.py run_cli): the
run-directory contract and bad input."""

import csv
import json

import pytest
from omegaconf import OmegaConf

from nadexp.config import compose_config
from nadexp.errors import ConfigError
from nadexp.run.execute import execute

from conftest import QUICK, ROOT, run_cli

RESULT_KEYS = {"arch", "dataset", "basis", "direction", "seed", "train_acc", "test_acc", "wall_time_s", "versions", "history"}


def test_a_run_writes_result_json_and_the_resolved_config(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli(*QUICK, "arch=logreg", "dataset.direction=[2,3]", "seed=5", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert RESULT_KEYS <= result.keys()
    assert (result["arch"], result["dataset"], result["basis"], result["direction"], result["seed"]) == (
        "logreg",
        "directional",
        "fourier",
        [2, 3],
        5,
    )
    assert 0 <= result["test_acc"] <= 1 and result["versions"]["torch"] and len(result["history"]) == 1
    config = OmegaConf.load(run_dir / "config.yaml")
    assert config.dataset.seed == 5 and config.arch_name == "logreg"  # resolved, not ${seed}
    assert "test acc" in done.stdout and str(run_dir / "result.json") in done.stdout


def test_same_seed_gives_the_same_numbers(tmp_path):
    from nadexp.run.execute import execute

    settings = [*QUICK, "arch=lenet", "trainer.max_epochs=2"]
    done = run_cli(*settings, f"hydra.run.dir={tmp_path / 'a'}")
    assert done.returncode == 0, done.stderr
    first = json.loads((tmp_path / "a" / "result.json").read_text())
    again = execute(compose_config(settings, output_dir=tmp_path / "b"), settings)  # another process, the same seed
    assert first["history"] == again["history"] and first["test_acc"] == again["test_acc"]


def test_a_two_value_multirun_writes_two_results_and_a_summary(tmp_path):
    sweep_dir = tmp_path / "sweep"
    done = run_cli("-m", *QUICK, "arch=logreg", "dataset.direction=[1,0],[5,5]", f"hydra.sweep.dir={sweep_dir}")
    assert done.returncode == 0, done.stderr
    directions = sorted(json.loads((sweep_dir / job / "result.json").read_text())["direction"] for job in ("0", "1"))
    assert directions == [[1, 0], [5, 5]]
    with open(sweep_dir / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["ok", "ok"] and "test_acc" in done.stdout


def test_python_run_py_trains_once_and_make_run_is_the_demo_sweep():
    job = OmegaConf.create(run_cli("--cfg", "job").stdout)
    assert job.task == "train" and not job.sweep and job.arch._target_.endswith("LeNet")
    demo = OmegaConf.load(ROOT / "conf" / "experiment" / "fourier_demo.yaml")
    assert (
        demo.hydra.mode == "MULTIRUN"
        and demo.hydra.sweeper.params.arch == "logreg,lenet"
        and (demo.sweep.stride, demo.sweep.max_frequency) == (4, 8)
    )
    assert "run.py experiment=fourier_demo" in (ROOT / "Makefile").read_text()


def test_easy_vs_hard_trains_lenet_on_two_directions():
    done = run_cli("experiment=easy_vs_hard", "--cfg", "hydra", "-p", "hydra.sweeper.params")
    assert OmegaConf.create(done.stdout)["dataset.direction"] == "[1,0],[16,16]"
    assert OmegaConf.create(run_cli("experiment=easy_vs_hard", "--cfg", "job").stdout).task == "train"


@pytest.mark.slow  # two-process DDP from the command line is also run on CIFAR-10 files (tests/test_cifar10.py)
def test_two_process_ddp_on_cpu_completes(tmp_path):
    run_dir = tmp_path / "ddp"
    done = run_cli(*QUICK, "arch=lenet", "trainer=ddp_cpu", "dataset.n_train=512", f"hydra.run.dir={run_dir}", process=True)
    assert done.returncode == 0, done.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["world_size"] == 2 and result["steps"] == 2  # 512 samples / (2 ranks x 128)


def test_wandb_offline_writes_a_run_folder_without_network(tmp_path):
    run_dir = tmp_path / "wandb"
    done = run_cli(
        *[o for o in QUICK if not o.startswith("logger")],
        "logger=wandb",
        "arch=logreg",
        f"hydra.run.dir={run_dir}",
        env={"WANDB_MODE": "", "WANDB_API_KEY": ""},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    output = (done.stdout + done.stderr).splitlines()
    assert not [line for line in output if line.startswith("wandb:")]  # not W&B's own block of lines
    assert [line.split(" - ", 1)[1] for line in output if "wandb sync" in line] == [
        f"W&B offline run {runs[0].name.rsplit('-', 1)[1]}: upload it with `wandb sync {runs[0]}`"
    ]


def test_an_impossible_optimizer_setting_stops_the_run_before_anything_is_written(tmp_path):
    run_dir = tmp_path / "fails"
    done = run_cli(*QUICK, "arch=logreg", "optimizer.lr=-1", f"hydra.run.dir={run_dir}")
    assert done.returncode == 2 and done.stderr.startswith("error: optimizer") and "learning rate" in done.stderr
    assert not run_dir.exists()  # not even Hydra's own files: the directory was never a run


def test_an_earlier_result_is_never_overwritten(tmp_path):
    run_dir = tmp_path / "done"
    run_dir.mkdir()
    (run_dir / "result.json").write_text('{"test_acc": 0.99}')
    done = run_cli(*QUICK, "arch=logreg", f"hydra.run.dir={run_dir}")
    assert done.returncode != 0 and "already holds" in done.stderr
    assert json.loads((run_dir / "result.json").read_text()) == {"test_acc": 0.99}


def test_the_refusal_of_a_finished_run_names_its_fix_and_the_fix_works(tmp_path):
    command = [*QUICK, "arch=logreg", f"hydra.run.dir={tmp_path / 'run'}"]
    assert run_cli(*command).returncode == 0
    first = (tmp_path / "run" / "result.json").read_text()
    again = run_cli(*command)
    assert again.returncode == 2 and again.stderr.strip().count("\n") == 0, again.stderr
    assert "add resume=true to report that result" in again.stderr and "or give another hydra.run.dir" in again.stderr
    resumed = run_cli(*command, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (tmp_path / "run" / "result.json").read_text() == first  # reported, not trained again


@pytest.mark.parametrize(
    "override, words",
    [
        ("arch=transformer", ["arch=transformer is not an option of arch", "conf/arch/"]),  # found by Hydra, said by nadexp
        ("dataset.sigma=-1", ["dataset.sigma", ">= 0"]),  # a value the dataset refuses
        ("dataset.sigmaa=3", ["dataset.sigmaa"]),  # a misspelt key of the typed dataset
    ],
)
def test_bad_input_exits_non_zero_with_one_clear_message_and_no_result(tmp_path, override, words):
    run_dir = tmp_path / "bad"
    done = run_cli(*QUICK, override, f"hydra.run.dir={run_dir}")
    assert done.returncode != 0
    first_line = done.stderr.strip().splitlines()[0]
    assert all(word in done.stderr for word in words), done.stderr
    assert words[0] in first_line, done.stderr
    assert "Traceback" not in done.stderr
    assert not (run_dir / "result.json").exists()


def test_help_lists_the_options_a_user_picks_under_nadexps_name():
    done = run_cli("--help")
    assert done.returncode == 0 and done.stdout.startswith("nadexp [group=option ...]"), done.stderr
    assert "_schema" not in done.stdout and "powered by Hydra" not in done.stdout and len(done.stdout.splitlines()) < 50
    for group in ("experiment", "arch", "dataset", "sweep", "estimator", "trainer", "logger"):
        listed = " ".join(done.stdout.split())
        assert all(option.stem in listed for option in (ROOT / "conf" / group).glob("*.yaml")), group


def test_list_experiments_prints_each_with_the_first_line_and_time_of_its_header():
    done = run_cli("list", "experiments")
    assert done.returncode == 0, done.stderr
    starts = [line.split()[0] for line in done.stdout.splitlines() if line and not line.startswith(" ")]
    assert starts == sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    fourier_lenet = done.stdout.split("fourier_lenet ", 1)[1].splitlines()
    assert fourier_lenet[0].strip().startswith("Figure: LeNet's Fourier heat map") and fourier_lenet[1].strip().startswith("Time:")
    wrong = run_cli("list", "recipes")
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: nadexp list recipes: choose one of experiment, arch")


@pytest.mark.parametrize(
    "override, line",
    [
        ("arch=lenett", "arch=lenett is not an option of arch: did you mean lenet? (its options: nadexp --help, or conf/arch/)"),
        ("experiment=fourier_dmeo", "experiment=fourier_dmeo is not an option of experiment: did you mean fourier_demo"),
        ("dataset=cifar", "dataset=cifar is not an option of dataset: did you mean cifar10 or cifar100?"),  # not its schemas
        ("trainer.max_epoch=5", "trainer.max_epoch is not a setting of trainer: did you mean trainer.max_epochs?"),
        ("dataset.sigmaa=3", "dataset.sigmaa is not a setting of dataset: did you mean dataset.sigma?"),
        ("+dataset.sigmaa=3", "dataset.sigmaa is not a setting of dataset: did you mean dataset.sigma?"),
        ("seeed=3", "seeed is not a setting: did you mean seed"),
        ("dataset.eps=abc", "dataset.eps=abc: Value 'abc' of type 'str' could not be converted to Float"),
        ("arch=[", "arch=[ is not an override: write group=option, key=value or +key=value"),
        ("lenet", "lenet is not an override"),
    ],
)
def test_hydras_errors_are_one_line_with_the_close_matches_and_exit_code_2(tmp_path, override, line):
    done = run_cli(*QUICK, override, f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith(f"error: {line}"), done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override, words",
    [
        ("dataset.eps=0", ["dataset.eps", "> 0"]),
        ("dataset.direction=[40,0]", ["dataset.direction", "kx < 32"]),
        ("dataset.n_train=1", ["dataset.n_train", ">= 2"]),
        ("dataset.basis=wavelet", ["dataset.basis", "fourier, pixel, random, nad"]),
        ("dataset.batch_size=0", ["dataset.batch_size", ">= 1"]),
    ],
)
def test_impossible_values_are_refused_with_a_message_that_names_them(tmp_path, override, words):
    with pytest.raises(ConfigError) as error:
        execute(compose_config([*QUICK, override], output_dir=tmp_path / "bad"), [override])
    assert str(error.value).startswith(words[0]) and all(word in str(error.value) for word in words)
    assert not (tmp_path / "bad").exists()


def test_online_wandb_without_credentials_is_refused_instead_of_prompting(tmp_path):
    run_dir = tmp_path / "online"
    done = run_cli(
        *[o for o in QUICK if not o.startswith("logger")],
        "logger=wandb",
        "logger.wandb.offline=false",
        f"hydra.run.dir={run_dir}",
        env={"HOME": str(tmp_path), "WANDB_API_KEY": "", "NETRC": str(tmp_path / "none")},
    )
    assert done.returncode == 2 and "wandb login" in done.stderr.splitlines()[0]
    assert not (run_dir / "result.json").exists()


@pytest.mark.parametrize(
    "logger, pattern", [("csv", "csv/metrics.csv"), ("tensorboard", "tensorboard/events.out.tfevents.*"), ("many", "csv/metrics.csv")]
)
def test_local_loggers_write_their_files(tmp_path, monkeypatch, logger, pattern):
    from nadexp.run.execute import execute

    for name in ("WANDB_MODE", "WANDB_API_KEY"):  # the config's own W&B mode (offline), as on a fresh machine
        monkeypatch.delenv(name, raising=False)
    run_dir = tmp_path / logger
    overrides = [*(o for o in QUICK if not o.startswith("logger")), f"logger={logger}", "arch=logreg"]
    execute(compose_config(overrides, output_dir=run_dir), overrides)
    assert list(run_dir.glob(pattern))


def test_the_nads_experiment_is_a_single_estimator_run():
    done = run_cli("experiment=nads", "--cfg", "job")
    assert done.returncode == 0, done.stderr
    config = OmegaConf.create(done.stdout)
    assert config.task == "nads" and config.estimator.method == "finite_difference"
    mode = run_cli("experiment=nads", "--cfg", "hydra", "-p", "hydra.mode")
    assert "MULTIRUN" not in mode.stdout + mode.stderr


@pytest.mark.parametrize("launcher", ["local", pytest.param("submitit_local", marks=pytest.mark.slow)])
def test_parallel_launchers_run_a_two_job_multirun(tmp_path, launcher):
    sweep_dir = tmp_path / launcher
    done = run_cli(
        "-m",
        f"hydra/launcher={launcher}",
        "threads=1",
        *QUICK,
        "arch=logreg",
        "dataset.direction=[1,0],[2,0]",
        f"hydra.sweep.dir={sweep_dir}",
        process=True,  # the launcher's workers send their configs back pickled: a process of its own, as a user's
    )
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads((sweep_dir / j / "result.json").read_text())["direction"] for j in ("0", "1")) == [[1, 0], [2, 0]]


def test_the_slurm_preset_composes():
    done = run_cli("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra", "-p", "hydra.launcher")
    assert done.returncode == 0, done.stderr
    launcher = OmegaConf.create(done.stdout)
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and "SlurmLauncher" in launcher._target_
