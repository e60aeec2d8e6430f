"""``stripes``: a photo crop with faint horizontal or vertical sinusoidal stripes blended in.

Label = the stripes' orientation (0 = horizontal: the pattern varies along y, the lines run left to
right; 1 = vertical); the photo is the distractor (the paper's CIFAR-10 + 15 % oriented stripes).
``x = (1 - BLEND) * photo + BLEND * stripes`` with grey stripes ``0.5 + 0.5 sin(2 pi t / period + phase)``,
period 3-8 px and phase at random.

Ground truth: the stripes cover the whole image, so *where* is not the question, and the mask is
all True; localisation metrics (AUROC, pointing game, mass inside the mask) do not apply and are
undefined (no background pixels). What this testbed measures is *what* an explanation keeps: a
good simplification keeps the stripes and drops the photo (compare the simplified image's
spectrum, or its correlation with the stripe pattern, not a mask).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import photos

SIZE = 32
#: weight of the stripes in the blend (the paper: 15 %)
BLEND = 0.15
#: shortest and longest stripe period, in pixels
PERIODS = (3.0, 8.0)
CLASSES = ["horizontal", "vertical"]

#: resize factors of the photos the crops are cut from (see photos.CropSampler)
CROP_SCALES = (0.25, 1.0)
photo_pool = photos.split_photos


def crop_sampler(split: str, seed: int) -> photos.CropSampler:
    """The split's crop sampler, reseeded."""
    return photos.split_crop_sampler(split, SIZE, CROP_SCALES, seed)


def stripe_pattern(labels: torch.Tensor, periods: torch.Tensor, phases: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """Grey stripes (n, 1, size, size) in [0, 1]; label 0 varies along y (horizontal lines), 1 along x."""
    t = torch.arange(size, dtype=torch.float32)
    wave = 0.5 + 0.5 * torch.sin(2 * math.pi * t.view(1, -1) / periods.view(-1, 1) + phases.view(-1, 1))  # (n, size)
    horizontal = wave.view(-1, 1, size, 1).expand(-1, 1, size, size)
    vertical = wave.view(-1, 1, 1, size).expand(-1, 1, size, size)
    return torch.where(labels.view(-1, 1, 1, 1).bool(), vertical, horizontal)


def generate(n: int, split: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, 2])
    labels = torch.from_numpy(rng.integers(0, 2, n)).long()
    periods = torch.from_numpy(rng.uniform(*PERIODS, n)).float()
    phases = torch.from_numpy(rng.uniform(0, 2 * math.pi, n)).float()
    sampler = crop_sampler(split, int(rng.integers(2**31)))
    photo = sampler.sample(n)
    images = ((1 - BLEND) * photo + BLEND * stripe_pattern(labels, periods, phases)).mul(255).round().div(255)
    return images, labels, torch.ones(n, 1, SIZE, SIZE, dtype=torch.bool)
