"""Offline testbeds with known answers: images, labels and ground-truth masks, generated on the fly.

``load(name, split="train"|"test", n=None, seed=0)`` returns a :class:`Testbed`, a torch
``Dataset`` of (image, label) pairs that also carries the masks. Adding a testbed is one module
with a ``generate(n, split, seed)`` function plus one entry in :data:`TESTBEDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import Dataset

from . import digits_on_photos
from .classifier import SmallCNN, train_classifier


@dataclass
class Testbed(Dataset):
    """Images (N, 3, H, W) in [0, 1], labels (N,), masks (N, 1, H, W) bool of what matters."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


#: name -> (generator(n, split, seed) -> (images, labels, masks), class names, default sizes)
TESTBEDS: dict[str, tuple[Callable, list[str], dict[str, int]]] = {
    "digits-on-photos": (digits_on_photos.generate, [str(d) for d in range(10)], {"train": 6000, "test": 1000}),
}


def list_testbeds() -> list[str]:
    return sorted(TESTBEDS)


def load(name: str, split: str = "train", n: int | None = None, seed: int = 0) -> Testbed:
    """Generate a testbed split (deterministic for a given name, split, n and seed)."""
    if name not in TESTBEDS:
        raise ValueError(f"name: unknown testbed {name!r}; choose from {list_testbeds()}")
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    generate, classes, sizes = TESTBEDS[name]
    n = sizes[split] if n is None else n
    if n < 1:
        raise ValueError(f"n: need at least one image, got {n}")
    images, labels, masks = generate(n, split, seed)
    return Testbed(name, split, images, labels, masks, classes)


__all__ = ["TESTBEDS", "SmallCNN", "Testbed", "list_testbeds", "load", "train_classifier"]
