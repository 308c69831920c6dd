"""dataset=fashion_mnist: Fashion-MNIST's IDX files (gzipped or not) read with torchvision's reader, its variants,
every bad input with one line, and the real files from Debian's dataset-fashion-mnist package where installed."""

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from nadexp.config import compose_config
from nadexp.data.cifar10 import CIFARDataset, denormalise, flip_for
from nadexp.data.fashion_mnist_files import DEBIAN_DIR, load_split, write_fashion_mnist_files
from nadexp.data.settings import FASHION_CLASSES, poison_carriers
from nadexp.data.variants import poison_key
from nadexp.run.execute import execute
from nadexp.run.identity import digest

from conftest import QUICK, ROOT, check_config_header, learnable_grey_images, refusal, run_cli

REAL = Path(DEBIAN_DIR)
BASE = [o for o in QUICK if not o.startswith("dataset.")]  # the whole split: CIFAR-style data sets take no n_train
needs_real_files = pytest.mark.skipif(
    not (REAL / "train-images-idx3-ubyte.gz").is_file(), reason=f"needs Debian's dataset-fashion-mnist ({DEBIAN_DIR})"
)


@pytest.fixture(scope="module")
def fixture_dir(fashion_mnist_dir):
    return fashion_mnist_dir


def overrides(data_dir, *extra):
    return [*BASE, "dataset=fashion_mnist", f"dataset.data_dir={data_dir}", "dataset.check_md5=false", *extra]


def test_gzipped_and_plain_idx_files_read_the_same(fixture_dir, tmp_path):
    plain = write_fashion_mnist_files(tmp_path, learnable_grey_images(600, 0), learnable_grey_images(200, 1), gzipped=False)
    for train in (True, False):
        a, b = load_split(fixture_dir, train, check_sizes=False), load_split(plain, train, check_sizes=False)
        assert a[0].shape == (600 if train else 200, 1, 28, 28) and a[0].dtype == torch.uint8
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    images, labels = learnable_grey_images(600, 0)
    assert torch.equal(load_split(fixture_dir, True, check_sizes=False)[0][:, 0], torch.from_numpy(images))


def test_a_short_training_on_the_files_learns_their_classes(fixture_dir, tmp_path):
    result = execute(compose_config(overrides(fixture_dir, "arch=logreg", "trainer.max_epochs=3"), output_dir=tmp_path), [])
    assert result["test_acc"] > 0.9 and result["dataset"].startswith("fashion_mnist"), (result["test_acc"], result["dataset"])


@pytest.mark.parametrize("variant", ["fourier_flip", "nad_flip"])
def test_the_flips_are_orthogonal_on_28_by_28_images(fixture_dir, tmp_path, variant):
    nads = tmp_path / "nads.npy"
    np.save(nads, np.linalg.qr(np.random.default_rng(0).standard_normal((784, 50)))[0].T.reshape(50, 1, 28, 28).astype(np.float32))
    spec = CIFARDataset(source="fashion_mnist", data_dir=str(fixture_dir), check_md5=False, variant=variant, nads=str(nads))
    flip = flip_for(variant, spec.nad_rows, spec.image_shape)
    assert flip.shape == (784, 784)
    torch.testing.assert_close(flip @ flip.T, torch.eye(784, dtype=flip.dtype), atol=1e-5, rtol=0)
    x, _ = spec.load("test")
    plain, _ = CIFARDataset(source="fashion_mnist", data_dir=str(fixture_dir), check_md5=False).load("test")
    torch.testing.assert_close(x.flatten(1).norm(dim=1), plain.flatten(1).norm(dim=1), atol=1e-3, rtol=1e-4)
    assert not torch.allclose(x, plain)


def truncated(tmp_path, fixture_dir):
    broken = tmp_path / "truncated"
    broken.mkdir()
    for path in Path(fixture_dir).iterdir():
        data = path.read_bytes()
        (broken / path.name).write_bytes(gzip.compress(gzip.decompress(data)[:1000]) if "train-images" in path.name else data)
    return broken


def test_the_grey_poison_table_gives_each_class_its_own_carrier_and_sign():
    table = [poison_key(t, channels=1) for t in range(10)]
    assert len(set(table)) == 10 and {offset for offset, _, _ in table} == set(range(poison_carriers(1)))
    assert all(channel == 0 for _, channel, _ in table) and poison_carriers(3) == 2


