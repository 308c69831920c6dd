"""GPU-correct before a GPU: what a CUDA device changes, checked on a CPU wherever a CPU can check it.

Every draw that decides a number is made by a CPU generator and moved (so a seed gives the same data and networks
on every device); DDP runs each multirun job with ranks of its own, saves snapshots collectively and counts every
test sample once; sweeps size and spread their work over the GPUs they see; TF32 is an explicit, recorded
setting. tests/test_gpu.py checks the rest on a GPU (`make gpu-check`).
"""

import ast
import json
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nadexp.config import compose_config
from nadexp.data.bases import fourier_direction
from nadexp.data.datamodule import DirectionalDataModule, random_crop_and_flip
from nadexp.data.directional import DirectionalDataset
from nadexp.devices import agreement_tolerance, apply_tf32, auto_device, tf32_enabled
from nadexp.errors import ConfigError
from nadexp.estimators import nads as nads_module
from nadexp.estimators.draws import fresh_networks, stacked_networks
from nadexp.estimators.nads import NADEstimator
from nadexp.generators import seeded
from nadexp.models import LeNet
from nadexp.run.context import Run
from nadexp.run.identity import result_settings
from nadexp.sweeps import runner
from nadexp.training.module import CUDA_STREAM, RANK_STREAM, Classifier
from nadexp.training.snapshots import EpochSnapshots

from conftest import QUICK, ROOT, refusal, run_cli

PACKAGE = ROOT / "nadexp"
RANDOM_OPS = {"randn", "rand", "randint", "randperm", "normal", "bernoulli", "multinomial", "poisson"}
ON_THE_INPUTS_DEVICE = {"randn_like", "rand_like", "randint_like"}  # draw wherever their argument lives


