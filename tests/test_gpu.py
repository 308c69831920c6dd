"""What only a GPU can show: the CUDA paths give the CPU's numbers. Skipped without CUDA; `make gpu-check` runs
these and times command-line runs beside them (benchmarks/gpu_check.py).

NADEXP_TEST_DEVICE=cpu runs the same comparisons with the CPU as the device (a dry run of this file's own logic).
"""

import logging
import os

import pytest
import torch
from hydra.utils import instantiate

from nadexp.config import compose_config
from nadexp.data.directional import DirectionalDataset
from nadexp.devices import apply_tf32
from nadexp.estimators.nads import BFLOAT16_FAMILIES, BFLOAT16_KEEPS, NADEstimator, arch_family, principal_directions, subspace_overlap
from nadexp.training.stacked import fit_stacked

from conftest import ARCHS
from test_stacked import SGD_MOMENTUM, one_by_one

DEVICE = torch.device(os.environ.get("NADEXP_TEST_DEVICE", "cuda"))
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-check)"),
]


@pytest.fixture(autouse=True)
def float32_means_float32():
    apply_tf32(False)  # the policy's default: the comparisons below are of float32 with float32


# arch, input shape, networks: enough networks for ten NADs, few enough that the CPU reference takes seconds
NAD_CASES = [("lenet", (1, 32, 32), 128), ("resnet18", (1, 16, 16), 32), ("densenet121", (1, 16, 16), 24), ("vit_tiny", (1, 16, 16), 32)]


def nad_factory(arch: str, shape):
    cfg = compose_config(["experiment=nads", f"arch={arch}", f"dataset.shape=[{','.join(map(str, shape))}]"])
    return NADEstimator().prepare(cfg)  # the network factory an estimate of that config uses


def gradients(arch, shape, networks, method, device, dtype="float32", networks_per_batch="auto"):
    estimator = NADEstimator(
        method=method, num_networks=networks, device=str(device), dtype=dtype, seed=0, networks_per_batch=networks_per_batch
    )
    return estimator.gradients(nad_factory(arch, shape), shape)


SIDE_BY_SIDE = 8  # networks per pass on the device: what `auto` gives there at least, named so a CPU dry run agrees


@pytest.mark.parametrize("method", ["finite_difference", "autograd"])
@pytest.mark.parametrize("arch, shape, networks", NAD_CASES, ids=[case[0] for case in NAD_CASES])
def test_nads_on_the_device_are_the_cpus(arch, shape, networks, method, caplog, record_property):
    with caplog.at_level(logging.INFO, logger="nadexp.estimators.gradients"):
        on_device = gradients(arch, shape, networks, method, DEVICE, networks_per_batch=SIDE_BY_SIDE)
    runner = caplog.text.strip().splitlines()[-1] if caplog.text.strip() else "one wide network"
    on_cpu = gradients(arch, shape, networks, method, "cpu")
    assert "one network at a time" not in runner, runner  # a side-by-side runner ran on the device
    overlap = subspace_overlap(principal_directions(on_device)[0], principal_directions(on_cpu)[0], 10)
    how = runner.split(": ", 1)[-1].split(" - ")[-1]
    record_property("measured", f"top-10 overlap {overlap:.4f} ({networks} networks; {how})")  # for make gpu-check's table
    assert overlap >= 0.99, f"{arch} {method}: top-10 overlap {overlap:.4f} between {DEVICE} and CPU ({runner})"


@pytest.mark.parametrize("arch, shape, networks", NAD_CASES, ids=[case[0] for case in NAD_CASES])
def test_bfloat16_nads_on_the_device_agree_with_float32(arch, shape, networks, record_property):
    float32 = gradients(arch, shape, networks, "finite_difference", DEVICE, networks_per_batch=SIDE_BY_SIDE)
    bfloat16 = gradients(arch, shape, networks, "finite_difference", DEVICE, "bfloat16", SIDE_BY_SIDE)
    overlap = subspace_overlap(principal_directions(bfloat16)[0], principal_directions(float32)[0], 10)
    kept = arch_family(arch) in BFLOAT16_FAMILIES  # dtype=auto takes bfloat16 for these families only
    record_property("measured", f"top-10 overlap {overlap:.4f} ({networks} networks; dtype=auto: {'bfloat16' if kept else 'float32'})")
    if kept:  # the measurement that put the family there holds on this device too
        assert overlap >= BFLOAT16_KEEPS, f"{arch}: top-10 overlap {overlap:.4f} between bfloat16 and float32 on {DEVICE}"


def test_d_v_on_the_device_is_the_cpus_bit_for_bit():
    dataset = DirectionalDataset(direction=[3, 5], n_train=2048, n_test=512, seed=7)
    for split in ("train", "test"):
        x, y = dataset.sample(split, DEVICE)
        want_x, want_y = dataset.sample(split)
        assert x.device.type == DEVICE.type and torch.equal(x.cpu(), want_x) and torch.equal(y.cpu(), want_y)


