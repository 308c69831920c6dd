"""K independent models of one architecture trained in one vectorised step (torch.func over stacked parameters). Model k owns its slice of
every parameter, buffer and optimiser state (the protocol's optimisers act element by element; the loss is the sum of the models' losses, so
slice k's gradient is model k's own; norms are clipped per model) and sees its data in the order a single run's shuffling DataLoader gives,
so K stacked models reproduce K single runs within float tolerance."""

import inspect
import time
from collections.abc import Callable, Sequence
from typing import Optional

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from nadexp.cores import share
from nadexp.results.schema import training_metrics
from nadexp.training.keyed_dropout import draws_of

# trainer.* settings that change nothing the engine does (display, checkpoint files, sanity checks).
NO_EFFECT = ("_target_", "default_root_dir", "enable_progress_bar", "enable_model_summary", "enable_checkpointing")
NO_EFFECT += ("log_every_n_steps", "num_sanity_val_steps")
SUPPORTED_VALUES = {"precision": ("32", "32-true"), "accelerator": ("auto", "cpu", "gpu", "cuda"), "devices": ("1",)}
SUPPORTED_VALUES.update(gradient_clip_algorithm=("None", "norm", "value"), deterministic=("None", "False"))
IMPLEMENTED = ("max_epochs", "gradient_clip_val", "check_val_every_n_epoch", *SUPPORTED_VALUES)


def unsupported_trainer_settings(trainer) -> list[str]:
    """``trainer.key=value`` for every setting of the trainer config that the stacked engine does not implement."""
    defaults = {name: p.default for name, p in inspect.signature(pl.Trainer.__init__).parameters.items()}

    def supported(key, value) -> bool:
        if key in SUPPORTED_VALUES:
            return str(value) in SUPPORTED_VALUES[key]
        return key in IMPLEMENTED or (key in defaults and value == defaults[key])

    return [f"trainer.{key}={value}" for key, value in trainer.items() if key not in NO_EFFECT and not supported(key, value)]


def trainer_options(trainer) -> dict:
    """The keyword arguments of ``fit_stacked`` that the trainer config sets (see unsupported_trainer_settings)."""
    clip, algorithm = trainer.get("gradient_clip_val"), trainer.get("gradient_clip_algorithm") or "norm"
    clips = {"clip_norm": clip if algorithm == "norm" else None, "clip_value": clip if algorithm == "value" else None}
    return {"epochs": trainer.max_epochs, **clips, "test_every": trainer.get("check_val_every_n_epoch") or 0}


def epoch_order(generator: torch.Generator, size: int) -> torch.Tensor:
    """The sample order of one epoch of a shuffling DataLoader driven by ``generator``."""
    torch.empty((), dtype=torch.int64).random_(generator=generator)  # the iterator's base seed
    return torch.randperm(size, generator=generator)


class StackedModels:
    """K copies of an architecture as one set of stacked tensors, called as one vmapped function."""

    def __init__(self, nets: Sequence[nn.Module], channels_last: bool = False):
        self.template = nets[0]
        self.params, self.buffers = stack_module_state(list(nets))
        self.size = len(nets)
        # Channels-last nets stay channels-last when stacked: vmap runs K convolutions as one grouped
        # convolution over inputs (B, K*C, H, W) and weights (K*O, C, kh, kw). Both are channels-last views,
        # with no copy, when the stacked inputs (K, B, C, H, W) are laid out (B, H, W, K, C) and the stacked
        # weights (K, O, C, kh, kw) as (K, O, kh, kw, C); the channels-last kernels are the faster ones.
        self.channels_last = channels_last  # the config's channels_last, as the nets were built with
        if self.channels_last:
            laid_out = lambda p: p.detach().permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3).requires_grad_()
            self.params = {name: laid_out(p) if p.dim() == 5 else p for name, p in self.params.items()}

        # Keyed dropout (nadexp.training.keyed_dropout): model k's masks from its own key, as when it trains alone.
        self.draws = draws_of(self.template)
        keys = [draws.key if (draws := draws_of(net)) is not None else None for net in nets]
        device = next(iter(self.params.values())).device
        self.keys = torch.tensor(keys, device=device) if self.draws is not None and None not in keys else None

        def call(params, buffers, x, key):
            if key is None:
                return functional_call(self.template, (params, buffers), (x,))
            own, self.draws.key = self.draws.key, key
            try:
                return functional_call(self.template, (params, buffers), (x,))
            finally:
                self.draws.key = own

        # Other random layers: each model its own draws from the group's stream (fit_stacked's seed).
        self._call = vmap(call, in_dims=(0, 0, 0, None if self.keys is None else 0), randomness="different")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K, B, ...) -> logits (K, B, classes)."""
        if self.channels_last and x.dim() == 5:
            x = x.permute(1, 3, 4, 0, 2).contiguous().permute(3, 0, 4, 1, 2)  # laid out (B, H, W, K, C)
        return self._call(self.params, self.buffers, x, self.keys)

    def at_step(self, step: int) -> None:
        """The training step that keys the dropout masks (numbered as a Lightning run numbers its batches)."""
        if self.draws is not None:
            self.draws.step = step

    def train(self, mode: bool = True):
        self.template.train(mode)

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """torch.nn.utils.clip_grad_norm_ applied to each model's gradients on its own; returns the K norms."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))
        return norms

    def unstack(self, k: int) -> dict[str, torch.Tensor]:
        """Model k's state dict."""
        return {name: t[k].detach() for name, t in {**self.params, **self.buffers}.items()}


