"""A small CNN for the testbeds (32x32 colour, 128x128 greyscale) and the trainer that fits it offline on CPU;
the torchvision architectures a shipped checkpoint may name instead (:data:`ARCHITECTURES`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._progress import JobProgress

#: torchvision architectures a shipped testbed checkpoint may name in its ``"arch"`` key (built with
#: its ``"config"`` as keyword arguments, random weights, then the checkpoint's state dict)
ARCHITECTURES = ("mobilenet_v3_small", "resnet18")


def build_classifier(arch: str, config: dict) -> nn.Module:
    """A fresh classifier: ``arch="small_cnn"`` -> :class:`SmallCNN` (``config`` its keyword arguments),
    or one of :data:`ARCHITECTURES` from torchvision (e.g. ``{"num_classes": 5}``); ``ValueError`` naming
    ``arch`` otherwise (a checkpoint never names arbitrary code)."""
    if arch == "small_cnn":
        return SmallCNN(**config)
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: expected 'small_cnn' or one of {ARCHITECTURES}, got {arch!r}")
    import torchvision

    return getattr(torchvision.models, arch)(weights=None, **config)


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU layers, three poolings and a linear head for square images (~0.1 M parameters).

    ``early_pool=False`` (default): two convolutions at full resolution before the first pooling.
    ``early_pool=True``: pool after the first convolution (about twice as fast to train on CPU, the
    layout of the shipped testbed classifiers); the last convolution then runs at size/8.
    ``pools`` (default 3): poolings in all; each one beyond three adds a conv-BN-ReLU layer and a
    pooling at the end of the stack (``early_pool``: before its last convolution), so large images
    (the 128x128 ``radiograph``) reach a small map and a small head. ``input_pool`` (default 1): the
    input is average-pooled by this factor first (on CPU the full-resolution batch norms and ReLUs
    of a 128x128 input cost more than all convolutions; the ``radiograph`` classifier uses 2, then
    ``pools=4``); the last map's side is ``size // input_pool // 2**pools``.
    The output is one logit per class: softmax over them (class-index testbeds) or one sigmoid each
    (``radiograph``: one logit; ``digits-stripes``: two), as trained by :func:`train_classifier`.
    """

    def __init__(
        self, n_classes: int = 10, in_channels: int = 3, width: int = 32, size: int = 32, early_pool: bool = False, pools: int = 3,
        input_pool: int = 1,
    ) -> None:
        super().__init__()
        if input_pool < 1 or (input_pool > 1 and size // input_pool < 8):
            raise ValueError(f"input_pool: expected a factor >= 1 leaving at least 8 pixels of {size}, got {input_pool}")
        side = size // input_pool
        if pools < 3 or (pools > 3 and side >> pools < 1):
            raise ValueError(f"pools: expected at least 3 and at most log2(size / input_pool) = {side.bit_length() - 1}, got {pools}")
        w = width
        self.config = {"n_classes": n_classes, "in_channels": in_channels, "width": width, "size": size}
        extra = [m for _ in range(pools - 3) for m in (*_conv(2 * w, 2 * w), nn.MaxPool2d(2))]
        if early_pool:
            self.config["early_pool"] = True
            layers = [*_conv(in_channels, w), nn.MaxPool2d(2), *_conv(w, 2 * w), nn.MaxPool2d(2),
                      *_conv(2 * w, 2 * w), nn.MaxPool2d(2), *extra, *_conv(2 * w, 2 * w)]
        else:
            layers = [*_conv(in_channels, w), *_conv(w, w), nn.MaxPool2d(2), *_conv(w, 2 * w), nn.MaxPool2d(2),
                      *_conv(2 * w, 2 * w), nn.MaxPool2d(2), *extra]
        if pools != 3:  # the config of the default layout stays as it was (shipped cards and checkpoints)
            self.config["pools"] = pools
        if input_pool != 1:
            self.config["input_pool"] = input_pool
            layers = [nn.AvgPool2d(input_pool), *layers]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * w * (side >> pools) ** 2, n_classes)

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
    early_pool: bool = False,
    weight_decay: float = 0.0,
    show_progress: bool = False,
    head: str = "softmax",
    width: int = 32,
    pools: int = 3,
    input_pool: int = 1,
) -> SmallCNN:
    """Train a :class:`SmallCNN` on pixel images (N, C, H, W) in [0, 1]; returned in eval mode.

    Adam with a cosine learning-rate schedule; channels-last memory layout while training (about
    three times faster on CPU; the returned weights are ordinary contiguous tensors).

    ``head="softmax"`` (default): labels (N,) class indices, cross-entropy. ``head="sigmoid"``: one
    logit per label with binary cross-entropy on the logits; labels (N,) 0/1 (one logit, the default
    ``n_classes=1``) or (N, K) multi-hot (K logits). ``width``, ``pools``, ``input_pool``: see :class:`SmallCNN`.
    """
    if head not in ("softmax", "sigmoid"):
        raise ValueError(f"head: expected 'softmax' or 'sigmoid', got {head!r}")
    torch.manual_seed(seed)
    if head == "sigmoid":
        n_classes = (labels.shape[1] if labels.dim() == 2 else 1) if n_classes is None else n_classes
        targets = labels.float().reshape(len(labels), -1)
        if targets.shape[1] != n_classes:
            raise ValueError(f"labels: {targets.shape[1]} label column(s) for {n_classes} sigmoid output(s)")
        if not ((targets == 0) | (targets == 1)).all():
            raise ValueError("labels: a sigmoid head takes 0/1 labels")
    else:
        n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
        targets = labels
    model = SmallCNN(
        n_classes, images.shape[1], width=width, size=images.shape[-1], early_pool=early_pool, pools=pools, input_pool=input_pool,
    )
    model = model.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(labels) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    with JobProgress(disable=not show_progress) as progress:
        task = progress.add_task("training classifier", total=steps)
        for _ in range(epochs):
            for idx in torch.randperm(len(labels)).split(batch_size):
                if head == "sigmoid":
                    loss = F.binary_cross_entropy_with_logits(model(images[idx]), targets[idx])
                else:
                    loss = F.cross_entropy(model(images[idx]), targets[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                progress.advance(task)
    model = model.to(memory_format=torch.contiguous_format)
    return model.eval()
