import pytest
import pytorch_lightning as pl
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from nadexp.training import build

from conftest import ARCHS, DATASETS, ROOT, check_config_header


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_and_dataset_compose_and_instantiate(compose, cifar10_dir, cifar100_dir, fashion_mnist_dir, arch, dataset):
    data_dir = {"cifar10": cifar10_dir, "cifar100": cifar100_dir, "fashion_mnist": fashion_mnist_dir}.get(dataset)
    files = [f"dataset.data_dir={data_dir}", "dataset.check_md5=false"] if data_dir else []
    cfg = compose("experiment=single", f"arch={arch}", f"dataset={dataset}", "logger=none", "trainer.accelerator=cpu", *files)
    if arch.startswith("vgg") and dataset == "fashion_mnist":  # five pools do not fit 28 x 28 images: refused, saying so
        with pytest.raises(Exception, match="too small for VGG: its five pools need images of at least 32 x 32"):
            build(cfg)
        return
    datamodule, model, trainer = build(cfg)
    assert cfg.arch_name == arch and cfg.dataset_name == dataset
    assert model.net.__class__.__name__ == cfg.arch._target_.rsplit(".", 1)[1]
    assert trainer.max_epochs == 20 and trainer.gradient_clip_val == 0.5


def test_defaults_are_the_protocol_of_the_published_figures_and_the_code_defaults_stay_available(compose):
    cfg = compose()
    assert (cfg.dataset.eps, cfg.dataset.sigma, cfg.dataset.n_train, cfg.dataset.n_test) == (2.0, 3.0, 10_000, 10_000)
    assert cfg.dataset.fourier_phase == "cosine"
    code = compose("dataset=directional_reference_code")
    assert (code.dataset.eps, code.dataset.fourier_phase, code.dataset.sigma) == (1.0, "sine", 3.0)
    assert list(cfg.dataset.shape) == [1, 32, 32] and cfg.dataset.batch_size == 128
    assert cfg.optimizer.lr == 0.5 and cfg.optimizer.momentum == 0 and cfg.optimizer.weight_decay == 0
    assert cfg.scheduler.end_factor == 0.0 and cfg.trainer.max_epochs == 20


class RecordLearningRate(pl.Callback):
    def __init__(self):
        self.rates = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_the_learning_rate_decays_linearly_per_step_to_zero(compose):
    cfg = compose(
        "experiment=single",
        "logger=none",
        "callbacks=none",
        "trainer.enable_progress_bar=false",
        "dataset.n_train=256",
        "dataset.n_test=64",
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
    )
    datamodule, model, trainer = build(cfg)
    recorder = RecordLearningRate()
    trainer.callbacks.append(recorder)
    trainer.fit(model, datamodule=datamodule)
    assert recorder.rates == pytest.approx([0.5, 0.375, 0.25, 0.125])  # 2 epochs x 2 steps of 128
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0)
    assert [entry["epoch"] for entry in model.history] == [0, 1] and "train/acc" in model.history[-1]


def test_other_optimisers_are_selectable(compose):
    cfg = compose("optimizer=adam", "scheduler=constant")
    assert cfg.optimizer._target_ == "torch.optim.Adam" and not cfg.scheduler


def test_misspelt_keys_and_wrong_types_fail_at_composition(compose):
    with pytest.raises(ConfigCompositionException, match="sigmaa"):
        compose("dataset.sigmaa=3")
    with pytest.raises(ConfigCompositionException) as error:
        compose("dataset.sigma=three")
    assert isinstance(error.value.__cause__, ValidationError) and "sigma" in str(error.value.__cause__)


FIGURES = sorted(
    p.stem
    for p in (ROOT / "conf" / "experiment").glob("*.yaml")
    if p.stem.startswith(("fourier_", "nad_curve_")) and "predicted" not in p.stem  # predicted maps train nothing: tests/test_prediction.py
)


@pytest.mark.parametrize("figure", FIGURES)
def test_every_figure_config_says_how_to_run_it_and_composes_a_sweep(compose, figure):
    check_config_header(figure)
    cfg = compose(f"experiment={figure}", "logger=none")
    assert cfg.task == "sweep" and cfg.sweep.basis == ("nad" if figure.startswith("nad_curve_") else "fourier")
    arch = figure.split("_", 2)[-1] if figure.startswith("nad_curve_") else figure.removeprefix("fourier_")
    if arch not in ("demo", "panel", "library"):  # multiruns over archs
        assert cfg.arch_name == arch
        header = (ROOT / "conf" / "experiment" / f"{figure}.yaml").read_text().split("\ndefaults:")[0]
        assert "# Published comparison: " in header, figure  # whether its figure was compared with a published one
    if cfg.sweep.basis == "nad":
        assert cfg.dataset.nads.endswith(f"nads/{arch}-finite_difference-s0")


def test_the_figure_configs_cover_every_paper_architecture():
    for arch in ("logreg", "lenet", "lenet_nopool", "vgg11", "resnet18", "resnet18_nopool", "densenet121"):
        assert {f"fourier_{arch}", f"nad_curve_{arch}"} <= set(FIGURES)