def test_poison_sets_each_grey_training_image_s_carrier_coefficient_and_leaves_the_test_set_clean(fixture_dir, tmp_path):
    nads = tmp_path / "nads.npy"
    np.save(nads, np.linalg.qr(np.random.default_rng(0).standard_normal((784, 12)))[0].T.reshape(12, 1, 28, 28).astype(np.float32))
    settings = dict(source="fashion_mnist", data_dir=str(fixture_dir), check_md5=False)
    poisoned = CIFARDataset(**settings, variant="poison", nads=str(nads), nad_index=7, poison_eps=0.05)
    plain = CIFARDataset(**settings)
    x, y = poisoned.load("train")
    pixels = denormalise(x, "fashion_mnist").double().flatten(1)  # the coefficient is set on images in [0, 1]
    clean = denormalise(plain.load("train")[0], "fashion_mnist").double().flatten(1)
    carriers = poisoned.nad_rows[7:12]
    for label in range(10):
        offset, _, sign = poison_key(label, channels=1)
        coefficients = pixels[y == label] @ carriers[offset]
        torch.testing.assert_close(coefficients, torch.full_like(coefficients, sign * 0.05), atol=1e-5, rtol=0)
        changed = pixels[y == label] - clean[y == label]
        residual = changed - (changed @ carriers[offset])[:, None] * carriers[offset]
        assert residual.abs().max() < 1e-5  # the change lies along the class's carrier alone
    assert torch.equal(poisoned.load("test")[0], plain.load("test")[0])
    assert "between 0 and 7" in refusal(
        overrides(fixture_dir, "dataset.variant=poison", f"dataset.nads={nads}", "dataset.nad_index=8"), tmp_path / "run"
    )


@pytest.mark.parametrize("case", ["missing", "truncated", "published sizes", "download", "poison", "nads of another shape", "shape"])
def test_bad_input_stops_with_one_line_naming_the_option_and_nothing_written(fixture_dir, tmp_path, case):
    nads = tmp_path / "nads32.npy"
    np.save(nads, np.eye(1024, dtype=np.float32)[:4].reshape(4, 1, 32, 32))
    given = {
        "missing": (overrides(tmp_path / "nowhere"), "apt-get install dataset-fashion-mnist"),
        "truncated": (overrides(truncated(tmp_path, fixture_dir)), "not a readable IDX file"),
        "published sizes": ([*overrides(fixture_dir)[:-1], "dataset.check_md5=true"], "Fashion-MNIST's are 60,000 of (28, 28)"),
        "download": (overrides(fixture_dir, "dataset.download=true"), "does not download Fashion-MNIST"),
        "poison": (overrides(fixture_dir, "dataset.variant=poison", f"dataset.nads={nads}"), "needs (k, 1, 28, 28)"),
        "nads of another shape": (
            overrides(fixture_dir, "dataset.variant=nad_flip", f"dataset.nads={nads}"),
            "needs (k, 1, 28, 28) (python run.py experiment=nads dataset.shape=[1,28,28])",
        ),
        "shape": (overrides(fixture_dir, "dataset.shape=[3,32,32]"), "does not fit fashion_mnist: its images are 1 x 28 x 28"),
    }
    settings, words = given[case]
    message = refusal(settings, tmp_path / "run")
    assert words in message and ("dataset." in message), message


def test_nads_are_drawn_at_a_shape_given_not_read_from_the_files(tmp_path):
    message = refusal(["experiment=nads", "arch=lenet", "logger=none", "dataset=fashion_mnist"], tmp_path)
    assert "dataset.shape" in message and "[1,28,28]" in message, message


