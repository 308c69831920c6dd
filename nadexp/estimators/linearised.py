"""A zero-training ranking of directions from the linearised network (the empirical NTK at initialisation), to compare
with the NADs' score (docs/predicted_maps.md): a cell's network replaced by z(x) = z0(x) + J(x) w (z: its logit
difference; J held explicitly, by vmap of grad, in eval mode) and trained on D(v) with the cell's own protocol."""

import math

import torch
from omegaconf import DictConfig
from torch.func import functional_call, grad, vmap
from torch.utils.data import DataLoader

from nadexp.training.train import build_data_and_net

CHUNK = 256  # samples per vmap of per-sample gradients


def linearised_accuracy(cell: DictConfig) -> float:
    """Test accuracy on D(v) of the network of ``cell`` (a sweep cell's config: nadexp.sweeps.runner.cell_config)
    linearised at its initialisation, trained as the cell is."""
    datamodule, net = build_data_and_net(cell)
    net.eval()
    params, buffers = {name: p.detach() for name, p in net.named_parameters()}, dict(net.named_buffers())
    (x_train, y_train), (x_test, y_test) = datamodule.load("train"), datamodule.load("test")

    def margin(p, x):  # logit(class 1) - logit(class 0) of a batch
        logits = functional_call(net, (p, buffers), (x,))
        return logits[:, 1] - logits[:, 0]

    one = lambda p, x: margin(p, x[None])[0]  # noqa: E731

    def rows(x: torch.Tensor) -> torch.Tensor:  # (n, parameters): each sample's gradient of z, by vmap of grad
        grads = vmap(grad(one), in_dims=(None, 0))(params, x)
        return torch.cat([g.reshape(len(x), -1) for g in grads.values()], dim=1)

    with torch.no_grad():
        z_train = torch.cat([margin(params, chunk) for chunk in x_train.split(CHUNK)])
    jacobian = torch.cat([rows(chunk) for chunk in x_train.split(CHUNK)])
    w = _train(jacobian, z_train, 2.0 * y_train.float() - 1, cell, datamodule.shuffle_generator())
    del jacobian
    correct = 0
    for chunk, labels in zip(x_test.split(CHUNK), y_test.split(CHUNK)):
        with torch.no_grad():
            z = margin(params, chunk)
        z = z + rows(chunk) @ w
        correct += int(((z > 0).long() == labels).sum())
    return correct / len(y_test)


def _train(jacobian: torch.Tensor, z0: torch.Tensor, signs: torch.Tensor, cell: DictConfig, shuffle: torch.Generator) -> torch.Tensor:
    """SGD on the parameter change w of the linear model z0 + J w, with the cell's batch size, epochs, learning rate
    (decaying linearly to 0 per step) and gradient-norm clipping, its batches in the order the cell's training draws
    them (a DataLoader of indices shuffled by the data module's generator, ``shuffle``)."""
    n, size = jacobian.shape
    batch, epochs = cell.dataset.batch_size, cell.trainer.max_epochs
    lr, clip = cell.optimizer.lr, cell.trainer.get("gradient_clip_val")
    steps, step = epochs * math.ceil(n / batch), 0
    batches, w = DataLoader(range(n), batch_size=batch, shuffle=True, generator=shuffle), torch.zeros(size)
    for _ in range(epochs):
        for index in batches:
            j = jacobian[index]
            z = z0[index] + j @ w
            # d/dz of softplus(-s z), the cross-entropy of two logits whose difference is z
            g = j.T @ (-signs[index] * torch.sigmoid(-signs[index] * z)) / len(index)
            if clip:
                g = g * min(1.0, clip / (float(g.norm()) + 1e-12))
            w -= lr * (1 - step / steps) * g
            step += 1
    return w
