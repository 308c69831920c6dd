import math

import pytest
import torch

from nadexp.data.datamodule import DirectionalDataModule
from nadexp.data.directional import DirectionalDataset
from nadexp.errors import ConfigError


@pytest.fixture(scope="module")
def data():
    dataset = DirectionalDataset(direction=[3, 5], n_train=4000, n_test=3000, seed=7)
    return dataset, dataset.sample("train"), dataset.sample("test")


def test_projection_on_v_is_plus_minus_half_eps_with_the_label_sign(data):
    dataset, (x, y), _ = data
    v = dataset.vector().flatten()
    projection = x.flatten(1) @ v
    assert torch.allclose(projection, (y.float() * 2 - 1) * dataset.eps / 2, atol=1e-5)


def test_noise_is_orthogonal_to_v_with_variance_sigma_squared_elsewhere(data):
    dataset, (x, y), _ = data
    v = dataset.vector().flatten().double()
    x = x.flatten(1).double()
    noise = x - (x @ v)[:, None] * v
    assert (noise @ v).abs().max() < 1e-4
    # Variance along random unit directions orthogonal to v, and the total variance.
    directions = torch.randn(50, v.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    directions -= (directions @ v)[:, None] * v
    directions /= directions.norm(dim=1, keepdim=True)
    variances = (noise @ directions.T).var(dim=0)
    assert variances.mean().item() == pytest.approx(dataset.sigma**2, rel=0.03)
    assert noise.mean(0).abs().max() < 5 * dataset.sigma / math.sqrt(len(x))
    total = noise.var(dim=0).sum().item()
    assert total == pytest.approx(dataset.sigma**2 * (v.numel() - 1), rel=0.01)


def test_labels_are_balanced_and_shapes_follow_the_config(data):
    dataset, (x, y), (xt, yt) = data
    assert x.shape == (4000, 1, 32, 32) and xt.shape == (3000, 1, 32, 32)
    assert y.sum().item() == 2000 and yt.sum().item() == 1500
    odd = DirectionalDataset(n_train=11, n_test=2, shape=[3, 32, 32]).sample("train")
    assert odd[0].shape == (11, 3, 32, 32) and abs(odd[1].sum().item() - 5.5) == 0.5


def test_draws_are_seeded_and_train_test_independent(data):
    dataset, (x, y), (xt, yt) = data
    again = DirectionalDataset(direction=[3, 5], n_train=4000, n_test=3000, seed=7)
    x2, y2 = again.sample("train")
    assert torch.equal(x, x2) and torch.equal(y, y2)
    other = DirectionalDataset(direction=[3, 5], n_train=4000, n_test=3000, seed=8).sample("train")[0]
    assert not torch.allclose(x, other)
    # Resizing the training split leaves the test draw unchanged; train and test share no sample.
    resized = DirectionalDataset(direction=[3, 5], n_train=100, n_test=3000, seed=7).sample("test")[0]
    assert torch.equal(resized, xt)
    distances = torch.cdist(x[:500].flatten(1), xt[:500].flatten(1))
    assert distances.min() > 1.0


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("sigma", -1.0, "dataset.sigma must be >= 0"),
        ("eps", 0.0, "dataset.eps must be > 0"),
        ("eps", -2.0, "dataset.eps must be > 0"),
        ("n_train", 1, "dataset.n_train must be >= 2"),
        ("n_test", 0, "dataset.n_test must be >= 2"),
        ("shape", [1, 32], "dataset.shape"),
        ("direction", [32, 0], "kx < 32"),
    ],
)
def test_impossible_values_are_refused(option, value, words):
    with pytest.raises(ConfigError) as error:
        DirectionalDataset(**{option: value})
    assert words in str(error.value)


def test_datamodule_yields_whole_batches_of_the_generated_tensors():
    module = DirectionalDataModule(batch_size=64, n_train=200, n_test=100)
    module.setup()
    batches = list(module.train_dataloader())
    assert [len(b[0]) for b in batches] == [64, 64, 64, 8]
    x = torch.cat([b[0] for b in batches])
    assert torch.allclose(x.sum(0), module.train_set.tensors[0].sum(0), atol=1e-3)  # a permutation of the set
    assert module.input_shape == (1, 32, 32) and module.num_classes == 2
