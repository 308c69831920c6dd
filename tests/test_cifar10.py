"""dataset=cifar10 on a fixture in CIFAR-10's own format: loading, the variants, training, DDP, bad input."""

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from nadexp.config import compose_config
from nadexp.data.cifar10 import MEAN, STD, denormalise
from nadexp.data.cifar10_files import load_split
from nadexp.data.datamodule import CIFARDataModule, random_crop_and_flip
from nadexp.data.variants import apply_per_channel, complete_basis, dct_basis, flip_matrix, poison_key
from nadexp.errors import ConfigError
from nadexp.run.context import Run
from nadexp.training import build, train

from conftest import check_config_header, cifar10_overrides, refusal, run_cli, run_reports, write_learnable_cifar10


def setup(cifar10_dir, nads_dir, **spec):
    datamodule = CIFARDataModule(data_dir=str(cifar10_dir), check_md5=False, nads=str(nads_dir), **spec)
    datamodule.setup()
    return datamodule


@pytest.fixture(scope="module")
def plain(cifar10_dir, nads_dir):
    return setup(cifar10_dir, nads_dir, variant="plain")


def test_the_fixture_reads_through_torchvision_as_written(cifar10_dir):
    with open(cifar10_dir / "cifar-10-batches-py" / "data_batch_2", "rb") as handle:
        batch = pickle.load(handle, encoding="latin1")
    images, labels = load_split(cifar10_dir, train=True, check_md5=False)
    assert images.shape == (250, 3, 32, 32) and images.dtype == torch.uint8 and labels.tolist() == [i % 10 for i in range(250)]
    assert np.array_equal(images[50:100].reshape(50, -1).numpy(), batch["data"])  # batch 2 holds images 50..99
    assert len(load_split(cifar10_dir, train=False, check_md5=False)[0]) == 100


