"""torchvision and timm models by name: built fresh for any input shape, and taken by what takes an arch."""

import math
import sys

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from nadexp.config import compose_config
from nadexp.errors import ConfigError
from nadexp.estimators.hyperplanes import analysed_layers
from nadexp.estimators.nads import NADEstimator
from nadexp.estimators.representations import auto_stages, stage_representations
from nadexp.models.library import timm_model, torchvision_model
from nadexp.run.context import Run
from nadexp.run.execute import execute
from nadexp.sweeps.runner import plan
from nadexp.training.stacked import stacking_failure

from conftest import LIBRARY_ARCHS, QUICK, cifar10_overrides, write_learnable_cifar10

timm = pytest.importorskip("timm")

SMALL = [  # (builder, name, kwargs): small members of each family
    (torchvision_model, "shufflenet_v2_x0_5", {}),
    (torchvision_model, "mobilenet_v3_small", {}),
    (timm_model, "vit_tiny_patch16_224", {"depth": 2}),
    (timm_model, "convnext_atto", {"patch_size": 1}),  # a stem of stride 1 keeps 16 x 16 images deep enough
    (timm_model, "resnet10t", {}),
]


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32)])
@pytest.mark.parametrize("build, name, kwargs", SMALL, ids=[name for _, name, _ in SMALL])
def test_a_library_model_takes_the_datasets_shape_and_classes_and_gives_input_gradients(build, name, kwargs, shape):
    net = build(shape, 10, name, kwargs)
    assert net(torch.randn(3, *shape)).shape == (3, 10)
    make_net = lambda: build(shape, 1, name, kwargs)  # noqa: E731
    gradients = NADEstimator(num_networks=4, method="autograd", device="cpu").gradients(make_net, shape)
    assert gradients.shape == (4, shape[0] * shape[1] * shape[2]) and torch.isfinite(gradients).all()
    assert gradients.abs().sum() > 0 and not torch.allclose(gradients[0], gradients[1], rtol=1e-3, atol=0)  # fresh draws


def test_a_vits_position_embedding_is_drawn_afresh_for_every_network():
    make_net = lambda: timm_model((1, 16, 16), 1, "vit_tiny_patch16_224", {"depth": 1})  # noqa: E731
    first, second = make_net(), make_net()
    assert first.patch_embed.proj.kernel_size == (2, 2) and first.pos_embed.shape[1] == 64 + 1  # 8 x 8 patches + class
    assert not torch.equal(first.pos_embed, second.pos_embed)
    gradients = NADEstimator(num_networks=4, method="finite_difference", device="cpu").gradients(make_net, (1, 16, 16))
    assert len({tuple(row[:8].tolist()) for row in gradients}) == 4


def test_library_archs_are_named_by_their_model():
    cfg = compose_config(["arch=timm", "arch.name=convnext_atto", "+arch.kwargs.patch_size=1"])
    assert cfg.arch_name == "timm-convnext_atto" and cfg.run_name.startswith("timm-convnext_atto-fourier")
    assert compose_config(["arch=torchvision", "arch.name=resnet18"]).arch_name == "torchvision-resnet18"
    assert compose_config(["arch=lenet"]).arch_name == "lenet"


def test_an_unknown_name_gets_close_matches_and_a_missing_timm_names_the_extra(monkeypatch):
    with pytest.raises(ConfigError, match="close matches: vit_tiny_patch16_224"):
        timm_model((3, 32, 32), 10, "vit_tinny", {})
    with pytest.raises(ConfigError, match="close matches: resnet18"):
        torchvision_model((3, 32, 32), 10, "resnet181", {})
    with pytest.raises(ConfigError, match="cannot take images"):
        torchvision_model((3, 16, 16), 10, "alexnet", {})  # its pools need larger images
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install -e \"\.\[timm\]\""):
        timm_model((3, 32, 32), 10, "vit_tiny_patch16_224", {})


def test_a_timm_vit_trains_on_a_direction_and_estimates_its_nads(tmp_path):
    arch = ["arch=timm", "arch.name=vit_tiny_patch16_224", "+arch.kwargs.depth=1", "dataset.shape=[1,16,16]"]
    overrides = [*QUICK, *arch]
    result = execute(compose_config(overrides, output_dir=tmp_path / "train"), overrides)
    assert result["arch"] == "timm-vit_tiny_patch16_224" and 0 <= result["test_acc"] <= 1
    overrides = ["experiment=nads", *arch, "estimator.method=autograd", "estimator.num_networks=16", "logger=none"]
    found = execute(compose_config(overrides, output_dir=tmp_path / "nads"), overrides)
    assert found["num_networks"] == 16 and (tmp_path / "nads" / "nads.npy").is_file()


