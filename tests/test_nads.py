import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from nadexp.config import compose_config
from nadexp.data.directional import DirectionalDataset
from nadexp.data.nad_file import load_nads, save_nads
from nadexp.errors import ConfigError
from nadexp.estimators.nads import NADEstimator, principal_directions, subspace_overlap
from nadexp.models import LeNet, LogReg
from nadexp.run.execute import execute

from conftest import QUICK, check_result_schema, refusal, run_cli

SMALL = (1, 8, 8)


class CircularFilterSum(nn.Module):
    """f(x) = sum of a circular 3x3 convolution of x: its input gradient is sum(w) times the constant image."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular", bias=False)

    def forward(self, x):
        return self.conv(x).sum(dim=(1, 2, 3))[:, None]


def estimate(make_net, shape=SMALL, **options):
    return NADEstimator(device="cpu", **options).estimate(make_net, shape)


@pytest.fixture(scope="module")
def logreg_gradients():
    make_net = lambda: LogReg(SMALL, 1)  # noqa: E731
    fd = NADEstimator(num_networks=3000, dtype="float32", device="cpu").gradients(make_net, SMALL)
    ag = NADEstimator(num_networks=3000, method="autograd", device="cpu").gradients(make_net, SMALL)
    return fd, ag


def test_logistic_regression_nads_are_isotropic_with_the_init_variance(logreg_gradients):
    fd, _ = logreg_gradients
    _, eigenvalues, singular_values = principal_directions(fd)
    dim = math.prod(SMALL)
    expected = 1 / (3 * dim)  # weights ~ U(-1/sqrt(D), 1/sqrt(D)) independently
    assert eigenvalues.mean().item() == pytest.approx(expected, rel=0.05)
    # Sample covariance of isotropic data: the spectrum stays inside the Marchenko-Pastur band.
    ratio = math.sqrt(dim / len(fd))
    assert eigenvalues.max() < expected * (1 + ratio) ** 2 * 1.1
    assert eigenvalues.min() > expected * (1 - ratio) ** 2 * 0.9
    assert torch.allclose(singular_values**2 / (len(fd) - 1), eigenvalues)


def test_finite_differences_equal_autograd_on_a_linear_model(logreg_gradients):
    fd, ag = logreg_gradients
    assert torch.allclose(fd, ag, atol=1e-6)
    bf16 = NADEstimator(num_networks=200, dtype="bfloat16", device="cpu").gradients(lambda: LogReg(SMALL, 1), SMALL)
    assert torch.allclose(bf16, fd[:200], rtol=0.02, atol=2e-3)


def test_a_global_sum_of_a_filter_has_one_constant_nad():
    found = estimate(CircularFilterSum, num_networks=500, dtype="float32")
    top = found["nads"][0].reshape(-1)
    constant = np.full_like(top, 1 / math.sqrt(top.size))
    assert abs(top @ constant) == pytest.approx(1.0, abs=1e-5)
    assert found["eigenvalues"][1] < 1e-8 * found["eigenvalues"][0]
    assert found["diagnostic"]["top1"] == pytest.approx(1.0, abs=1e-6)


@pytest.fixture(scope="module")
def lenet_estimate():
    return estimate(lambda: LeNet((1, 16, 16), 1), (1, 16, 16), num_networks=300)


def test_nads_are_orthonormal_and_ordered(lenet_estimate):
    nads = lenet_estimate["nads"]
    assert nads.shape == (256, 1, 16, 16) and nads.dtype == np.float32
    flat = nads.reshape(len(nads), -1).astype(np.float64)
    assert np.allclose(flat @ flat.T, np.eye(len(flat)), atol=1e-5)
    assert np.all(np.diff(lenet_estimate["eigenvalues"]) <= 0)
    assert set(lenet_estimate["diagnostic"]) == {"top1", "top10", "top100"}


def test_saved_files_round_trip(tmp_path, lenet_estimate):
    save_nads(tmp_path, lenet_estimate)
    assert np.array_equal(load_nads(tmp_path / "nads.npy", (1, 16, 16)), lenet_estimate["nads"])
    assert np.array_equal(load_nads(tmp_path), lenet_estimate["nads"])  # a run directory works too
    assert np.allclose(np.load(tmp_path / "eigenvalues.npy"), lenet_estimate["eigenvalues"])
    assert np.allclose(np.load(tmp_path / "singular_values.npy"), lenet_estimate["singular_values"])


def test_overlap_is_one_for_equal_spans_and_k_over_d_for_random_ones():
    generator = torch.Generator().manual_seed(0)
    dim, k = 256, 10
    basis = torch.linalg.qr(torch.randn(dim, dim, dtype=torch.float64, generator=generator))[0].T
    rotation = torch.linalg.qr(torch.randn(k, k, dtype=torch.float64, generator=generator))[0]
    assert subspace_overlap(basis[:k], rotation @ basis[:k], k) == pytest.approx(1.0)
    assert subspace_overlap(basis[:k], basis[k : 2 * k], k) == pytest.approx(0.0, abs=1e-12)
    randoms = [
        subspace_overlap(basis, torch.linalg.qr(torch.randn(dim, k, dtype=torch.float64, generator=generator))[0].T, k) for _ in range(20)
    ]
    assert np.mean(randoms) == pytest.approx(k / dim, rel=0.25)


@pytest.mark.parametrize("method", ["finite_difference", "autograd"])
def test_the_same_seed_gives_the_same_nads(method):
    make_net = lambda: LeNet((1, 16, 16), 1)  # noqa: E731
    first, again, other = (estimate(make_net, (1, 16, 16), method=method, num_networks=50, seed=seed)["nads"] for seed in (0, 0, 1))
    assert np.array_equal(first, again) and not np.allclose(first, other)


def test_other_seeds_give_the_same_leading_nads_once_converged():
    # Finite differences (the published quantity) on LeNet at 16 x 16: 2,000 networks converge the top 10.
    make_net = lambda: LeNet((1, 16, 16), 1)  # noqa: E731
    first, other = (NADEstimator(num_networks=2000, seed=seed, device="cpu").gradients(make_net, (1, 16, 16)) for seed in (0, 1))
    assert subspace_overlap(principal_directions(first)[0], principal_directions(other)[0], 10) > 0.85


def test_the_nad_basis_dataset_is_d_of_u_i(tmp_path):
    found = estimate(lambda: LeNet((1, 32, 32), 1), (1, 32, 32), num_networks=40, method="autograd")
    save_nads(tmp_path, found)
    dataset = DirectionalDataset(basis="nad", nads=str(tmp_path), direction=[3], n_train=2000, n_test=10)
    x, y = dataset.sample("train")
    u = torch.from_numpy(found["nads"][3]).double().flatten()
    x = x.flatten(1).double()
    assert torch.allclose(x @ u, (2.0 * y.double() - 1) * dataset.eps / 2, atol=1e-4)
    noise = x - (x @ u)[:, None] * u
    assert noise.var(0).sum().item() == pytest.approx(9 * 1023, rel=0.02)


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "does not exist"),
        (b"not a numpy file", "not a NumPy .npy file (no .npy header)"),
        (np.zeros((4, 1, 16, 16), np.float32), "dataset.shape is [1, 32, 32]"),
        (np.zeros((4, 1024), np.float32), "expected floats of shape (k, C, H, W)"),
        (np.ones((4, 1, 32, 32), np.float32), "unit vectors"),
    ],
)
def test_bad_nad_files_get_a_clear_error(tmp_path, content, words):
    path = tmp_path / "nads.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content)
    with pytest.raises(ConfigError, match="dataset.nads") as error:
        DirectionalDataset(basis="nad", nads=str(path), direction=[0])
    assert words in str(error.value)


def test_nad_index_outside_the_estimate_is_refused(tmp_path):
    save_nads(tmp_path, estimate(lambda: LeNet((1, 32, 32), 1), (1, 32, 32), num_networks=8, method="autograd", num_components=5))
    with pytest.raises(ConfigError, match="index < 5"):
        DirectionalDataset(basis="nad", nads=str(tmp_path), direction=[5])
    with pytest.raises(ConfigError, match="dataset.nads"):
        DirectionalDataset(basis="nad", direction=[0])


@pytest.mark.parametrize(
    "option, value", [("method", "jacobian"), ("eval_point", "mean"), ("num_networks", 2), ("scale", 0.0), ("dtype", "float16")]
)
def test_bad_estimator_options_are_refused(option, value):
    with pytest.raises(ConfigError, match=f"estimator.{option}"):
        NADEstimator(**{option: value})


def test_eval_point_options(tmp_path):
    make_net = lambda: LogReg(SMALL, 1)  # noqa: E731
    for point in ("zero", "per_network"):
        grads = NADEstimator(num_networks=10, eval_point=point, dtype="float32", device="cpu").gradients(make_net, SMALL)
        assert grads.shape == (10, 64)  # a linear model's gradient does not depend on the point
        assert torch.allclose(grads, NADEstimator(num_networks=10, method="autograd", device="cpu").gradients(make_net, SMALL), atol=1e-6)


def test_estimator_run_writes_the_documented_files_and_feeds_a_training_run(tmp_path):
    run_dir = tmp_path / "nads"
    done = run_cli(
        "experiment=nads",
        "estimator.num_networks=240",
        "logger=wandb",
        "arch=lenet",
        f"hydra.run.dir={run_dir}",
        env={"WANDB_MODE": "", "WANDB_API_KEY": ""},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert (result["task"], result["method"], result["arch"], result["num_networks"]) == ("nads", "finite_difference", "lenet", 240)
    assert set(result["diagnostic"]["split_half_overlap"]) == {"top1", "top10", "top100"}
    check_result_schema(result, "nads")
    assert result["objective"] == result["diagnostic"]["split_half_overlap"]["top10"]
    for name in ("nads.npy", "eigenvalues.npy", "singular_values.npy", "nads.png", "nads_fourier.png", "spectrum.png"):
        assert (run_dir / name).stat().st_size > 0
    nads = np.load(run_dir / "nads.npy")
    assert nads.shape == (1024, 1, 32, 32) and nads.dtype == np.float32
    media = list((run_dir / "wandb").glob("offline-run-*/files/media/images/nads/*.png"))
    assert len(media) == 3

    overrides = [*QUICK, "arch=logreg", "dataset.basis=nad", f"dataset.nads={run_dir}", "dataset.direction=[2]"]
    assert execute(compose_config(overrides, output_dir=tmp_path / "train"), overrides)["basis"] == "nad"
    assert json.loads((tmp_path / "train" / "result.json").read_text())["basis"] == "nad"

    assert "dataset.nads" in refusal(
        [*QUICK, "dataset.basis=nad", f"dataset.nads={tmp_path / 'missing'}", "dataset.direction=[2]"], tmp_path / "bad"
    )