def device_draws(source: str) -> list[str]:
    """The random draws in ``source`` that a generator on another device than the CPU may make: a torch.Generator
    given a device, a random op given a device (other than "cpu"), a *_like random op."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        device = next((k.value for k in node.keywords if k.arg == "device"), None)
        on_the_cpu = device is None or (isinstance(device, ast.Constant) and device.value == "cpu")
        if (
            (name == "Generator" and (node.args or not on_the_cpu))
            or (name in RANDOM_OPS and not on_the_cpu)
            or name in ON_THE_INPUTS_DEVICE
        ):
            found.append(ast.unparse(node))
    return found


def test_no_draw_that_decides_a_number_is_made_on_another_device():
    found = {str(path.relative_to(ROOT)): device_draws(path.read_text()) for path in sorted(PACKAGE.rglob("*.py"))}
    assert not {path: calls for path, calls in found.items() if calls}


def test_the_scan_finds_draws_on_a_device():  # it checks itself, on the lines D(v) used to draw with
    before = (
        "g = torch.Generator(device=device).manual_seed(1)\nx = torch.randn(4, 8, generator=g, device=device)\ny = torch.rand_like(x)\n"
    )
    assert len(device_draws(before)) == 3
    assert device_draws("g = torch.Generator().manual_seed(1)\nx = torch.randn(4, generator=g).to(device)\n") == []


def test_d_v_is_the_cpu_draw_moved_to_the_device():
    dataset = DirectionalDataset(direction=[1, 2], shape=[1, 8, 8], n_train=64, n_test=32, seed=5)
    x, y = dataset.sample("train")
    # the protocol's formula drawn by a CPU generator: the numbers D(v) has always had on a CPU
    stream = np.random.SeedSequence([5, 0]).generate_state(1)[0]
    generator = torch.Generator().manual_seed(int(stream))
    v = fourier_direction(1, 2, (1, 8, 8), phase="cosine").flatten()
    noise = dataset.sigma * torch.randn(64, 64, generator=generator)
    noise -= (noise @ v)[:, None] * v
    labels = (torch.arange(64) % 2)[torch.randperm(64, generator=generator)]
    assert torch.equal(x.reshape(64, -1), noise + dataset.eps / 2 * (2.0 * labels - 1)[:, None] * v)
    assert torch.equal(y, labels)
    moved, moved_labels = dataset.sample("train", device="meta")  # drawn elsewhere, only moved there
    assert moved.device.type == "meta" and moved.shape == x.shape and moved_labels.shape == y.shape


def test_networks_are_drawn_on_the_cpu_and_a_template_elsewhere_is_refused():
    stacked = next(stacked_networks(LeNet((1, 16, 16), 1), 2, 2, generator=seeded(0)))
    assert {t.device.type for t in stacked.values()} == {"cpu"}
    with pytest.raises(ValueError, match="drawn on the CPU"):
        next(stacked_networks(LeNet((1, 16, 16), 1).to("meta"), 2, 2, generator=seeded(0)))
    with pytest.raises(ValueError, match="drawn on the CPU"):
        next(fresh_networks(LeNet((1, 16, 16), 1).to("meta"), 2, generator=seeded(0)))


@pytest.mark.parametrize("method", ["finite_difference", "autograd"])
def test_the_nad_estimator_keeps_its_template_on_the_cpu_whatever_its_device(monkeypatch, method):
    seen = {}

    def capture(template, points, *args, generator, **kwargs):
        seen.update(template=template, points=points, generator=generator, args=args)
        return torch.ones(len(points), 256)

    monkeypatch.setattr(nads_module, f"{'autograd' if method == 'autograd' else 'finite_difference'}_gradients", capture)
    NADEstimator(method=method, num_networks=4, device="meta").gradients(lambda: LeNet((1, 16, 16), 1), (1, 16, 16))
    assert {p.device.type for p in seen["template"].parameters()} == {"cpu"}
    assert seen["points"].device.type == "cpu" and seen["generator"].device.type == "cpu"
    assert torch.device("meta") in seen["args"]  # where the networks compute


def test_augmentation_draws_from_the_cpu_generator_on_any_device():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    out = random_crop_and_flip(torch.zeros(4, 3, 8, 8, device="meta"))
    assert out.device.type == "meta" and out.shape == (4, 3, 8, 8)
    assert not torch.equal(before, torch.get_rng_state())  # the crops and flips came from the CPU's stream
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    torch.manual_seed(1)
    first = random_crop_and_flip(images)
    torch.manual_seed(1)
    assert torch.equal(first, random_crop_and_flip(images))


def test_each_ddp_rank_draws_a_stream_of_its_own():
    model = Classifier(LeNet((1, 16, 16), 2), partial(torch.optim.SGD, lr=0.1), seed=3)
    states = []
    for rank in (0, 1, 2):
        torch.manual_seed(11)
        model._trainer = SimpleNamespace(global_rank=rank)
        model.on_fit_start()
        states.append(torch.get_rng_state())
    torch.manual_seed(11)
    assert torch.equal(states[0], torch.get_rng_state())  # rank zero goes on with the run's own stream
    for rank in (1, 2):
        assert torch.equal(states[rank], seeded(3, RANK_STREAM, rank).get_state())
    assert not torch.equal(states[1], states[2]) and RANK_STREAM != CUDA_STREAM


def test_every_rank_takes_rank_zeros_decision_to_save_a_snapshot(tmp_path):
    saved = []
    trainer = SimpleNamespace(
        strategy=SimpleNamespace(broadcast=lambda value, src=0: False),  # rank zero has no file yet
        save_checkpoint=lambda path, weights_only: saved.append(Path(path).name),
    )
    (tmp_path / "epoch_001.ckpt").touch()  # ... but this rank already sees the one rank zero is writing
    EpochSnapshots(str(tmp_path))._save(trainer, 1)
    assert saved == ["epoch_001.ckpt"]  # so it joins the collective save instead of skipping it


def test_under_ddp_each_test_sample_is_on_exactly_one_rank():
    module = DirectionalDataModule(shape=[1, 4, 4], n_train=8, n_test=9)
    shards = []
    for rank in range(2):
        module.trainer = SimpleNamespace(world_size=2, global_rank=rank, strategy=SimpleNamespace(root_device=torch.device("cpu")))
        module.train_set = None
        module.setup()
        shards.append(list(module.val_dataloader().sampler))
    assert sorted(shards[0] + shards[1]) == list(range(9))


@pytest.mark.slow  # about 35 s on 2 cores: four rank processes
def test_ddp_multirun_jobs_launch_their_own_ranks(tmp_path):
    """Jobs of different directions and lengths, two CPU ranks each (gloo), and an odd test split."""
    sweep_dir = tmp_path / "multirun"
    quick = [o for o in QUICK if not o.startswith(("trainer.max_epochs", "dataset.n_test", "trainer.accelerator", "experiment"))]
    process = run_cli(
        "-m",
        "experiment=single",
        "trainer=ddp_cpu",
        *quick,
        "dataset.direction=[1,0],[2,0]",
        "trainer.max_epochs=1,2",
        "dataset.n_test=129",
        f"hydra.sweep.dir={sweep_dir}",
        timeout=600,
        process=True,  # Lightning starts rank 1 by running the process's command again
    )
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-3000:]
    assert output.count("Launching 4 jobs") == 1  # rank 1 ran its job, not the multirun again
    results = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/result.json"))]
    assert len(results) == 4
    assert sorted((r["direction"], r["epochs"]) for r in results) == [([1, 0], 1), ([1, 0], 2), ([2, 0], 1), ([2, 0], 2)]
    for result in results:
        assert result["world_size"] == 2
        correct = result["test_acc"] * 129  # every test sample counted once: a whole number of the 129
        assert abs(correct - round(correct)) < 1e-3, result["test_acc"]


FAILS_ON_RANK_1 = """
import os
from torch import nn


