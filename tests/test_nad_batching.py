"""Many networks per pass: stacked draws, networks side by side, and the NADs they give (estimators.draws, .wide)."""

import logging

import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torch.func import functional_call

from nadexp.config import compose_config
from nadexp.errors import ConfigError
from nadexp.estimators.draws import drawn_ahead, fresh_networks, stacked_networks
from nadexp.estimators.gradients import (
    _one_network_at_a_time,
    _vmapped_input_gradients,
    autograd_gradients,
    eval_points,
    finite_difference_gradients,
)
from nadexp.estimators.nads import NADEstimator, principal_directions, subspace_overlap
from nadexp.estimators.wide import perturbed_inputs, side_by_side
from nadexp.generators import seeded
from nadexp.models import LeNet

from conftest import ARCHS

SIDE_BY_SIDE = {"densenet121": "torch.func.vmap"}  # concatenates feature maps: not one wide network


def zoo_net(arch: str):
    """The arch at the smallest image size it takes (16 x 16, else 32 x 32), one output, eval mode."""
    spec = compose_config([f"arch={arch}"]).arch
    for shape in ((1, 16, 16), (1, 32, 32)):
        try:
            instantiate(spec, input_shape=shape, num_classes=1)
        except Exception:  # noqa: BLE001 - too small for this arch (Hydra wraps the ConfigError)
            continue
        return (lambda: instantiate(spec, input_shape=shape, num_classes=1).eval()), shape
    raise AssertionError(arch)


def state(net: nn.Module) -> dict:
    return {name: t.detach().clone() for name, t in [*net.named_parameters(), *net.named_buffers()]}


@pytest.mark.parametrize("arch", ARCHS)
def test_stacked_draws_are_bitwise_the_networks_a_reset_draws(arch):
    make_net, _ = zoo_net(arch)
    template = make_net()
    expected = [state(net) for net in fresh_networks(template, 5, generator=seeded(3))]
    batches = list(stacked_networks(template, 5, 2, generator=seeded(3)))
    assert [len(next(iter(b.values()))) for b in batches] == [2, 2, 1]
    drawn = [{name: t[k] for name, t in batch.items()} for batch in batches for k in range(len(next(iter(batch.values()))))]
    for want, got in zip(expected, drawn, strict=True):
        assert want.keys() == got.keys() and all(torch.equal(want[name], got[name]) for name in want)
    assert not torch.equal(drawn[0][next(iter(want))], drawn[1][next(iter(want))])  # five different networks


@pytest.mark.parametrize("arch", ARCHS)
def test_networks_side_by_side_give_each_networks_own_outputs_at_theperturbed_inputs(arch):
    make_net, shape = zoo_net(arch)
    template = make_net()
    networks = next(stacked_networks(template, 3, 3, generator=seeded(0)))
    runner, how = side_by_side(template, shape, networks)
    assert how == SIDE_BY_SIDE.get(arch, "one wide network")
    x0, dim = torch.randn(*shape), torch.Size(shape).numel()
    with torch.inference_mode():
        runner.load(networks)
        runner.perturb_around(x0, 100.0)
        for part in (slice(0, 3), slice(dim - 5, dim)):  # the first pixels, and the last (image borders)
            inputs = perturbed_inputs(x0, 100.0, "cpu", torch.float32)(part)
            want = torch.stack([functional_call(template, {n: t[k] for n, t in networks.items()}, (inputs,)).reshape(-1) for k in range(3)])
            got = runner.perturbed_outputs(part)
            assert got.shape == want.shape == (3, 2 * (part.stop - part.start))
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


@pytest.mark.parametrize("arch, networks", [("lenet", 40), ("logreg", 40), ("resnet18", 3)])
def test_finite_differences_side_by_side_equal_one_network_at_a_time(arch, networks):
    make_net, shape = zoo_net(arch)
    template = make_net()
    points = eval_points("fixed", shape, networks, torch.Generator().manual_seed(0))
    together = finite_difference_gradients(
        template,
        points,
        networks_per_batch=4,
        chunk_size=46,  # ragged chunks
        generator=seeded(0),
    )
    alone = _one_network_at_a_time(template, points, 100.0, 512, torch.float32, "cpu", None, generator=seeded(0))
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-6 * float(alone.abs().max()))
    if networks > 10:
        assert subspace_overlap(principal_directions(together)[0], principal_directions(alone)[0], 10) > 0.999


def test_the_same_seed_gives_the_same_nads_at_any_networks_per_batch():
    make_net = lambda: LeNet((1, 16, 16), 1)  # noqa: E731
    runs = [NADEstimator(num_networks=24, device="cpu", networks_per_batch=k).gradients(make_net, (1, 16, 16)) for k in (1, 5, "auto")]
    for other in runs[1:]:
        torch.testing.assert_close(other, runs[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("arch", ["lenet", "logreg", "resnet18", "vgg11_bn"])
def test_autograd_of_networks_as_one_equals_vmap_of_each(arch):
    make_net, shape = zoo_net(arch)
    template = make_net()
    points = torch.randn(3, *shape)
    got = autograd_gradients(template, points, networks_per_batch=2, generator=seeded(1))
    want = torch.cat(
        [
            _vmapped_input_gradients(template, "cpu")(batch, points[i : i + 2]).reshape(len(points[i : i + 2]), -1)
            for i, batch in zip((0, 2), stacked_networks(template, 3, 2, generator=seeded(1)))
        ]
    )
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()))


