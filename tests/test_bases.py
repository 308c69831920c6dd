import itertools

import pytest
import torch

from nadexp.data.bases import direction_vector, fourier_direction
from nadexp.data.directional import DirectionalDataset
from nadexp.errors import ConfigError

SHAPE = (1, 8, 8)


def canonical_frequencies(height, width):
    """One (kx, ky) per conjugate pair {(kx, ky), (-kx, -ky)}."""
    seen = set()
    for kx, ky in itertools.product(range(width), range(height)):
        if ((-kx) % width, (-ky) % height) not in seen:
            seen.add((kx, ky))
    return sorted(seen)


@pytest.mark.parametrize("phase", ["sine", "cosine"])
def test_fourier_vectors_are_real_unit_and_nonzero_everywhere(phase):
    for kx, ky in itertools.product(range(8), range(8)):
        v = fourier_direction(kx, ky, SHAPE, phase=phase)
        assert v.dtype == torch.float32 and not v.is_complex()
        assert v.norm().item() == pytest.approx(1.0, abs=1e-6)
        assert v.abs().max() > 0.05


@pytest.mark.parametrize("phase", ["sine", "cosine"])
def test_fourier_basis_is_orthonormal_across_non_conjugate_frequencies(phase):
    freqs = canonical_frequencies(8, 8)
    assert len(freqs) == 8 * 8 // 2 + 2  # half the grid plus the four self-conjugate cells
    basis = torch.stack([fourier_direction(kx, ky, SHAPE, dtype=torch.float64, phase=phase).flatten() for kx, ky in freqs])
    gram = basis @ basis.T
    assert torch.allclose(gram, torch.eye(len(freqs), dtype=torch.float64), atol=1e-10)


def test_conjugate_frequencies_give_the_same_direction_up_to_sign():
    for kx, ky in [(1, 0), (3, 5), (0, 2), (4, 1)]:
        v = fourier_direction(kx, ky, SHAPE)
        w = fourier_direction((-kx) % 8, (-ky) % 8, SHAPE)
        assert abs(torch.dot(v.flatten(), w.flatten()).item()) == pytest.approx(1.0, abs=1e-6)


def test_fourier_convention_kx_is_horizontal_and_dc_is_constant():
    v = fourier_direction(1, 0, SHAPE)[0]
    assert torch.allclose(v[0], v[5])  # constant down each column: varies along columns only
    assert not torch.allclose(v[:, 0], v[:, 2])
    dc = fourier_direction(0, 0, SHAPE)
    assert torch.allclose(dc, torch.full(SHAPE, 1 / 8.0))
    nyquist = fourier_direction(4, 4, SHAPE)[0]  # checkerboard
    assert torch.allclose(nyquist, -torch.roll(nyquist, 1, dims=1))


def test_the_two_phases_are_a_quarter_period_apart_and_agree_where_the_sine_vanishes():
    sine, cosine = fourier_direction(2, 0, SHAPE, phase="sine")[0], fourier_direction(2, 0, SHAPE, phase="cosine")[0]
    assert torch.allclose(cosine, torch.roll(sine, -1, dims=1), atol=1e-6)  # period 4 columns: one column apart
    assert abs(torch.dot(sine.flatten(), cosine.flatten()).item()) < 1e-6
    for kx, ky in [(0, 0), (4, 0), (0, 4), (4, 4)]:
        assert torch.equal(fourier_direction(kx, ky, SHAPE, phase="sine"), fourier_direction(kx, ky, SHAPE, phase="cosine"))
    with pytest.raises(ConfigError, match="dataset.fourier_phase='square' is unknown: choose one of sine, cosine"):
        DirectionalDataset(fourier_phase="square", shape=[1, 8, 8])


def test_fourier_is_replicated_over_channels_with_unit_norm():
    v = fourier_direction(2, 3, (3, 8, 8))
    assert torch.allclose(v[0], v[1]) and torch.allclose(v[1], v[2])
    assert v.norm().item() == pytest.approx(1.0, abs=1e-6)


def test_pixel_and_random_bases():
    p = direction_vector("pixel", [2, 5], SHAPE)
    assert p.sum() == 1 and p[0, 2, 5] == 1
    randoms = torch.stack([direction_vector("random", [i], SHAPE, basis_seed=3, dtype=torch.float64).flatten() for i in range(64)])
    assert torch.allclose(randoms @ randoms.T, torch.eye(64, dtype=torch.float64), atol=1e-10)
    assert torch.equal(direction_vector("random", [7], SHAPE, basis_seed=3), direction_vector("random", [7], SHAPE, basis_seed=3))
    assert not torch.equal(direction_vector("random", [7], SHAPE, basis_seed=3), direction_vector("random", [7], SHAPE, basis_seed=4))


@pytest.mark.parametrize(
    "basis, direction, words",
    [
        ("fourier", [8, 0], "kx < 8"),
        ("fourier", [0, -1], "ky < 8"),
        ("fourier", [1], "[kx, ky]"),
        ("pixel", [0, 9], "col < 8"),
        ("random", [64], "index < 64"),
        ("dct", [0, 0], "fourier, pixel, random, nad"),
    ],
)
def test_bad_addresses_name_the_option_and_the_allowed_range(basis, direction, words):
    with pytest.raises(ConfigError, match="dataset") as error:
        direction_vector(basis, direction, SHAPE)
    assert words in str(error.value)