def test_the_analyses_find_a_vits_patch_embedding_and_its_quarter_depth_blocks():
    net = timm_model((3, 32, 32), 10, "vit_tiny_patch16_224", {"depth": 8})
    assert "patch_embed.proj" in analysed_layers(net)  # the patch embedding is a conv layer, named as such
    assert auto_stages(net) == ["blocks.1", "blocks.3", "blocks.5", "blocks.7"]
    representations = stage_representations(net, auto_stages(net), torch.randn(5, 3, 32, 32))
    assert all(r.shape == (5, 192) for r in representations.values())  # the mean token of each block
    assert auto_stages(timm_model((3, 32, 32), 10, "convnext_atto", {})) == [f"stages.{i}" for i in range(4)]
    assert auto_stages(torchvision_model((3, 32, 32), 10, "resnet18", {})) == ["layer1", "layer2", "layer3", "layer4"]


@pytest.mark.parametrize("arch", [a for a in LIBRARY_ARCHS if a not in ("torchvision", "timm")])
def test_the_study_archs_build_for_both_image_sizes_and_train_stacked_or_say_why_not(arch):
    for shape in ((1, 16, 16), (3, 32, 32)):
        cfg = compose_config([f"arch={arch}"])
        net = instantiate(cfg.arch, input_shape=shape, num_classes=2)
        assert net(torch.randn(2, *shape)).shape == (2, 2) and cfg.arch_name == arch
    assert stacking_failure(net, (3, 32, 32)) is None  # torch.func vectorises them: sweeps stack them


def test_a_sweep_of_a_model_that_cannot_be_stacked_trains_one_cell_at_a_time(monkeypatch, caplog):
    class Unstackable(nn.Module):  # .item() inside forward: torch.func cannot vectorise it
        def __init__(self, input_shape, num_classes):
            super().__init__()
            self.linear = nn.Linear(math.prod(input_shape), num_classes)

        def forward(self, x):
            return self.linear(x.flatten(1)) * float(x.mean().item() != 2.0)

    assert "item" in stacking_failure(Unstackable((1, 8, 8), 2), (1, 8, 8))
    monkeypatch.setattr("nadexp.models.LogReg", Unstackable)
    cfg = compose_config(
        ["experiment=single", "sweep=fourier", "arch=logreg", "dataset.shape=[1,8,8]", "logger=none", "sweep.models_at_once=2"]
    )
    with pytest.raises(ConfigError, match="cannot be trained as stacked models"):
        plan(Run.start(cfg, "sweep"))
    caplog.set_level("INFO")
    cfg.sweep.models_at_once = "auto"
    assert plan(Run.start(cfg, "sweep")).models_at_once == 1 and "training one cell at a time" in caplog.text


def test_a_network_constant_at_init_has_no_nads_until_its_classifier_is_drawn():
    shape = (1, 16, 16)
    estimator = NADEstimator(num_networks=4, method="autograd", device="cpu", networks_per_batch=4)
    zero_head = lambda: timm_model(shape, 1, "mixer_s16_224", {})  # noqa: E731  timm zero-initialises its classifier
    with pytest.raises(ConfigError, match="arch.reset_head=true"):
        estimator.estimate(zero_head, shape)
    drawn = lambda: timm_model(shape, 1, "mixer_s16_224", {}, reset_head=True)  # noqa: E731
    assert estimator.estimate(drawn, shape)["eigenvalues"][0] > 0


def test_a_trained_vit_goes_through_both_analyses(tmp_path, nads_dir):
    """A timm ViT trained on the CIFAR-10 fixture with per-epoch snapshots; then its hyperplane statistics (the
    patch embedding among the conv layers) and its class densities (blocks at each quarter of its depth)."""
    write_learnable_cifar10(tmp_path / "data", 200, 100, noise=60, seed=4)
    vit = ["arch=vit_tiny"]  # 4 blocks
    overrides = cifar10_overrides(
        tmp_path / "data", nads_dir, "experiment=cifar10_snapshots", *vit, "trainer.max_epochs=1", "dataset.batch_size=50"
    )
    overrides = [o for o in overrides if o != "arch=lenet"]
    execute(compose_config(overrides, output_dir=tmp_path / "run"), overrides)
    common = [*vit, f"estimator.run_dir={tmp_path / 'run'}", "logger=none"]
    planes = ["experiment=hyperplanes_lenet", *common, "estimator.critical=false"]
    result = execute(compose_config(planes, output_dir=tmp_path / "planes"), planes)
    layers = (tmp_path / "planes" / "layers.csv").read_text()
    assert result["snapshots"] == [0, 1] and layers.splitlines()[1].startswith("patch_embed.proj,")
    density = ["experiment=class_density_lenet", *common, "estimator.kl_samples=100"]
    result = execute(compose_config(density, output_dir=tmp_path / "density"), density)
    assert result["stages"] == ["blocks.0", "blocks.1", "blocks.2", "blocks.3"] and result["examples"] == 200