class FailsOnRank1(nn.Module):
    def __init__(self, input_shape, num_classes, fail=False):
        super().__init__()
        self.fc, self.fail = nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_classes), fail

    def forward(self, x):
        if self.fail and self.training and os.environ.get("LOCAL_RANK") == "1":
            raise RuntimeError("rank 1 fails")
        return self.fc(x.flatten(1))
"""


@pytest.mark.slow  # about 40 s on 2 cores: two jobs of two rank processes
def test_a_failing_ddp_rank_fails_its_job_and_the_multirun_goes_on(tmp_path):
    (tmp_path / "failing.py").write_text(FAILS_ON_RANK_1)
    sweep_dir = tmp_path / "multirun"
    quick = [o for o in QUICK if not o.startswith(("trainer.accelerator", "experiment"))]
    process = run_cli(
        "-m", "experiment=single", "trainer=ddp_cpu", *quick, "arch=custom", "arch.target=failing.FailsOnRank1",
        "+arch.kwargs.fail=true,false", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, timeout=600, process=True,
    )  # fmt: skip
    results = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/result.json")}
    output = process.stdout + process.stderr
    assert results["0"]["status"] == "failed" and "test_acc" in results["1"], output[-3000:]  # the next job ran
    assert process.returncode == 1 and "Traceback" not in process.stderr, output[-3000:]
    assert process.stderr.strip().splitlines()[-1].startswith("error: "), process.stderr[-1000:]


@pytest.mark.slow
def test_ddp_with_snapshots_saves_every_epoch(tmp_path):
    run_dir = tmp_path / "run"
    process = run_cli(
        *[o for o in QUICK if not o.startswith(("callbacks", "trainer.max_epochs", "trainer.accelerator"))],
        "trainer=ddp_cpu",
        "callbacks=snapshots",
        "~callbacks.progress_bar",
        "trainer.enable_checkpointing=true",
        "trainer.max_epochs=2",
        f"hydra.run.dir={run_dir}",
        timeout=600,
        process=True,
    )
    assert process.returncode == 0, (process.stdout + process.stderr)[-3000:]
    assert sorted(p.name for p in (run_dir / "snapshots").glob("epoch_*.ckpt")) == ["epoch_000.ckpt", "epoch_001.ckpt", "epoch_002.ckpt"]


@pytest.fixture
def four_gpus(monkeypatch):
    """A machine that says it has four GPUs, with 8 GiB free on each: enough to check what is decided from that."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    free = {"bytes": 8 * 2**30}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 80 * 2**30))
    return free


SWEEP = ["experiment=single", "sweep=fourier", "arch=lenet", "dataset.shape=[1,16,16]", "logger=none"]


def test_shards_spread_over_the_gpus(four_gpus, tmp_path):
    assert [auto_device(i) for i in (0, 1, 5)] == [torch.device(f"cuda:{i}") for i in (0, 1, 1)]
    cfg = compose_config([*SWEEP, "sweep.num_shards=6", "sweep.shard=5"], output_dir=tmp_path)
    assert runner._device(cfg) == torch.device("cuda:1")
    cell = runner.cell_config(cfg, [1, 0])
    assert cell.trainer.accelerator == "gpu" and list(cell.trainer.devices) == [1]
    assert NADEstimator().resolved_device() == torch.device("cuda:0")  # job 0 outside a multirun


def test_stacked_models_at_once_follow_the_free_gpu_memory(four_gpus, tmp_path):
    cfg = compose_config(SWEEP, output_dir=tmp_path)
    device = torch.device("cuda:0")
    sizes = {}
    for gib in (0.001, 1, 2, 1000):
        four_gpus["bytes"] = int(gib * 2**30)
        sizes[gib] = runner.gpu_models_at_once(cfg, device)
    assert sizes[0.001] == 1 and sizes[1000] == runner.GPU_MAX_MODELS_AT_ONCE
    assert 1 < sizes[1] < runner.GPU_MAX_MODELS_AT_ONCE and abs(sizes[2] - 2 * sizes[1]) <= 1
    assert runner.models_at_once(cfg) == sizes[1000]