def stacking_failure(net: nn.Module, input_shape, channels_last: bool = False, device="cpu") -> Optional[str]:
    """Why two copies of ``net`` cannot be trained as stacked models on ``device`` (torch.func cannot vectorise some layers of library
    models, some only on a GPU, such as fused attention kernels), or None when a stacked forward and backward pass works there."""
    import copy

    try:
        models = StackedModels([copy.deepcopy(net).to(device), copy.deepcopy(net).to(device)], channels_last)
        models.train(True)
        models(torch.zeros(2, 2, *input_shape, device=device)).sum().backward()
    except Exception as error:  # noqa: BLE001 - whatever torch.func raises, the sweep falls back to Lightning
        return f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return None


def _gather(data: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """data (K, N, ...), order (K, B) -> (K, B, ...): each model's own batch."""
    return data[torch.arange(len(data), device=data.device)[:, None], order]


@torch.no_grad()
def evaluate(models: StackedModels, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-model loss and accuracy (each a (K,) tensor) on stacked data x (K, N, ...), y (K, N)."""
    models.train(False)
    loss_sum, correct = torch.zeros(models.size, device=x.device), torch.zeros(models.size, device=x.device)
    for start in range(0, x.shape[1], batch_size):
        xb, yb = x[:, start : start + batch_size], y[:, start : start + batch_size]
        logits = models(xb)
        loss_sum += F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(yb.shape).sum(1)
        correct += (logits.argmax(-1) == yb).sum(1)
    return loss_sum / x.shape[1], correct / x.shape[1]


def fit_stacked(
    nets: Sequence[nn.Module], train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
    orders: Sequence[torch.Generator], optimizer: Callable, scheduler: Optional[Callable] = None, epochs=20, batch_size=128,
    eval_batch_size=1024, clip_norm: Optional[float] = None, clip_value: Optional[float] = None, test_every=0, seed=0, channels_last=False,
) -> tuple[StackedModels, list[dict]]:  # fmt: skip
    """Train K nets at once on ``train``/``test``, stacked (K, N, ...) images and (K, N) labels on one device.
    ``optimizer``/``scheduler``: the config groups' partials (the scheduler steps every step, told the total).
    Returns the models and per-model metrics shaped as a single run's. ``seed`` seeds random layers' masks on a
    generator of its own (torch's global one is left as it was); ``channels_last``: as the nets were built."""
    devices = [train[0].device] if train[0].device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        models = StackedModels(nets, channels_last)
        x_train, y_train = train
        size, started = x_train.shape[1], time.perf_counter()
        steps_per_epoch = -(-size // batch_size)
        opt = optimizer(params=list(models.params.values()))
        sched = scheduler(optimizer=opt, total_iters=epochs * steps_per_epoch) if scheduler else None
        history = [[] for _ in range(models.size)]
        for epoch in range(epochs):
            share()  # the cores, with the other nadexp processes of the moment (nadexp.cores)
            models.train(True)
            order = torch.stack([epoch_order(g, size) for g in orders]).to(x_train.device)
            loss_sum = torch.zeros(models.size, device=x_train.device)
            correct = torch.zeros(models.size, device=x_train.device)
            for start in range(0, size, batch_size):
                models.at_step(epoch * steps_per_epoch + start // batch_size)
                batch = order[:, start : start + batch_size]
                xb, yb = _gather(x_train, batch), _gather(y_train, batch)
                logits = models(xb)
                losses = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(yb.shape).mean(1)
                losses.sum().backward()  # slice k of every gradient is model k's own gradient
                if clip_norm is not None:
                    models.clip_grad_norm_(clip_norm)
                if clip_value is not None:  # element-wise, so clipping the stacked gradients clips each model's own
                    torch.nn.utils.clip_grad_value_(list(models.params.values()), clip_value)
                opt.step()
                opt.zero_grad(set_to_none=True)
                if sched is not None:
                    sched.step()
                with torch.no_grad():
                    loss_sum += losses.detach() * yb.shape[1]
                    correct += (logits.argmax(-1) == yb).sum(1)
            train_loss, train_acc = (loss_sum / size).tolist(), (correct / size).tolist()
            tested = test_every and (epoch + 1) % test_every == 0
            test_loss, test_acc = evaluate(models, *test, eval_batch_size) if tested else (None, None)
            for k in range(models.size):
                row = {"epoch": epoch, "train/loss": round(train_loss[k], 6), "train/acc": round(train_acc[k], 6)}
                if tested:
                    row.update({"test/loss": round(test_loss[k].item(), 6), "test/acc": round(test_acc[k].item(), 6)})
                history[k].append(row)
        test_loss, test_acc = evaluate(models, *test, eval_batch_size)
        seconds = (time.perf_counter() - started) / models.size
        steps = epochs * steps_per_epoch  # wall_time_s: each model's share of the stack's time
        return models, [training_metrics(history[k], test_loss[k], test_acc[k], epochs, steps, seconds) for k in range(models.size)]
