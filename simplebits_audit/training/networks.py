"""The small networks condensation trains: DC's ConvNet (or the testbeds' SmallCNN), trained and scored.

:func:`~simplebits_audit.training.condense` matches the gradients of a fresh :func:`make_network`
per outer step; :func:`~simplebits_audit.training.evaluate_condensed` trains fresh ones on a
condensed set (:func:`train_network`) and scores them (:func:`accuracy`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._helpers import seeded
from ..testbeds.classifier import SmallCNN
from .loop import step_seed

#: Networks gradients are matched (and evaluation classifiers trained) on: name -> description.
ARCHS = {
    "convnet": "DC's ConvNet: 3 x (conv 3x3, instance norm, ReLU, average pooling), linear head (width 32)",
    "smallcnn": "the testbeds' SmallCNN (batch norm, max pooling), as the shipped testbed classifiers",
}
#: Defaults of :func:`~simplebits_audit.training.evaluate_condensed` (and of :func:`train_network`).
EVALUATE_DEFAULTS: dict[str, Any] = {"n_models": 5, "epochs": 300, "lr": 0.01, "batch_size": 256}


class ConvNet(nn.Module):
    """DC's ConvNet for small images: ``depth`` x (conv 3x3, instance norm, ReLU, 2x2 average pooling), a linear head.

    Instance norm (a per-channel ``GroupNorm`` with affine weights) keeps every image's forward
    pass independent of the others in its batch, so the gradient of a batch of synthetic images of
    one class is comparable with that of a real batch of another size (batch norm is not).
    """

    def __init__(self, n_classes: int, in_channels: int = 3, size: int = 32, width: int = 32, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, s = in_channels, size
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(width, width, affine=True), nn.ReLU(), nn.AvgPool2d(2)]
            c, s = width, s // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * max(s, 1) ** 2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def make_network(arch: str, n_classes: int, in_channels: int, size: int) -> nn.Module:
    """A freshly initialised network of ``arch`` (:data:`ARCHS`) for (C, size, size) images (uses the global RNG)."""
    if arch == "convnet":
        return ConvNet(n_classes, in_channels, size)
    if arch == "smallcnn":
        return SmallCNN(n_classes, in_channels, size=size, early_pool=True)
    raise ValueError(f"arch: expected one of {sorted(ARCHS)}, got {arch!r}")


def train_network(
    images: torch.Tensor, labels: torch.Tensor, n_classes: int, *, arch: str = "convnet", epochs: int | None = None,
    lr: float | None = None, batch_size: int | None = None, seed: int = 0, device: str | torch.device | None = None,
) -> nn.Module:
    """Train a fresh ``arch`` network on pixel images (N, C, H, W) with labels (N,); returned in eval mode.

    SGD with momentum 0.9, weight decay 5e-4 and the learning rate divided by 10 halfway (DC's
    evaluation), ``epochs`` passes over the images in batches of ``batch_size``.
    """
    epochs = EVALUATE_DEFAULTS["epochs"] if epochs is None else epochs
    lr = EVALUATE_DEFAULTS["lr"] if lr is None else lr
    batch_size = EVALUATE_DEFAULTS["batch_size"] if batch_size is None else batch_size
    device = torch.device(device or "cpu")
    with seeded(step_seed(seed, 0, 3)):
        net = make_network(arch, n_classes, images.shape[1], images.shape[-1])
    net = net.to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [max(1, epochs // 2)], 0.1)
    generator = torch.Generator().manual_seed(step_seed(seed, 0, 4))
    images, labels = images.to(device), labels.to(device)
    for _ in range(epochs):
        for idx in torch.randperm(len(labels), generator=generator).split(batch_size):
            loss = F.cross_entropy(net(images[idx.to(device)]), labels[idx.to(device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``net`` on pixel images (N, C, H, W) with labels (N,)."""
    device = next(net.parameters()).device
    correct = sum(int((net(x.to(device)).argmax(1) == y.to(device)).sum())
                  for x, y in zip(images.split(batch_size), labels.split(batch_size)))
    return correct / len(labels)


__all__ = ["ARCHS", "EVALUATE_DEFAULTS", "ConvNet", "accuracy", "make_network", "train_network"]
