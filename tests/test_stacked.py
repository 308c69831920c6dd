"""K models in one vectorised step train exactly as K models trained one after another."""

import copy
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from nadexp.config import compose_config
from nadexp.models import LeNet, ResNet18
from nadexp.sweeps.runner import cell_config, train_cell, train_cells_stacked
from nadexp.training.stacked import epoch_order, fit_stacked

K = 3


def one_by_one(net, x, y, order, optimizer, epochs, batch_size, clip):
    """The plain PyTorch loop: one model, its own data in its own order, torch's own clipping."""
    opt = optimizer(params=net.parameters())
    for _ in range(epochs):
        net.train()
        perm = epoch_order(order, len(x))
        for start in range(0, len(x), batch_size):
            idx = perm[start : start + batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
    return net


SGD_MOMENTUM = partial(torch.optim.SGD, lr=0.01, momentum=0.9)
ADAM = partial(torch.optim.Adam, lr=1e-3)


# Vectorised convolutions round differently from per-model ones (float32, about 1e-7); BatchNorm on batches of
# 32 amplifies that over a few steps to some 1e-3 of a weight's scale on its most sensitive models (and Adam
# would turn rounding noise on zero gradients into whole steps, so BatchNorm is checked under SGD).
@pytest.mark.parametrize(
    "make_net, shape, optimizer, tolerance, channels_last",
    [
        (LeNet, (1, 16, 16), SGD_MOMENTUM, 1e-4, False),
        (LeNet, (1, 16, 16), ADAM, 1e-4, False),
        (lambda shape, classes: LeNet(shape, classes).to(memory_format=torch.channels_last), (1, 16, 16), SGD_MOMENTUM, 1e-4, True),
        (ResNet18, (1, 8, 8), SGD_MOMENTUM, 1e-2, False),
    ],
    ids=["lenet-sgd-momentum", "lenet-adam", "lenet-channels-last-sgd-momentum", "resnet18-batchnorm-sgd-momentum"],
)
def test_stacked_training_equals_one_by_one_training(make_net, shape, tolerance, optimizer, channels_last):
    torch.manual_seed(0)
    nets = [make_net(shape, 2) for _ in range(K)]
    singles = [copy.deepcopy(net) for net in nets]
    x = torch.randn(K, 96, *shape)
    y = torch.randint(0, 2, (K, 96))
    x += 2 * (y[..., None, None, None] - 0.5)  # learnable, so that the models move apart
    orders = lambda: [torch.Generator().manual_seed(seed) for seed in range(K)]
    stacked, metrics = fit_stacked(
        nets, (x, y), (x, y), orders(), optimizer, epochs=2, batch_size=32, clip_norm=0.5, channels_last=channels_last
    )
    stacked_convs = [p for p in stacked.params.values() if p.dim() == 5]
    assert all(
        p.permute(0, 1, 3, 4, 2).is_contiguous() == channels_last for p in stacked_convs if p.shape[2] > 1 and p.shape[3] * p.shape[4] > 1
    )  # layouts differ only there
    for k, (net, order) in enumerate(zip(singles, orders())):
        one_by_one(net, x[k], y[k], order, optimizer, epochs=2, batch_size=32, clip=0.5)
        state = stacked.unstack(k)
        for name, value in net.state_dict().items():
            scale = value.float().abs().max().item() + 1e-3
            assert (state[name].float() - value.float()).abs().max().item() <= tolerance * scale, f"model {k}: {name}"
        net.eval()
        with torch.no_grad():
            expected = F.cross_entropy(net(x[k]), y[k]).item()
        assert metrics[k]["test_loss"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert len({m["test_loss"] for m in metrics}) == K  # different data and seeds: really K different models


@pytest.mark.parametrize("arch, shape", [("lenet", "[1,16,16]"), ("resnet18", "[1,8,8]")], ids=["lenet", "resnet18-batchnorm"])
def test_stacked_sweep_cells_match_the_single_run_of_each_cell(arch, shape):
    cfg = compose_config(
        [
            "experiment=single",
            "sweep=fourier",
            f"arch={arch}",
            f"dataset.shape={shape}",
            "logger=none",
            "trainer.accelerator=cpu",
            "trainer.max_epochs=2",
            "dataset.n_train=192",
            "dataset.n_test=128",
            "dataset.batch_size=64",
            "optimizer.lr=0.05",
            "trainer.check_val_every_n_epoch=1",
        ]
    )
    directions = [[1, 0], [2, 1], [3, 3]]
    stacked = train_cells_stacked(cfg, directions)
    for direction, record in zip(directions, stacked):
        single = train_cell(cell_config(cfg, direction))
        assert record["direction"] == direction and record["status"] == "ok"
        assert record["steps"] == single["steps"] and len(record["history"]) == len(single["history"]) == 2
        for key in ("test_loss", "train_loss"):
            assert record[key] == pytest.approx(single[key], abs=1e-3), key
        for key, size in (("test_acc", 128), ("train_acc", 192)):  # a sample on the boundary may flip
            assert record[key] == pytest.approx(single[key], abs=1.5 / size), key
        for ours, theirs in zip(record["history"], single["history"]):
            assert ours["train/loss"] == pytest.approx(theirs["train/loss"], abs=1e-3)