class BiasFree(nn.Sequential):
    """Layers without bias and a BatchNorm without affine parameters: still one wide network."""

    def __init__(self):
        super().__init__(
            nn.Conv2d(1, 4, 3, bias=False),
            nn.BatchNorm2d(4, affine=False),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 6 * 6, 3, bias=False),
            nn.ReLU(),
            nn.Linear(3, 1),
        )
        self.eval()  # as the estimators use networks


def test_layers_without_bias_or_affine_parameters_run_as_one_wide_network():
    points = eval_points("fixed", (1, 8, 8), 5, torch.Generator().manual_seed(0))
    together = finite_difference_gradients(BiasFree(), points, make_net=BiasFree, networks_per_batch=2, generator=seeded(0))
    alone = _one_network_at_a_time(BiasFree(), points, 100.0, 512, torch.float32, "cpu", BiasFree, generator=seeded(0))
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-6 * float(alone.abs().max()))
    runner, how = side_by_side(BiasFree(), (1, 8, 8), next(stacked_networks(BiasFree(), 2, 2, BiasFree, generator=seeded(0))))
    assert how == "one wide network"
    got = autograd_gradients(BiasFree(), points.contiguous(), networks_per_batch=2, make_net=BiasFree, generator=seeded(0))
    template = BiasFree()
    each = _vmapped_input_gradients(template, "cpu")
    want = torch.cat(
        [
            each(batch, points[i : i + len(batch["0.weight"])]).reshape(len(batch["0.weight"]), -1)
            for i, batch in zip((0, 2, 4), stacked_networks(template, 5, 2, BiasFree, generator=seeded(0)))
        ]
    )
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()))


class ScalarReadout(nn.Module):
    """A LayerNorm (no wide form) and a Python number read out of a tensor (no vmap): runs one network at a time."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.LayerNorm(8), nn.Linear(8, 1))

    def forward(self, x):
        out = self.body(x)
        return out * float(out.abs().max().item() > 0)


def test_what_cannot_run_side_by_side_goes_one_network_at_a_time_and_says_why(caplog):
    points = eval_points("fixed", (1, 4, 4), 4, torch.Generator().manual_seed(0))
    runner, why = side_by_side(
        ScalarReadout(), (1, 4, 4), next(stacked_networks(ScalarReadout(), 2, 2, ScalarReadout, generator=seeded(0)))
    )
    assert runner is None and "WideNetwork" in why and "VmappedNetworks" in why
    with caplog.at_level(logging.INFO, logger="nadexp.estimators.gradients"):
        gradients = finite_difference_gradients(ScalarReadout(), points, make_net=ScalarReadout, generator=seeded(0))
    assert gradients.shape == (4, 16) and gradients.abs().max() > 0
    assert "one network at a time" in caplog.text
    caplog.clear()
    per_network = eval_points("per_network", (1, 16, 16), 4, torch.Generator().manual_seed(0))
    with caplog.at_level(logging.INFO, logger="nadexp.estimators.gradients"):
        finite_difference_gradients(LeNet((1, 16, 16), 1), per_network, generator=seeded(0))
    assert "each network has its own x0" in caplog.text


def test_networks_per_batch_is_chosen_from_the_model_and_refused_when_impossible(caplog):
    with caplog.at_level(logging.INFO, logger="nadexp.estimators.gradients"):
        finite_difference_gradients(LeNet((1, 16, 16), 1), eval_points("fixed", (1, 16, 16), 4, torch.Generator()), generator=seeded(0))
    assert "11 networks per pass (one wide network)" in caplog.text  # 64 first-layer channels of 6 each
    for value in (0, -2, "many", 1.5):
        with pytest.raises(ConfigError, match="networks_per_batch must be auto or an integer >= 1"):
            NADEstimator(networks_per_batch=value)
    with pytest.raises(ConfigError, match="chunk_size must be auto or an integer >= 1"):
        NADEstimator(chunk_size=0)


def test_drawing_ahead_gives_every_batch_in_order_and_passes_errors_on():
    assert list(drawn_ahead(iter(range(7)))) == list(range(7))

    def failing():
        yield 1
        raise RuntimeError("draw failed")

    batches = drawn_ahead(failing())
    assert next(batches) == 1
    with pytest.raises(RuntimeError, match="draw failed"):
        next(batches)
    early = drawn_ahead(iter(range(100)))
    assert next(early) == 0
    early.close()  # the caller stops early: the drawing thread ends too


def test_bfloat16_side_by_side_keeps_the_leading_nads():
    """bfloat16 (the default on GPUs and AMX CPUs) changes the gradients by rounding only."""
    make_net = lambda: LeNet((1, 16, 16), 1)  # noqa: E731
    fp32, bf16 = (
        NADEstimator(num_networks=64, device="cpu", dtype=dtype).gradients(make_net, (1, 16, 16)) for dtype in ("float32", "bfloat16")
    )
    assert float((bf16 - fp32).norm() / fp32.norm()) < 0.05
    assert subspace_overlap(principal_directions(bf16)[0], principal_directions(fp32)[0], 10) > 0.99
