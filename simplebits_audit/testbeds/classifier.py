"""A small CNN for 32x32 testbeds and the trainer that fits it offline on CPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU layers, three poolings and a linear head for 32x32 images (~0.1 M parameters)."""

    def __init__(self, n_classes: int = 10, in_channels: int = 3, width: int = 32, size: int = 32) -> None:
        super().__init__()
        w = width
        self.config = {"n_classes": n_classes, "in_channels": in_channels, "width": width, "size": size}
        self.features = nn.Sequential(
            *_conv(in_channels, w), *_conv(w, w), nn.MaxPool2d(2),
            *_conv(w, 2 * w), nn.MaxPool2d(2),
            *_conv(2 * w, 2 * w), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(2 * w * (size // 8) ** 2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_classes: int | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    show_progress: bool = False,
) -> SmallCNN:
    """Train a :class:`SmallCNN` on pixel images (N, C, H, W) in [0, 1]; returned in eval mode."""
    torch.manual_seed(seed)
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    model = SmallCNN(n_classes, images.shape[1], size=images.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(labels) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("training classifier", total=steps)
        for _ in range(epochs):
            for idx in torch.randperm(len(labels)).split(batch_size):
                loss = F.cross_entropy(model(images[idx]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                progress.advance(task)
    return model.eval()
