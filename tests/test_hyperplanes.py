"""estimator=hyperplanes: filter statistics against the null, critical layers, runs and bad input."""

import json
import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from nadexp.config import compose_config
from nadexp.errors import ConfigError
from nadexp.estimators.hyperplanes import HyperplaneEstimator, accuracy, analysed_layers, critical_layers, filter_cosines
from nadexp.estimators.run import estimate
from nadexp.estimators.trained_run import load_weights
from nadexp.run.context import Run
from nadexp.training import train

from conftest import ARCHS, check_config_header, check_result_schema, cifar10_overrides, refusal, run_cli, write_learnable_cifar10


def fresh(arch: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return instantiate(compose_config(["experiment=single", f"arch={arch}"]).arch, input_shape=(3, 32, 32), num_classes=10)


@pytest.mark.parametrize("arch", ["vgg11", "resnet18", "densenet121"])
def test_at_random_initialisation_the_statistics_sit_on_the_null(arch):
    net = fresh(arch, 0)
    found = HyperplaneEstimator().weight_statistics(net, net, fresh(arch, 1))
    pooled, layers = found["pooled"]["trained"], found["layers"].values()
    n = pooled["filters"]
    # mass ~ Binomial(n, 1/2) / n and mean cos ~ N(0, sum(1/d_i)) / n under the null: 4-sigma bounds
    assert abs(pooled["mass"] - 0.5) < 4 * 0.5 / math.sqrt(n)
    assert abs(pooled["mean"]) < 4 * math.sqrt(sum(s["trained"]["filters"] / s["trained"]["d"] for s in layers)) / n
    assert pooled["p_mass_null"] > 1e-4
    scaled = np.concatenate([np.asarray(s["cos"]["trained"]) * math.sqrt(s["trained"]["d"]) for s in layers])
    assert abs(scaled.std() - 1) < 4 / math.sqrt(2 * n)  # cos * sqrt(d) ~ N(0, 1): its std within 4 standard errors


def test_filters_with_positive_sums_have_zero_mass_and_reject_the_null():
    net = fresh("vgg11", 0)
    with torch.no_grad():
        for module in analysed_layers(net).values():
            module.weight.abs_()
    found = HyperplaneEstimator().weight_statistics(net, fresh("vgg11", 0), fresh("vgg11", 1))
    assert found["pooled"]["trained"]["mass"] == 0 and found["pooled"]["trained"]["p_mass_null"] < 1e-100
    assert all(s["trained"]["mass"] == 0 and s["trained"]["p_mass_null"] < 1e-3 and s["p_ks_init"] < 1e-3 for s in found["layers"].values())
    assert all(s["dist_fro"] > 0 for s in found["layers"].values())


def test_the_cosine_is_the_angle_with_the_identity_line():
    weight = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 0.0, 0.0], [-2.0, -2.0, -2.0, -2.0]]).reshape(3, 1, 2, 2)
    assert filter_cosines(weight) == pytest.approx([1.0, 0.0, -1.0])


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_of_the_zoo_is_analysed_and_1x1_convolutions_are_skipped(arch):
    net = fresh(arch, 0)
    layers = analysed_layers(net, include_linear=arch == "logreg")  # logreg has no conv layer
    assert layers and all(isinstance(m, nn.Linear) or math.prod(m.kernel_size) > 1 for m in layers.values())
    all_convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len([m for m in layers.values() if isinstance(m, nn.Conv2d)]) == len([m for m in all_convs if m.kernel_size != (1, 1)])
    found = HyperplaneEstimator(include_linear=arch == "logreg").weight_statistics(net, net, fresh(arch, 1))
    assert set(found["layers"]) == set(layers) and all(s["dist_fro"] == 0 for s in found["layers"].values())


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, nads_dir):
    """LeNet trained 4 epochs with per-epoch snapshots on a learnable stand-in of CIFAR-10."""
    root = tmp_path_factory.mktemp("snapshots")
    write_learnable_cifar10(root / "data", 600, 300, noise=60, seed=2)
    overrides = cifar10_overrides(
        root / "data", nads_dir, "experiment=cifar10_snapshots", "trainer.max_epochs=4", "optimizer.lr=0.02", "dataset.batch_size=32"
    )
    train(Run.start(compose_config(overrides, output_dir=root / "run"), "train"))
    return root / "run"


