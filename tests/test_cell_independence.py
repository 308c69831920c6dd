"""A sweep cell's numbers depend on its settings and seed only: not on how many models are stacked with it (K),
which cells share its group, which process trains it, or what an out-of-memory retry left behind."""

import threading
import time
import weakref

import pytest
import torch
from torch import nn

from nadexp.config import compose_config
from nadexp.run.context import Run
from nadexp.run.execute import execute
from nadexp.sweeps import runner
from nadexp.sweeps.store import CellStore
from nadexp.training.keyed_dropout import KeyedDropout, keyed

DROP_NET = """
import math
from torch import nn


class DropNet(nn.Sequential):
    def __init__(self, input_shape, num_classes):
        super().__init__(nn.Flatten(), nn.Linear(math.prod(input_shape), 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, num_classes))
"""
SWEEP = ["experiment=single", "sweep=fourier", "arch=custom", "arch.target=dropnet.DropNet", "dataset.shape=[1,8,8]", "sweep.stride=2"]
SWEEP += ["dataset.n_train=256", "dataset.n_test=256", "trainer.max_epochs=3", "logger=none", "trainer.accelerator=cpu"]
NUMBERS = ("test_acc", "test_loss", "train_acc", "train_loss", "history")


@pytest.fixture
def drop_net(tmp_path, monkeypatch):
    (tmp_path / "dropnet.py").write_text(DROP_NET)
    monkeypatch.syspath_prepend(str(tmp_path))


def sweep_cells(directory, *extra) -> dict:
    overrides = [*SWEEP, *extra]
    execute(compose_config(overrides, output_dir=directory), overrides)
    return {str(r["direction"]): r for r in CellStore(directory / "cells").records()}


def test_a_net_with_dropout_gives_the_same_cells_whatever_k(tmp_path, drop_net):
    by_k = {k: sweep_cells(tmp_path / f"k{k}", f"sweep.models_at_once={k}") for k in (1, 2, 4)}
    assert len(by_k[1]) == 10 and by_k[1].keys() == by_k[2].keys() == by_k[4].keys()
    assert {r["engine"] for r in by_k[1].values()} == {"lightning"} and {r["models_at_once"] for r in by_k[4].values()} == {4, 2}
    for direction, alone in by_k[1].items():
        two, four = by_k[2][direction], by_k[4][direction]
        assert {key: two[key] for key in NUMBERS} == {key: four[key] for key in NUMBERS}, direction  # the same engine
        # Lightning alone and the stacked engine: the same masks and accuracies; losses round apart in float32 at most
        for key in ("test_acc", "train_acc"):
            assert two[key] == alone[key], (direction, key)
        for ours, theirs in zip(two["history"], alone["history"]):
            assert ours["train/acc"] == theirs["train/acc"] and ours["train/loss"] == pytest.approx(theirs["train/loss"], abs=2e-6)
        assert two["test_loss"] == pytest.approx(alone["test_loss"], abs=2e-6), direction
    assert len({r["test_loss"] for r in by_k[1].values()}) == 10  # ten different cells, not one repeated


def test_keyed_dropout_draws_by_key_step_and_layer_and_keeps_the_expected_value():
    net = keyed(nn.Sequential(nn.Dropout(0.3), nn.Dropout2d(0.5)), key=7).train()
    ones = torch.ones(64, 16, 4, 4)
    first, again = net[0](ones), net[0](ones)
    assert torch.equal(first, again) and isinstance(net[1], KeyedDropout)
    assert abs((first == 0).float().mean().item() - 0.3) < 0.01 and abs(first.mean().item() - 1) < 0.02  # inverted dropout
    channels = net[1](ones)
    assert torch.equal(channels.amax((2, 3)), channels.amin((2, 3)))  # one draw per channel
    net.keyed_draws.step = 1
    assert not torch.equal(net[0](ones), first)
    other = keyed(nn.Sequential(nn.Dropout(0.3)), key=8).train()
    assert not torch.equal(other[0](ones), first)
    net.keyed_draws.on_rank(1)  # a DDP rank of its own
    net.keyed_draws.step = 0
    assert not torch.equal(net[0](ones), first)


def test_processes_that_stack_differently_never_train_the_same_cell(tmp_path, drop_net, monkeypatch):
    """Another process (K = 2) holds two cells; this one (K = 4) trains the rest and waits for those two."""
    overrides = [*SWEEP, "sweep.models_at_once=4"]
    cfg = compose_config(overrides, output_dir=tmp_path)
    groups = runner.plan(Run.start(cfg, "sweep")).groups
    theirs = [key for _, key in groups[0][1:3]]  # two cells inside this process's first group of 4
    store = CellStore(tmp_path / "cells")
    for key in theirs:
        assert store.claim(key)  # held by a process that is alive (this test's own pid)
    trained = []
    real = runner.train_cells_stacked
    monkeypatch.setattr(runner, "train_cells_stacked", lambda cfg, directions: trained.append(len(directions)) or real(cfg, directions))
    monkeypatch.setattr(runner, "CLAIM_POLL_S", 0.2)

    def the_other_process():
        time.sleep(1.5)
        for key in theirs:
            kx, ky = (int(n) for n in key.split("-")[2].split("_"))
            store.write(key, {"arch": "DropNet", "basis": "fourier", "direction": [kx, ky], "seed": 0, "status": "ok", "test_acc": 0.5})
            store.release(key)

    other = threading.Thread(target=the_other_process)
    other.start()
    result = execute(cfg, overrides)
    other.join()
    records = {r["direction"].__repr__(): r for r in store.records()}
    assert result["cells"] == 10 and sum(trained) == 8  # the two held cells were left to their owner
    assert trained[0] == 2 and [r.get("engine") for r in records.values()].count(None) == 2  # the first group's other two


def test_an_out_of_memory_group_is_retried_after_its_memory_is_free(tmp_path, monkeypatch, caplog):
    """The failure comes after the group allocated its networks and data; nothing of it is alive when the halves
    start, and an allocation failure of cuBLAS counts as running out of memory."""
    held, checked = [], []
    real = runner.fit_stacked

    def fails_when_large(nets, train, test, *args, **kwargs):
        if len(nets) > 2:
            held.extend(weakref.ref(t) for t in (*nets, train[0], test[0]))
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
        checked.append(sum(ref() is not None for ref in held))
        return real(nets, train, test, *args, **kwargs)

    monkeypatch.setattr(runner, "fit_stacked", fails_when_large)
    overrides = ["experiment=single", "sweep=fourier", "arch=logreg", "dataset.shape=[1,8,8]", "sweep.stride=2", "logger=none"]
    overrides += ["dataset.n_train=200", "dataset.n_test=100", "trainer.max_epochs=1", "trainer.accelerator=cpu", "sweep.models_at_once=5"]
    with caplog.at_level("WARNING", logger="nadexp.sweeps.runner"):
        result = execute(compose_config(overrides, output_dir=tmp_path), overrides)
    assert result["cells"] == result["cells_ok"] == 10 and held and checked
    assert checked == [0] * len(checked), checked  # no network or tensor of a failed group was alive at any retry
    assert "out of GPU memory training 5 stacked models" in caplog.text


def test_other_runtime_errors_are_not_taken_for_out_of_memory():
    assert runner.out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert runner.out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE"))
    assert not runner.out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 2x2)"))