def test_the_stacked_probe_runs_on_the_sweeps_device_and_its_failure_falls_back(monkeypatch, tmp_path):
    probed = []

    def fails_there(net, shape, channels_last=False, device="cpu"):
        probed.append(torch.device(device))
        return "RuntimeError: no batching rule on this device"

    monkeypatch.setattr(runner, "stacking_failure", fails_there)
    cfg = compose_config([*SWEEP, "sweep.stride=8", "trainer.accelerator=cpu"], output_dir=tmp_path / "auto")
    assert runner.plan(Run.start(cfg, "sweep")).models_at_once == 1 and probed == [runner._device(cfg)]
    cfg = compose_config([*SWEEP, "sweep.stride=8", "trainer.accelerator=cpu", "sweep.models_at_once=4"], output_dir=tmp_path / "four")
    with pytest.raises(ConfigError, match="cannot be trained as stacked models"):
        runner.plan(Run.start(cfg, "sweep"))


def test_a_stacked_group_out_of_memory_is_trained_again_in_halves(monkeypatch, tmp_path, caplog):
    trained = []
    real = runner.train_cells_stacked

    def at_most_two(cfg, directions):
        if len(directions) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (as a GPU would say)")
        trained.append(len(directions))
        return real(cfg, directions)

    monkeypatch.setattr(runner, "train_cells_stacked", at_most_two)
    overrides = ["experiment=single", "sweep=fourier", "arch=logreg", "dataset.shape=[1,8,8]", "sweep.stride=2", "logger=none"]
    overrides += ["dataset.n_train=200", "dataset.n_test=100", "trainer.max_epochs=1", "trainer.accelerator=cpu", "sweep.models_at_once=5"]
    cfg = compose_config(overrides, output_dir=tmp_path)
    cells = len(runner.plan(Run.start(cfg, "sweep")).groups[0]) + sum(len(g) for g in runner.plan(Run.start(cfg, "sweep")).groups[1:])
    with caplog.at_level("WARNING", logger="nadexp.sweeps.runner"):
        result = runner.run_sweep(Run.start(cfg, "sweep"))
    records = [json.loads(p.read_text()) for p in (tmp_path / "cells").glob("*.json")]
    assert result["cells"] == cells == len(records) == sum(trained) and all(r["status"] == "ok" for r in records)
    assert max(r["models_at_once"] for r in records) <= 2  # the K each cell was really trained with
    assert "out of GPU memory training 5 stacked models" in caplog.text