def test_training_with_snapshots_keeps_the_weights_of_every_epoch(trained_run):
    assert sorted(p.name for p in (trained_run / "snapshots").iterdir()) == [f"epoch_00{i}.ckpt" for i in range(5)]
    first, last = load_weights(trained_run / "snapshots" / "epoch_000.ckpt"), load_weights(trained_run / "snapshots" / "epoch_004.ckpt")
    assert set(first) == set(last) and not torch.equal(first["features.0.weight"], last["features.0.weight"])


def test_critical_layers_restore_exactly_and_own_weights_cost_nothing(trained_run):
    saved = json.loads((trained_run / "result.json").read_text())
    run_cfg = OmegaConf.load(trained_run / "config.yaml")
    datamodule = instantiate(run_cfg.dataset)
    datamodule.setup()
    net = instantiate(run_cfg.arch, input_shape=(3, 32, 32), num_classes=10)
    trained = load_weights(trained_run / "snapshots" / "epoch_004.ckpt")
    net.load_state_dict(trained)
    net.eval()
    x, y = datamodule.test_set.tensors
    batches = [(x[i : i + 128], y[i : i + 128]) for i in range(0, len(x), 128)]
    before = accuracy(net, batches)
    assert before == pytest.approx(saved["test_acc"], abs=1e-6) and before > 0.5
    layers = list(analysed_layers(net))
    acc, rows = critical_layers(net, layers, [("4", trained), ("0", load_weights(trained_run / "snapshots" / "epoch_000.ckpt"))], batches)
    assert acc == before and accuracy(net, batches) == before  # restored exactly
    assert all(torch.equal(net.state_dict()[k], v) for k, v in trained.items())
    own = [r for r in rows if r["snapshot"] == "4"]
    assert len(own) == len(layers) and all(r["drop"] == 0 and r["acc"] == before for r in own)
    assert any(r["drop"] > 0.05 for r in rows if r["snapshot"] == "0")  # resetting a trained layer to init costs accuracy


def test_the_estimator_writes_its_tables_and_figures(tmp_path, trained_run):
    cfg = compose_config(["experiment=hyperplanes_lenet", f"estimator.run_dir={trained_run}", "logger=none"], output_dir=tmp_path)
    result = estimate(Run.start(cfg, "hyperplanes"))
    report = json.loads((tmp_path / "hyperplanes.json").read_text())
    assert result["snapshots"] == [0, 1, 2, 3, 4] and result["layers"] == 2 == len(report["layers"])
    assert sorted(report["epochs"]) == ["0", "1", "2", "3", "4"] and report["epochs"]["0"]["features.0"]["dist_fro"] == 0
    assert {r["snapshot"] for r in report["critical"]} == {"0", "1", "2", "3", "4", "random"} and len(report["critical"]) == 12
    for name in ("layers.csv", "epochs.csv", "critical.csv", "cos_violins.png", "cos_violins.pdf", "mass_critical.png", "result.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert result["trained_acc"] == pytest.approx(json.loads((trained_run / "result.json").read_text())["test_acc"], abs=1e-6)


def test_a_run_directory_without_snapshots_gives_one_clear_message(tmp_path):
    (tmp_path / "plain_run").mkdir()
    message = refusal(["experiment=hyperplanes_lenet", f"estimator.run_dir={tmp_path / 'plain_run'}", "logger=none"], tmp_path / "out")
    assert "estimator.run_dir" in message and "callbacks=snapshots" in message
    with pytest.raises(ConfigError, match="snapshot_stride"):
        HyperplaneEstimator(snapshot_stride=0)


@pytest.mark.parametrize("figure", ["hyperplanes_init", "hyperplanes_lenet", "hyperplanes_vgg11", "cifar10_snapshots"])
def test_every_hyperplane_config_says_how_to_run_it(figure):
    check_config_header(figure)
    cfg = compose_config([f"experiment={figure}", "logger=none"])
    assert cfg.task == ("train" if figure == "cifar10_snapshots" else "hyperplanes")


def test_the_init_figure_runs_as_a_multirun(tmp_path):
    done = run_cli("experiment=hyperplanes_init", "arch=lenet,resnet18", "logger=none", f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    for arch in ("lenet", "resnet18"):
        result = json.loads((tmp_path / f"{arch}-init-s0" / "result.json").read_text())
        assert result["task"] == "hyperplanes" and result["pooled"]["trained"]["p_mass_null"] > 1e-4
        check_result_schema(result, "hyperplanes")
        assert (tmp_path / f"{arch}-init-s0" / "cos_violins.png").is_file()