def test_plain_is_the_reference_normalisation(plain, cifar10_dir):
    images, labels = load_split(cifar10_dir, train=True, check_md5=False)
    x, y = plain.train_set.tensors
    expected = (images.float() / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    assert x.dtype == torch.float32 and torch.allclose(x, expected, atol=1e-6) and torch.equal(y, labels)
    assert plain.input_shape == (3, 32, 32) and plain.num_classes == 10


def test_a_completed_basis_is_orthogonal_and_keeps_the_given_vectors():
    rows = torch.linalg.qr(torch.randn(100, 10, dtype=torch.float64)).Q.T
    basis = complete_basis(rows)
    assert torch.allclose(basis.T @ basis, torch.eye(100, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(basis[:, :10], rows.T, atol=1e-12)
    with pytest.raises(ConfigError, match="not orthonormal"):
        complete_basis(2 * rows)
    dct = dct_basis(8, 8)
    assert torch.allclose(dct.T @ dct, torch.eye(64, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(dct[:, 0], torch.full((64,), 1 / 8, dtype=torch.float64))  # DC first


@pytest.mark.parametrize("variant", ["nad_flip", "fourier_flip"])
def test_a_flip_is_an_orthonormal_involution_on_train_and_test(plain, cifar10_dir, nads_dir, variant):
    flipped = setup(cifar10_dir, nads_dir, variant=variant)
    for before, after in ((plain.train_set, flipped.train_set), (plain.test_set, flipped.test_set)):
        x, x_flipped = before.tensors[0], after.tensors[0]
        assert not torch.allclose(x, x_flipped, atol=1e-2)
        per_channel = lambda t: t.reshape(-1, 1024).double()  # noqa: E731
        assert torch.allclose(per_channel(x_flipped).norm(dim=1), per_channel(x).norm(dim=1), rtol=1e-5)
        gram, gram_flipped = per_channel(x) @ per_channel(x).T, per_channel(x_flipped) @ per_channel(x_flipped).T
        assert torch.allclose(gram_flipped, gram, rtol=1e-4, atol=1e-2)
        assert torch.allclose(apply_per_channel(x_flipped, flipped.spec.flip), x, atol=1e-4)  # twice = identity
        assert torch.equal(after.tensors[1], before.tensors[1])


def test_the_nad_flip_sends_the_first_nad_to_the_last_basis_vector(nads_dir):
    nads = torch.as_tensor(np.load(nads_dir / "nads.npy")).reshape(64, 1024).double()
    basis = complete_basis(nads)
    assert torch.allclose(basis[:, :64], nads.T, atol=1e-6)  # the NADs first (as stored, in float32)
    assert torch.allclose(flip_matrix(basis) @ basis[:, 0], basis[:, -1], atol=1e-12)
    assert torch.allclose(flip_matrix(basis) @ basis[:, 63], basis[:, -64], atol=1e-12)


def test_poisoning_table_follows_the_reference():
    # class t: carrier (idx, idx + 1)[t // 6], channel t % 3, sign 2 (t % 2) - 1
    table = [poison_key(t) for t in range(10)]
    assert table == [(0, 0, -1), (0, 1, 1), (0, 2, -1), (0, 0, 1), (0, 1, -1), (0, 2, 1), (1, 0, -1), (1, 1, 1), (1, 2, -1), (1, 0, 1)]
    assert len(set(table)) == 10


def test_poison_sets_the_carrier_coefficient_to_eps_on_training_images_only(plain, cifar10_dir, nads_dir):
    poisoned = setup(cifar10_dir, nads_dir, variant="poison", nad_index=5, poison_eps=0.05)
    nads = torch.as_tensor(np.load(nads_dir / "nads.npy")).reshape(64, 1024).double()
    x, y = poisoned.train_set.tensors
    pixels, clean = denormalise(x).double(), denormalise(plain.train_set.tensors[0]).double()
    for label in range(10):
        offset, channel, sign = poison_key(label)
        rows = y == label
        coefficients = pixels[rows, channel].reshape(-1, 1024) @ nads[5 + offset]
        assert torch.allclose(coefficients, torch.full_like(coefficients, sign * 0.05), atol=1e-5)
        others = [c for c in range(3) if c != channel]
        assert torch.allclose(pixels[rows][:, others], clean[rows][:, others], atol=1e-5)
        changed = (pixels[rows, channel] - clean[rows, channel]).reshape(-1, 1024)
        residual = changed - (changed @ nads[5 + offset])[:, None] * nads[5 + offset]
        assert residual.abs().max() < 1e-5  # the change lies along the carrier alone
    assert torch.equal(poisoned.test_set.tensors[0], plain.test_set.tensors[0])


def test_augmentation_crops_and_flips_each_image_within_its_padding():
    torch.manual_seed(0)
    images = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32) + 1
    out = random_crop_and_flip(images.repeat(50, 1, 1, 1))
    assert out.shape == (100, 3, 32, 32)
    for i in range(0, 100, 7):
        original = images[i % 2]
        padded = torch.nn.functional.pad(original, (4,) * 4)
        windows = [padded[:, r : r + 32, c : c + 32] for r in range(9) for c in range(9)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    assert len({tuple(o[0, 16, :3].tolist()) for o in out}) > 10  # crops and flips differ across images


@pytest.mark.parametrize("variant", ["plain", "nad_flip", "fourier_flip", "poison"])
def test_one_epoch_per_variant_writes_a_result_and_checkpoints(compose, cifar10_dir, nads_dir, variant):
    cfg = compose(*cifar10_overrides(cifar10_dir, nads_dir, f"dataset.variant={variant}", "dataset.nad_index=3"))
    result = train(Run.start(cfg, "train"))
    run_dir = cfg.paths.output_dir
    saved = json.loads(open(f"{run_dir}/result.json").read())
    assert saved["variant"] == variant and saved["dataset"] == "cifar10" and 0 <= saved["test_acc"] <= 1
    assert saved["nad_index"] == (3 if variant == "poison" else None) and saved["steps"] == 2  # 250 images / 128
    assert result["test_acc"] == saved["test_acc"] and len(saved["history"]) == 1
    assert {p.name for p in (Path(run_dir) / "checkpoints").iterdir()} == {"last.ckpt", "best.ckpt"}


class StopAfterFirstEpoch(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("killed")


def test_a_run_resumed_from_its_last_checkpoint_ends_as_an_uninterrupted_one(tmp_path, cifar10_dir, nads_dir):
    overrides = cifar10_overrides(cifar10_dir, nads_dir, "trainer.max_epochs=3")
    whole = train(Run.start(compose_config(overrides, output_dir=tmp_path / "whole"), "train"))
    killed = [*overrides, f"+callbacks.stop._target_={__name__}.StopAfterFirstEpoch"]
    with pytest.raises(RuntimeError, match="killed"):
        train(Run.start(compose_config(killed, output_dir=tmp_path / "resumed"), "train"))
    assert not (tmp_path / "resumed" / "result.json").exists() and (tmp_path / "resumed" / "checkpoints" / "last.ckpt").exists()

    resumed = train(Run.start(compose_config(overrides, output_dir=tmp_path / "resumed"), "train"))
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2] and resumed["steps"] == whole["steps"] == 6
    assert resumed["test_loss"] == pytest.approx(whole["test_loss"], rel=1e-5)
    assert [h["train/loss"] for h in resumed["history"]] == pytest.approx([h["train/loss"] for h in whole["history"]], rel=1e-5)
    again = train(Run.start(compose_config(overrides, output_dir=tmp_path / "resumed"), "train"))  # finished: reported, not trained again
    assert again == json.loads((tmp_path / "resumed" / "result.json").read_text())
    with pytest.raises(ConfigError, match="trainer.max_epochs"):
        train(Run.start(compose_config([*overrides, "trainer.max_epochs=4"], output_dir=tmp_path / "resumed"), "train"))


def test_the_command_line_runs_one_epoch_and_two_process_ddp(tmp_path, cifar10_dir, nads_dir):
    run_dir = tmp_path / "ddp"
    done = run_cli(
        *cifar10_overrides(
            cifar10_dir, nads_dir, "dataset.variant=nad_flip", "trainer=ddp_cpu", f"hydra.run.dir={run_dir}", "dataset.batch_size=64"
        ),
        process=True,  # run.py's round trip; Lightning starts rank 1 by running the process's command again
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["world_size"] == 2 and result["steps"] == 2  # 250 images / (2 ranks x 64)
    assert result["variant"] == "nad_flip" and (run_dir / "checkpoints" / "last.ckpt").exists()


@pytest.mark.parametrize(
    "damage, words",
    [
        ("missing", ["dataset.data_dir", "dataset.download=true", "cifar-10-python.tar.gz"]),
        ("truncated", ["dataset.data_dir", "not readable CIFAR-10 batches"]),
        ("checksums", ["dataset.data_dir", "checksums"]),
    ],
)
def test_a_missing_or_corrupt_data_folder_gives_one_clear_message(tmp_path, cifar10_dir, nads_dir, damage, words):
    import shutil

    data = tmp_path / "data"
    if damage != "missing":
        shutil.copytree(cifar10_dir, data)
    if damage == "truncated":
        batch = data / "cifar-10-batches-py" / "data_batch_3"
        batch.write_bytes(batch.read_bytes()[:1000])
    overrides = [o for o in cifar10_overrides(data, nads_dir) if damage != "checksums" or "check_md5" not in o]
    message = refusal(overrides, tmp_path / "run")
    assert all(w in message for w in words), message


@pytest.mark.parametrize(
    "override, words",
    [
        ("dataset.variant=rotated", ["dataset.variant", "plain, nad_flip, fourier_flip, poison"]),
        ("dataset.nad_index=63", ["dataset.nad_index", "between 0 and 62"]),
        ("dataset.nads=/nowhere", ["dataset.nads", "does not exist"]),
        ("dataset.poison_eps=0", ["dataset.poison_eps", "> 0"]),
    ],
)
def test_impossible_variant_options_are_refused_before_training(tmp_path, cifar10_dir, nads_dir, override, words):
    message = refusal(cifar10_overrides(cifar10_dir, nads_dir, "dataset.variant=poison", override), tmp_path / "run")
    assert all(w in message for w in words), message


def test_the_figure_configs_run_as_multiruns_and_the_report_draws_table_and_curve(tmp_path, cifar10_dir, nads_dir):
    common = [o for o in cifar10_overrides(cifar10_dir, nads_dir) if not o.startswith(("experiment=", "arch="))]
    flips = run_cli("experiment=cifar10_flip_table", "arch=lenet", *common, f"hydra.sweep.dir={tmp_path}")
    assert flips.returncode == 0, flips.stderr
    poison = run_cli("experiment=cifar10_poison_resnet18", "arch=lenet", "dataset.nad_index=2,5", *common, f"hydra.sweep.dir={tmp_path}")
    assert poison.returncode == 0, poison.stderr
    names = sorted(p.parent.name for p in tmp_path.glob("*/result.json"))  # label, then the digest of max_epochs=1
    assert [name.rsplit("-", 1)[0] for name in names] == [
        "lenet-cifar10-fourier_flip-s0",
        "lenet-cifar10-nad_flip-s0",
        "lenet-cifar10-plain-s0",
        "lenet-cifar10-poison2-s0",
        "lenet-cifar10-poison5-s0",
    ]
    assert len({name.rsplit("-", 1)[1] for name in names}) == 1  # what the experiments sweep themselves adds nothing
    assert (tmp_path / "report" / "poison_curve.png").is_file()  # drawn at the end of the multirun

    out = tmp_path / "out"
    done = run_reports(tmp_path, "--out", out)
    assert done.returncode == 0, done.stderr
    table = (out / "flip_table.md").read_text().splitlines()
    assert table[0].startswith("| arch | dataset | seed | plain | nad_flip | fourier_flip |")
    assert table[2].startswith("| lenet | cifar10 | 0 | 0.")
    with open(out / "poison_curve.csv") as handle:
        assert [int(row["nad_index"]) for row in csv.DictReader(handle)] == [2, 5]
    for name in ("flip_table.png", "flip_table.pdf", "poison_curve.png", "poison_curve.pdf"):
        assert (out / name).stat().st_size > 0


@pytest.mark.parametrize("figure", ["cifar10", "cifar10_flip_table", "cifar10_poison_resnet18"])
def test_every_cifar10_config_says_how_to_run_it(compose, figure):
    check_config_header(figure)
    cfg = compose(f"experiment={figure}", "logger=none")
    assert cfg.dataset.variant == ("poison" if "poison" in figure else "plain") and cfg.resume
    assert (cfg.trainer.max_epochs, cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (50, 0.21, 0.9, 5e-4)
    assert cfg.trainer.gradient_clip_val == 0.5 and cfg.dataset.batch_size == 128 and not cfg.dataset.augment


def test_the_slurm_ddp_launcher_asks_for_one_task_per_gpu_on_each_node():
    from hydra import compose, initialize_config_dir

    from nadexp.config import CONFIG_DIR, register_configs

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(
            "config",
            return_hydra_config=True,
            overrides=["hydra/launcher=slurm_ddp", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "experiment=cifar10"],
        )
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher._target_.endswith("SlurmLauncher") and cfg.trainer.strategy == "ddp" and cfg.trainer.sync_batchnorm


@pytest.mark.parametrize("variant", ["plain", "nad_flip"])
def test_ten_classes_are_learned_through_the_cifar10_path(tmp_path, compose, nads_dir, variant):
    # Separable classes: the 10-class path must reach a high accuracy, and an orthogonal flip of the inputs
    # must not stop logistic regression from getting there.
    write_learnable_cifar10(tmp_path / "data", 1000, 500, noise=40, seed=1)
    cfg = compose(
        *cifar10_overrides(
            tmp_path / "data", nads_dir, "arch=logreg", "trainer.max_epochs=3", f"dataset.variant={variant}", "optimizer.lr=0.01"
        )
    )
    assert train(Run.start(cfg, "train"))["test_acc"] > 0.95


def test_cifar100_reads_through_torchvision_and_trains_with_100_classes(compose, cifar100_dir, nads_dir):
    images, labels = load_split(cifar100_dir, train=True, check_md5=False, source="cifar100")
    assert images.shape == (200, 3, 32, 32) and labels.tolist() == [i % 100 for i in range(200)]
    cfg = compose(*cifar10_overrides(cifar100_dir, nads_dir, "dataset=cifar100", "dataset.variant=nad_flip"))
    datamodule, model, _ = build(cfg)
    assert datamodule.num_classes == 100 and model.net.classifier[-1].out_features == 100
    result = train(Run.start(cfg, "train"))
    assert result["dataset"] == "cifar100" and result["variant"] == "nad_flip" and result["steps"] == 2
    with pytest.raises(ConfigError, match="dataset=cifar10"):
        CIFARDataModule(source="cifar100", data_dir=str(cifar100_dir), check_md5=False, variant="poison", nads=str(nads_dir))
    with pytest.raises(ConfigError, match="cifar-100-python.tar.gz"):
        CIFARDataModule(source="cifar100", data_dir=str(nads_dir))


def test_variants_are_computed_in_full_float32_whatever_tf32_says(monkeypatch):
    """tf32=true is for the network's products on a GPU: the flipped or poisoned images themselves stay exact."""
    from nadexp.data import cifar10, variants
    from nadexp.devices import apply_tf32, tf32_enabled

    seen = []
    real = variants.apply_per_channel
    monkeypatch.setattr(variants, "apply_per_channel", lambda x, m: seen.append(tf32_enabled()) or real(x, m))
    flip = cifar10.flip_for("fourier_flip", shape=(3, 8, 8))
    images, labels = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8), torch.arange(4)
    try:
        apply_tf32(True)
        flipped = cifar10.represent(images, labels, flip)
        assert seen == [False] and tf32_enabled()  # off while the images were computed, on again for the network
    finally:
        apply_tf32(False)
    assert torch.equal(flipped, cifar10.represent(images, labels, flip))
