"""Accuracy bars with the default protocol (eps 2, sigma 3, 10,000 samples, 20 epochs, SGD lr 0.5 -> 0)."""

import pytest

from nadexp.training import build

FIT = [
    "experiment=single",
    "logger=none",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
    "trainer.check_val_every_n_epoch=1000",
]


def fit_and_test(compose, *overrides) -> float:
    datamodule, model, trainer = build(compose(*FIT, *overrides))
    trainer.fit(model, datamodule=datamodule)
    return trainer.test(model, datamodule=datamodule, verbose=False)[0]["test/acc"]


@pytest.mark.parametrize("direction", ["[1,0]", "[7,11]"])
def test_logistic_regression_learns_fourier_directions(compose, direction):
    assert fit_and_test(compose, "arch=logreg", f"dataset.direction={direction}") > 0.95


def test_lenet_learns_an_easy_direction(compose):
    assert fit_and_test(compose, "arch=lenet", "dataset.direction=[1,0]") > 0.7


def test_lenet_cannot_learn_the_checkerboard_direction(compose):
    assert fit_and_test(compose, "arch=lenet", "dataset.direction=[16,16]") < 0.6
