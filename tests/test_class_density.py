"""estimator=class_density: densities and splits on synthetic representations, stage hooks, SVD, a run."""

import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nadexp.config import compose_config
from nadexp.errors import ConfigError
from nadexp.estimators.class_density import ClassDensityEstimator, fit_density, relative_entropy_to_diagonal
from nadexp.estimators.representations import auto_stages, resolve_stages, stage_representations, svd_reduce
from nadexp.estimators.run import estimate
from nadexp.run.context import Run
from nadexp.training import train

from conftest import check_config_header, cifar10_overrides, refusal, run_cli, write_learnable_cifar10


def tight_and_diffuse(rng, n=300, d=8):
    """Classes 0-4: tight single Gaussians; classes 5-9: diffuse mixtures of three far-apart modes."""
    x, y = [], []
    for c in range(10):
        if c < 5:
            x.append(rng.normal(0, 0.1, (n, d)) + rng.normal(0, 1, d))
        else:
            modes = rng.normal(0, 5, (3, d))
            x.append(modes[rng.integers(0, 3, n)] + rng.normal(0, 1, (n, d)))
        y += [c] * n
    return np.concatenate(x), np.array(y)


def test_the_split_separates_tight_classes_from_diffuse_mixtures():
    x, y = tight_and_diffuse(np.random.default_rng(0))
    stage = ClassDensityEstimator(n_jobs=2, kl_samples=500).analyse({"s": x}, y)["stages"]["s"]
    split = stage["split"]
    assert sorted(split["high"]) == [0, 1, 2, 3, 4] and sorted(split["low"]) == [5, 6, 7, 8, 9]
    assert split["meaningful"] and split["gap"] > 10
    assert min(stage["classes"][c]["kl_diagonal"] for c in range(5, 10)) > 2  # mixtures are far from diagonal Gaussians
    assert all(stage["classes"][c]["within_distance"] < stage["classes"][c + 5]["within_distance"] for c in range(5))


def test_identical_gaussians_per_class_give_no_meaningful_gap():
    rng = np.random.default_rng(1)
    x, y = rng.normal(0, 1, (3000, 8)), np.repeat(np.arange(10), 300)
    split = ClassDensityEstimator(n_jobs=2, kl_samples=0).analyse({"s": x}, y)["stages"]["s"]["split"]
    assert not split["meaningful"] and split["gap_z"] < 5


@pytest.mark.parametrize("density", ["dp_mixture", "gaussian"])
def test_relative_entropy_is_zero_for_diagonal_gaussians_and_positive_for_mixtures(density):
    rng = np.random.default_rng(2)
    gaussian = rng.normal(0, 1, (2000, 8)) * rng.uniform(0.5, 2, 8)
    mixture = rng.normal(0, 5, (3, 8))[rng.integers(0, 3, 2000)] + rng.normal(0, 1, (2000, 8))
    assert abs(relative_entropy_to_diagonal(fit_density(gaussian, density), 4000)) < 0.05
    assert relative_entropy_to_diagonal(fit_density(mixture, density), 4000) > 1


def net_of(arch: str, shape=(3, 32, 32)):
    return instantiate(compose_config(["experiment=single", f"arch={arch}"]).arch, input_shape=shape, num_classes=10)


def test_hooks_capture_the_stages_of_resnet18_and_of_non_residual_archs():
    torch.manual_seed(0)
    images = torch.randn(10, 3, 32, 32)
    resnet = net_of("resnet18")
    assert auto_stages(resnet) == ["stages.0", "stages.1", "stages.2", "stages.3"]
    reps = stage_representations(resnet, auto_stages(resnet), images, batch_size=4)
    assert [tuple(r.shape) for r in reps.values()] == [(10, 64), (10, 128), (10, 256), (10, 512)]
    with torch.no_grad():  # the last stage's pooled output is what the classifier head reads
        head_input = resnet.stages(resnet.stem(images)).mean(dim=(2, 3))
    assert torch.allclose(reps["stages.3"], head_input, atol=1e-5)
    vgg = net_of("vgg11")
    assert [tuple(r.shape) for r in stage_representations(vgg, auto_stages(vgg), images).values()] == [
        (10, 64),
        (10, 128),
        (10, 256),
        (10, 512),
        (10, 512),
    ]
    assert auto_stages(net_of("lenet")) == ["features.1", "features.4"]
    assert auto_stages(net_of("densenet121"))[-1] == "features" and len(auto_stages(net_of("densenet121"))) == 4
    with pytest.raises(ConfigError, match="estimator.stages: layer9 is not a module of ResNet18"):
        resolve_stages(resnet, ["stages.0", "layer9"])
    with pytest.raises(ConfigError, match="no stages"):
        auto_stages(net_of("logreg"))