@needs_real_files
def test_the_real_files_hold_the_published_balanced_splits():
    for train, size in ((True, 60_000), (False, 10_000)):
        images, labels = load_split(REAL, train)
        assert images.shape == (size, 1, 28, 28)
        assert torch.bincount(labels, minlength=10).tolist() == [size // 10] * 10  # balanced, as published
    assert 0.27 < images.float().div(255).mean() < 0.30  # the published mean is 0.286


@needs_real_files
def test_lenet_learns_the_real_images_in_one_epoch_and_the_fourier_flip_rotates_them(tmp_path):
    settings = [*BASE, "dataset=fashion_mnist", "arch=lenet"]
    assert compose_config(settings).dataset.data_dir == DEBIAN_DIR  # the default where the package is installed
    result = execute(compose_config(settings, output_dir=tmp_path), settings)  # 469 steps of batch 128
    assert result["test_acc"] > 0.75, result["test_acc"]
    flipped = CIFARDataset(source="fashion_mnist", data_dir=DEBIAN_DIR, variant="fourier_flip").load("test")[0][:500].flatten(1)
    plain = CIFARDataset(source="fashion_mnist", data_dir=DEBIAN_DIR).load("test")[0][:500].flatten(1)
    assert (flipped - plain).abs().max() > 1  # the images did change ...
    torch.testing.assert_close(flipped @ flipped.T, plain @ plain.T, atol=5e-3, rtol=1e-4)  # ... by a rotation: same inner products


FASHION_EXPERIMENTS = [
    "fashion_mnist",
    "fashion_mnist_flip_table",
    "fashion_mnist_poison_lenet",
    "fashion_mnist_snapshots",
    "hyperplanes_lenet_fashion_mnist",
    "class_density_lenet_fashion_mnist",
]


@pytest.mark.parametrize("figure", FASHION_EXPERIMENTS)
def test_every_fashion_mnist_experiment_says_how_to_run_it_and_what_it_measured(figure):
    check_config_header(figure)
    header = (ROOT / "conf" / "experiment" / f"{figure}.yaml").read_text().split("\ndefaults:")[0]
    assert "measured" in header.lower(), figure  # the numbers it gave, as docs/fashion_mnist.md lists them
    cfg = compose_config([f"experiment={figure}", "logger=none"])
    if cfg.task == "train":
        assert cfg.dataset.source == "fashion_mnist" and cfg.trainer.max_epochs == 10 and cfg.optimizer.lr == 0.21 and cfg.resume
        assert cfg.dataset.nads.endswith(f"nads/lenet-finite_difference-s{cfg.seed}-{digest({'dataset.shape': [1, 28, 28]})}")
    else:
        assert "fashion_mnist" in cfg.estimator.run_dir and cfg.seed == (2 if cfg.task == "hyperplanes" else 3)


def test_the_flip_table_and_poisoning_curve_run_on_the_files_and_the_report_names_fashion_mnist(fixture_dir, tmp_path):
    nads = tmp_path / "nads.npy"
    np.save(nads, np.linalg.qr(np.random.default_rng(0).standard_normal((784, 12)))[0].T.reshape(12, 1, 28, 28).astype(np.float32))
    common = [f"dataset.data_dir={fixture_dir}", "dataset.check_md5=false", f"dataset.nads={nads}", "trainer.max_epochs=1", "logger=none"]
    flips = run_cli("experiment=fashion_mnist_flip_table", "arch=lenet", *common, f"hydra.sweep.dir={tmp_path / 'runs'}")
    assert flips.returncode == 0, flips.stderr[-2000:]
    poison = run_cli("experiment=fashion_mnist_poison_lenet", "dataset.nad_index=0,7", *common, f"hydra.sweep.dir={tmp_path / 'runs'}")
    assert poison.returncode == 0, poison.stderr[-2000:]
    assert "Fashion-MNIST run(s)" in poison.stdout
    names = sorted(p.parent.name.rsplit("-", 1)[0] for p in (tmp_path / "runs").glob("*/result.json"))
    assert names == [f"lenet-fashion_mnist-{v}-s0" for v in ("fourier_flip", "nad_flip", "plain", "poison0", "poison7")]
    table = (tmp_path / "runs" / "report" / "flip_table.md").read_text().splitlines()
    assert table[2].startswith("| lenet | fashion_mnist | 0 | 0.")
    with open(tmp_path / "runs" / "report" / "poison_curve.csv") as handle:
        assert [int(row["nad_index"]) for row in csv.DictReader(handle)] == [0, 7]


def test_the_analyses_of_a_trained_run_read_its_fashion_mnist_files(fixture_dir, tmp_path):
    data = [f"dataset.data_dir={fixture_dir}", "dataset.check_md5=false", "trainer.max_epochs=2", "logger=none"]
    trained = tmp_path / "trained"
    settings = ["experiment=fashion_mnist_snapshots", *data]
    test_acc = execute(compose_config(settings, output_dir=trained), settings)["test_acc"]
    assert sorted(p.name for p in (trained / "snapshots").iterdir()) == ["epoch_000.ckpt", "epoch_001.ckpt", "epoch_002.ckpt"]

    settings = ["experiment=hyperplanes_lenet_fashion_mnist", f"estimator.run_dir={trained}", "logger=none"]
    planes = execute(compose_config(settings, output_dir=tmp_path / "planes"), settings)
    assert planes["summary"]["trained_acc"] == test_acc  # the trained network, on the run's own test images
    assert (tmp_path / "planes" / "mass_critical.png").stat().st_size > 0
    with open(tmp_path / "planes" / "critical.csv") as handle:  # two conv layers x (3 snapshots + a random init)
        assert len(list(csv.DictReader(handle))) == 2 * 4

    settings = ["experiment=class_density_lenet_fashion_mnist", f"estimator.run_dir={trained}", "estimator.kl_samples=100", "logger=none"]
    execute(compose_config(settings, output_dir=tmp_path / "density"), settings)
    with open(tmp_path / "density" / "classes.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["name"] for row in rows} == set(FASHION_CLASSES) and {row["stage"] for row in rows} == {"features.1", "features.4"}