def test_tf32_is_an_explicit_setting_of_each_run(tmp_path):
    try:
        apply_tf32(True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32 and tf32_enabled()
        apply_tf32(False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        apply_tf32(False)
    on = compose_config(["experiment=nads", "tf32=true"], output_dir=tmp_path / "on")
    off = compose_config(["experiment=nads"], output_dir=tmp_path / "off")
    assert result_settings(on, "nads")["tf32"] is True and "tf32" not in result_settings(off, "nads")  # a directory of its own
    # self-checks tolerate what the precision in use rounds, and no more
    cuda = torch.device("cuda")
    assert agreement_tolerance(torch.float32, "cpu") < agreement_tolerance(torch.bfloat16, "cpu")
    assert agreement_tolerance(torch.float32, cuda) == agreement_tolerance(torch.float32, "cpu")  # TF32 off


def test_a_tf32_that_is_not_a_boolean_is_refused_before_anything_starts(tmp_path):
    message = refusal(["experiment=single", "tf32=maybe"], tmp_path / "run")
    assert message == "tf32='maybe' must be true or false (TF32 in float32 GPU products)"


@pytest.mark.parametrize("amx", [False, True], ids=["cpu_without_amx", "cpu_with_amx"])
def test_nads_default_to_float32_everywhere_and_an_auto_estimate_is_not_resumed_in_another_dtype(tmp_path, monkeypatch, amx):
    """dtype=auto is bfloat16 on a CPU with AMX and float32 without: each branch is set here, not read off the machine."""
    from hydra.utils import instantiate

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert compose_config(["experiment=nads"], output_dir=tmp_path / "default").estimator.dtype == "float32"
    assert NADEstimator().dtype == "float32"
    overrides = ["experiment=nads", "estimator.num_networks=8", "estimator.dtype=auto", "estimator.device=cpu"]
    cfg = compose_config(overrides, output_dir=tmp_path)
    assert Path(cfg.paths.output_dir) == tmp_path
    estimator = instantiate(cfg.estimator)
    estimator.prepare(cfg)  # LeNet: a family that keeps its NADs in bfloat16
    here, other = ("bfloat16", "float32") if amx else ("float32", "bfloat16")
    assert estimator.resolved_dtype(torch.device("cpu")) == getattr(torch, here)
    (tmp_path / "result.json").write_text(json.dumps({"dtype": other}))  # an earlier estimate on another machine
    with pytest.raises(ConfigError, match=f"holds a {other} estimate"):
        estimator.prepare(cfg)
    (tmp_path / "result.json").write_text(json.dumps({"dtype": here}))  # this machine's own: resumed
    estimator.prepare(cfg)


def test_dtype_auto_takes_bfloat16_only_for_the_families_measured_to_keep_their_nads(tmp_path, monkeypatch, caplog):
    from hydra.utils import instantiate

    from nadexp.estimators.nads import BFLOAT16_FAMILIES, arch_family

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)  # where bfloat16 is fast
    assert [arch_family(a) for a in ("lenet_nopool", "timm-vit_tiny_patch16_224", "torchvision-resnet18", "TinyConv")] == [
        "lenet", "vit", "resnet", "other"
    ]  # fmt: skip
    for arch, shape in (("lenet", "[1,32,32]"), ("vit_tiny", "[1,16,16]"), ("densenet121", "[1,16,16]")):
        overrides = ["experiment=nads", f"arch={arch}", f"dataset.shape={shape}", "estimator.dtype=auto", "estimator.num_networks=4"]
        cfg = compose_config(overrides, output_dir=tmp_path / arch)
        estimator = instantiate(cfg.estimator)
        estimator.prepare(cfg)
        kept = arch_family(cfg.arch_name) in BFLOAT16_FAMILIES
        assert estimator.resolved_dtype(torch.device("cpu")) == (torch.bfloat16 if kept else torch.float32), arch
        with caplog.at_level("INFO", logger="nadexp.estimators.nads"):
            estimator.say_dtype(torch.device("cpu"))
        assert f"estimator.dtype=auto: {'bfloat16' if kept else 'float32'} for {cfg.arch_name}" in caplog.text, arch
    assert "lenet" in BFLOAT16_FAMILIES and not {"vit", "densenet"} & set(BFLOAT16_FAMILIES)  # measured: 0.44, 0.95


def test_local_ddp_ranks_inside_a_launchers_worker_are_refused_before_anything_starts(monkeypatch, tmp_path):
    from omegaconf import OmegaConf

    from nadexp.training import ddp
    from nadexp.training.train import build

    cfg = compose_config([*QUICK, "trainer=ddp_cpu"], output_dir=tmp_path)
    _, _, trainer = build(cfg)
    assert ddp.launches_ranks(trainer)
    worker = {"launcher": {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}}
    monkeypatch.setattr(ddp, "multirun_job", lambda: OmegaConf.create({**worker, "runtime": {"choices": {"hydra/launcher": "local"}}}))
    with pytest.raises(ConfigError, match="inside hydra/launcher=local"):
        ddp.check_rank_launch(cfg, trainer)
    basic = {"launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, "runtime": {"choices": {}}}
    monkeypatch.setattr(ddp, "multirun_job", lambda: OmegaConf.create(basic))
    ddp.check_rank_launch(cfg, trainer)  # the basic launcher runs jobs in this process: each launches its own ranks


def test_one_helper_says_whether_this_is_rank_zero_in_every_launcher(monkeypatch, tmp_path):
    from nadexp.devices import RANK_VARIABLES, is_rank_zero
    from nadexp.results.schema import record_failure

    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert is_rank_zero()
    for name, value in (("LOCAL_RANK", "1"), ("NODE_RANK", "1"), ("SLURM_PROCID", "3"), ("RANK", "2")):  # Lightning, SLURM, torchrun
        with monkeypatch.context() as env:
            env.setenv(name, value)
            assert not is_rank_zero(), name
            cfg = compose_config(["experiment=single"], output_dir=tmp_path / name)
            (tmp_path / name).mkdir()
            (tmp_path / name / "config.yaml").write_text("seed: 0\n")
            record_failure(cfg, "train", RuntimeError("a rank failed"), 1.0)
            assert not (tmp_path / name / "result.json").exists()  # only rank 0 writes the failed record


def test_the_machine_record_names_the_gpu_that_ran(monkeypatch):
    from nadexp.results.machine import machine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    named = lambda device: f"GPU cuda:{device}" if isinstance(device, int) else f"GPU {device}"  # noqa: E731
    monkeypatch.setattr(torch.cuda, "get_device_name", named)
    assert machine("cuda:1")["gpu"] == "GPU cuda:1" and machine()["gpu"] == "GPU cuda:0" and machine("cpu")["gpu"] == "GPU cuda:0"