def test_svd_reduction_keeps_the_top_singular_directions():
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.normal(0, 1, (500, 5)) @ rng.normal(0, 1, (5, 40)) + 0.01 * rng.normal(0, 1, (500, 40)))
    reduced, basis, singular_values = svd_reduce(x, 5)
    error = (x.double() - reduced.double() @ basis.double().T).pow(2).sum()
    assert float(error) == pytest.approx(float(singular_values[5:].pow(2).sum()), rel=1e-3)  # exactly the discarded energy
    assert error / x.double().pow(2).sum() < 1e-3 and reduced.shape == (500, 5)
    assert torch.allclose(basis.T @ basis, torch.eye(5), atol=1e-5)
    assert svd_reduce(x, 100)[0].shape == (500, 40)  # never more than d dimensions


def test_a_run_on_the_cifar10_fixture_writes_every_output(tmp_path, nads_dir):
    write_learnable_cifar10(tmp_path / "data", 400, 100, noise=60, seed=4)
    train(
        Run.start(
            compose_config(
                cifar10_overrides(tmp_path / "data", nads_dir, "trainer.max_epochs=2", "dataset.batch_size=32", "optimizer.lr=0.02"),
                output_dir=tmp_path / "run",
            ),
            "train",
        )
    )
    scores = np.random.default_rng(5).uniform(size=400)
    np.save(tmp_path / "scores.npy", scores)
    cfg = compose_config(
        [
            "experiment=class_density_lenet",
            f"estimator.run_dir={tmp_path / 'run'}",
            "logger=none",
            "estimator.kl_samples=200",
            "estimator.n_jobs=2",
            f"estimator.scores={tmp_path / 'scores.npy'}",
        ],
        output_dir=tmp_path / "out",
    )
    result = estimate(Run.start(cfg, "class_density"))
    assert result["stages"] == ["features.1", "features.4"] and result["examples"] == 400
    report = json.loads((tmp_path / "out" / "class_density.json").read_text())
    assert [report["stages"][s]["dim"] for s in result["stages"]] == [6, 16]  # min(dims, channels)
    assert len(report["stages"]["features.4"]["classes"]) == 10 and "spearman" in report["stages"]["features.4"]["scores"]
    log_density = np.load(tmp_path / "out" / "log_density.npy")
    assert log_density.shape == (2, 400) and np.isfinite(log_density).all()
    for name in (
        "classes.csv",
        "labels.npy",
        "sorted_log_density.png",
        "sorted_log_density.pdf",
        "kl_vs_log_density.png",
        "between_class_kl.png",
        "result.json",
    ):
        assert (tmp_path / "out" / name).stat().st_size > 0, name


def test_a_missing_run_or_checkpoint_gives_one_clear_message(tmp_path):
    done = run_cli("experiment=single", "estimator=class_density", "logger=none", f"hydra.run.dir={tmp_path / 'out'}")
    assert done.returncode == 2 and "estimator.run_dir" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("arch_name: lenet\n")
    assert "not a training run" in refusal(
        ["experiment=class_density_lenet", f"estimator.run_dir={tmp_path / 'run'}", "logger=none"], tmp_path / "out2"
    )
    OmegaConf.save(compose_config(["experiment=single", "arch=lenet"]), tmp_path / "run" / "config.yaml")  # no checkpoints/
    assert "estimator.checkpoint" in refusal(
        ["experiment=class_density_lenet", f"estimator.run_dir={tmp_path / 'run'}", "logger=none"], tmp_path / "out3"
    )


@pytest.mark.parametrize("figure", ["class_density_resnet18", "class_density_vgg11", "class_density_lenet"])
def test_every_class_density_config_says_how_to_run_it(figure):
    check_config_header(figure)
    cfg = compose_config([f"experiment={figure}", "logger=none"])
    assert cfg.task == "class_density" and cfg.estimator.run_dir.endswith(f"cifar10/{figure.split('_')[-1]}-cifar10-plain-s0")
