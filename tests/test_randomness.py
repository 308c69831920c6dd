"""Randomness through explicit generators: library code neither reads nor changes torch's global generator, a
seed means what torch.manual_seed(seed) means, and every estimator is one of the registered ones."""

import logging
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from nadexp.config import compose_config
from nadexp.console import LightningNotices
from nadexp.estimators.base import Estimator
from nadexp.estimators.hyperplanes import HyperplaneEstimator
from nadexp.estimators.nads import NADEstimator
from nadexp.generators import drawing_from, seeded
from nadexp.models import LeNet, ResNet18
from nadexp.run.tasks import ESTIMATORS


def states(net):
    return {name: t.clone() for name, t in net.state_dict().items()}


@pytest.mark.parametrize(
    "make",
    [
        lambda: LeNet((1, 16, 16), 2),
        lambda: ResNet18((3, 8, 8), 10),
        lambda: torch.cat([torch.randn(3), torch.rand(2), torch.randperm(4).float()]),
    ],
    ids=["lenet", "resnet18", "factories"],
)
def test_drawing_from_a_generator_draws_what_the_seeded_global_one_would_and_leaves_it_alone(make):
    torch.manual_seed(11)
    want = make()
    before = torch.get_rng_state()
    with drawing_from(seeded(11)):
        got = make()
    assert torch.equal(torch.get_rng_state(), before)
    if isinstance(want, torch.nn.Module):
        assert all(torch.equal(a, b) for a, b in zip(states(want).values(), states(got).values()))
    else:
        assert torch.equal(want, got)


def test_streams_of_one_seed_are_independent_and_reproducible():
    draws = lambda *key: torch.rand(4, generator=seeded(*key))  # noqa: E731
    assert torch.equal(draws(3, 1), draws(3, 1))
    assert not torch.equal(draws(3, 1), draws(3)) and not torch.equal(draws(3, 1), draws(4))


def test_an_nad_estimate_leaves_the_global_generator_as_it_was():
    before = torch.get_rng_state()
    first = NADEstimator(num_networks=8, device="cpu").gradients(lambda: LeNet((1, 16, 16), 1), (1, 16, 16))
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(123)  # whatever the caller did with it does not change the estimate
    again = NADEstimator(num_networks=8, device="cpu").gradients(lambda: LeNet((1, 16, 16), 1), (1, 16, 16))
    assert torch.equal(first, again)


def test_the_fresh_init_of_one_seed_is_no_other_seeds_analysed_network():
    make_net = lambda: LeNet((1, 16, 16), 2)  # noqa: E731
    net, init, fresh = HyperplaneEstimator(seed=0).networks(make_net)
    next_net, _, _ = HyperplaneEstimator(seed=1).networks(make_net)
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(states(net).values(), states(make_net()).values()))  # seed 0's own
    assert net is init
    weights = lambda n: torch.cat([p.flatten() for p in n.parameters()])  # noqa: E731
    assert not torch.equal(weights(fresh), weights(next_net)) and not torch.equal(weights(fresh), weights(net))


@pytest.mark.parametrize("name", ESTIMATORS)
def test_every_estimator_config_gives_a_registered_estimator(name):
    cfg = compose_config([f"estimator={name}", "estimator.device=cpu"])
    estimator = instantiate(cfg.estimator, **({"run_dir": None} if "run_dir" in cfg.estimator else {}))
    assert isinstance(estimator, Estimator) and estimator.name == name
    assert type(estimator).prepare is not Estimator.prepare and type(estimator).run is not Estimator.run
    configs = {p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "estimator").glob("*.yaml")}
    assert configs - {"none"} == set(ESTIMATORS)


def test_lightning_notices_show_once_on_every_handler_and_adverts_not_at_all():
    notices, seen = LightningNotices(), []
    handlers = [logging.Handler(), logging.Handler()]
    for handler in handlers:
        handler.addFilter(notices)
        handler.emit = lambda record, h=handler: seen.append((h, record.getMessage()))
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero.test")
    logger.propagate, logger.level = False, logging.INFO
    for handler in handlers:
        logger.addHandler(handler)
    try:
        for message in ("GPU available: False", "GPU available: False", "Tip: try our cloud", "GPU available: False"):
            logger.info(message)
        logger.warning("GPU available: False")  # warnings always show
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
    assert [m for h, m in seen if h is handlers[0]] == [m for h, m in seen if h is handlers[1]] == ["GPU available: False"] * 2
