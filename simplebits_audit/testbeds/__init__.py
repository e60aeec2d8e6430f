"""Offline testbeds with known answers: images, labels and ground-truth masks, generated on the fly.

``load(name, split="train"|"test", n=None, seed=0)`` returns a :class:`Testbed`, a torch
``Dataset`` of (image, label) pairs that also carries the masks. Adding a testbed is one module
with a ``generate(n, split, seed)`` function plus one entry in :data:`TESTBEDS` (and, for the
localisation flag, :data:`HAS_LOCALISATION`).

- ``digits-on-photos``: label = a handwritten digit pasted anywhere on a photo crop; mask = strokes.
- ``stripes``: label = orientation of faint stripes blended into a photo; mask all True (the
  stripes are everywhere): localisation metrics do not apply (``has_localisation`` is False).
- ``blended-digits``: label = a handwritten digit blended 50/50 with a photo crop (the paper's
  MNIST + CIFAR-10 blend); mask = strokes; the photo is everywhere, inside the strokes too.
- ``shortcut``: digits-on-photos plus a corner marker whose colour gives the label away in the train
  split and is shuffled in the test split (``variant=`` chooses); mask = the marker square.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from . import blended_digits, digits_on_photos, shortcut, stripes
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
    #: whether the masks localise something (False: all True, localisation metrics do not apply)
    has_localisation: bool = True
    variant: str | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


#: name -> (generator(n, split, seed) -> (images, labels, masks), class names, default sizes)
TESTBEDS: dict[str, tuple[Callable, list[str], dict[str, int]]] = {
    "digits-on-photos": (digits_on_photos.generate, [str(d) for d in range(10)], {"train": 6000, "test": 1000}),
    "stripes": (stripes.generate, list(stripes.CLASSES), {"train": 6000, "test": 1000}),
    "shortcut": (shortcut.generate, [str(d) for d in range(10)], {"train": 6000, "test": 1000}),
    "blended-digits": (blended_digits.generate, [str(d) for d in range(10)], {"train": 6000, "test": 1000}),
}
#: testbeds whose masks localise the evidence (``stripes``: the mask is the whole image)
HAS_LOCALISATION: dict[str, bool] = {"digits-on-photos": True, "stripes": False, "shortcut": True, "blended-digits": True}
#: testbeds with variants: name -> allowed ``variant`` values (None is always allowed)
VARIANTS: dict[str, tuple[str, ...]] = {"shortcut": shortcut.VARIANTS}


def list_testbeds() -> list[str]:
    return sorted(TESTBEDS)


def load(name: str, split: str = "train", n: int | None = None, seed: int = 0, variant: str | None = None) -> Testbed:
    """Generate a testbed split (deterministic for a given name, split, n, seed and variant).

    ``variant`` selects a variant where a testbed has them (``shortcut``: ``"correlated"``,
    ``"consistent"``, ``"shuffled"``, ``"absent"``; default: correlated in train, shuffled in test).
    """
    if name not in TESTBEDS:
        raise ValueError(f"name: unknown testbed {name!r}; choose from {list_testbeds()}")
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    generate, classes, sizes = TESTBEDS[name]
    n = sizes[split] if n is None else n
    if n < 1:
        raise ValueError(f"n: need at least one image, got {n}")
    if variant is not None:
        if variant not in VARIANTS.get(name, ()):
            raise ValueError(f"variant: testbed {name!r} has variants {list(VARIANTS.get(name, ()))}, got {variant!r}")
        images, labels, masks = generate(n, split, seed, variant=variant)
    else:
        images, labels, masks = generate(n, split, seed)
    return Testbed(name, split, images, labels, masks, classes, HAS_LOCALISATION.get(name, True), variant)


_WEIGHTS = resources.files(__package__) / "weights"


def load_classifier(name: str, device: str | torch.device | None = None) -> SmallCNN:
    """The shipped :class:`SmallCNN` trained on testbed ``name`` (eval mode, weights only).

    Trained offline by ``scripts/train_testbed_classifier.py``; its card (test accuracy, ...) is
    :func:`classifier_card`.
    """
    weights = _WEIGHTS / f"{name}.pt"
    if name not in TESTBEDS or not weights.is_file():
        raise ValueError(f"name: no shipped classifier for testbed {name!r}")
    with resources.as_file(weights) as path:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = SmallCNN(**ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device or "cpu").eval()


def classifier_card(name: str) -> dict[str, Any]:
    """Training facts of the shipped classifier for testbed ``name``."""
    if name not in TESTBEDS or not (_WEIGHTS / f"{name}.json").is_file():
        raise ValueError(f"name: no shipped classifier card for testbed {name!r}")
    return json.loads((_WEIGHTS / f"{name}.json").read_text())


__all__ = [
    "HAS_LOCALISATION", "TESTBEDS", "VARIANTS", "SmallCNN", "Testbed", "classifier_card", "list_testbeds", "load",
    "load_classifier", "train_classifier",
]