# In float64: in float32 the two ways of computing a layer round differently, and a ReLU whose input lies within
# that rounding of zero can switch between them (measured: VGG-11, one bias off by 4e-3 after two steps, 2.8e-3 of
# the whole step, on one of two models). In float64 only a difference in what is computed remains.
STACKED_TOLERANCE = 1e-9


def flat(state: dict, names) -> torch.Tensor:
    return torch.cat([state[name].detach().double().flatten().cpu() for name in names])


@pytest.mark.parametrize("arch", ARCHS)
def test_two_stacked_models_on_the_device_train_as_two_single_runs(arch, record_property):
    shape = (1, 32, 32)
    cfg = compose_config(["experiment=single", f"arch={arch}"])
    torch.manual_seed(0)
    nets = [instantiate(cfg.arch, input_shape=shape, num_classes=2).to(DEVICE, torch.float64) for _ in range(2)]
    singles = [instantiate(cfg.arch, input_shape=shape, num_classes=2).to(DEVICE, torch.float64) for _ in range(2)]
    for single, net in zip(singles, nets):
        single.load_state_dict(net.state_dict())
        for dropout in [m for m in (*net.modules(), *single.modules()) if isinstance(m, torch.nn.Dropout)]:
            dropout.p = 0.0  # masks are drawn differently stacked (one stream per group) and alone: compare the rest
    x = torch.randn(2, 64, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(DEVICE)
    y = (torch.arange(64) % 2).repeat(2, 1).to(DEVICE)
    x += 2 * (y[..., None, None, None] - 0.5)
    orders = lambda: [torch.Generator().manual_seed(seed) for seed in range(2)]  # noqa: E731
    stacked, _ = fit_stacked(nets, (x, y), (x, y), orders(), SGD_MOMENTUM, epochs=1, batch_size=32, clip_norm=0.5)
    errors = []
    for k, (single, order) in enumerate(zip(singles, orders())):
        names = [name for name, t in single.state_dict().items() if t.is_floating_point()]
        start = flat(single.state_dict(), names)
        one_by_one(single, x[k], y[k], order, SGD_MOMENTUM, 1, 32, 0.5)
        want, got = flat(single.state_dict(), names), flat(stacked.unstack(k), names)
        # the whole state, relative to how far training moved it (a bias before BatchNorm gets rounding noise only)
        errors.append(float((got - want).norm() / (want - start).norm()))
    record_property("measured", f"stacked vs single, of the training step: {', '.join(f'{error:.1e}' for error in errors)}")
    assert max(errors) <= STACKED_TOLERANCE, f"{arch}: stacked and single runs differ by {max(errors):.2e} of the training step"


def test_a_sweep_forced_out_of_memory_halves_and_gives_the_unforced_numbers(tmp_path, caplog, record_property):
    """A group of 8 stacked models under a memory cap that only 2 fit in: it halves until it fits, and every cell
    ends with the numbers of the same sweep without the cap (torch.cuda.set_per_process_memory_fraction)."""
    from nadexp.run.execute import execute
    from nadexp.sweeps.store import CellStore

    if DEVICE.type != "cuda":
        pytest.skip("needs CUDA's allocator")
    overrides = ["experiment=single", "sweep=fourier", "arch=lenet", "dataset.shape=[1,16,16]", "sweep.stride=4", "logger=none"]
    overrides += ["dataset.n_train=20000", "dataset.n_test=1000", "trainer.max_epochs=2", "trainer=gpu"]
    peaks = {}
    for k in (2, 8):  # unforced: the memory a group of 2 and of 8 takes
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(DEVICE)
        execute(compose_config([*overrides, f"sweep.models_at_once={k}"], output_dir=tmp_path / f"free{k}"), overrides)
        peaks[k] = torch.cuda.max_memory_reserved(DEVICE)
    total = torch.cuda.get_device_properties(DEVICE).total_memory
    torch.cuda.empty_cache()
    try:
        torch.cuda.set_per_process_memory_fraction((peaks[2] + peaks[8]) / 2 / total, DEVICE)
        with caplog.at_level("WARNING", logger="nadexp.sweeps.runner"):
            execute(compose_config([*overrides, "sweep.models_at_once=8"], output_dir=tmp_path / "capped"), overrides)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, DEVICE)
    free, capped = ({str(r["direction"]): r for r in CellStore(tmp_path / name / "cells").records()} for name in ("free8", "capped"))
    assert "out of GPU memory training 8 stacked models" in caplog.text and free.keys() == capped.keys()
    record_property(
        "measured", f"cap {(peaks[2] + peaks[8]) / 2 / 2**20:.0f} MiB, K down to {min(r['models_at_once'] for r in capped.values())}"
    )
    for direction, record in capped.items():
        assert record["test_acc"] == pytest.approx(free[direction]["test_acc"], abs=2 / 1000), direction
        assert record["test_loss"] == pytest.approx(free[direction]["test_loss"], abs=1e-3), direction
