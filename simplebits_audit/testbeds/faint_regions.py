"""``faint-regions``: a 128 px photo crop, with or without a faint, soft, brighter or darker region.

Label (``classes = ["none", "brighter", "darker"]``, a third each): whether a soft ellipse
somewhere on the photo is lifted or lowered by a faint amount (:data:`STRENGTH`, added to every
channel), or no region at all; mask = the region (alpha > 0.5; all False for ``none``).

Why it exists: a design testbed larger than 32 px (issue #23). The decision rests on a faint,
large, low-frequency change of a natural image, the kind of evidence that large images carry
(a finding on a scan, a shadow, a stain) and that none of the 32 px design testbeds has. It shares
no generator, image or head with the report testbed ``radiograph`` (colour photos, three softmax
classes, the region anywhere and of either sign); it was added after ``radiograph``'s failure under
the flat mean reference (docs/design-log.md), to decide on design data whether images this large
need another reference.

The photo is squeezed into :data:`BACKGROUND` ([0.3, 0.7]) so that the region never clips; its radii are
:data:`RADII` px (rotated at random, the centre anywhere in the frame, so part of a region
may lie outside it), its edge a logistic ramp :data:`EDGE` px wide, so the region has no sharp outline to
find.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import photos

SIZE = 128
CLASSES = ["none", "brighter", "darker"]
#: the region's change of brightness, added to every channel (sign by the label), drawn uniformly
STRENGTH = (0.15, 0.3)
#: the ellipse's semi-axes, in pixels, drawn uniformly and independently
RADII = (12.0, 32.0)
#: width of the region's soft edge, in pixels (the logistic ramp's scale)
EDGE = 3.0
#: resize factors of the photos the crops are cut from (see photos.CropSampler)
CROP_SCALES = (0.35, 1.0)
#: the background's range: the photo squeezed so that a region of the largest strength fits
BACKGROUND = (0.3, 0.7)


def crop_sampler(split: str, seed: int) -> photos.CropSampler:
    """The split's crop sampler (train photos or held-out photos), reseeded."""
    return photos.split_crop_sampler(split, SIZE, CROP_SCALES, seed)


def region_alpha(centres: torch.Tensor, radii: torch.Tensor, angles: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """Soft ellipses (n, 1, size, size) in [0, 1]: centres (n, 2) as (y, x) px, radii (n, 2) px, angles (n,) radians."""
    t = torch.arange(size, dtype=torch.float32) + 0.5
    dy = t.view(1, -1, 1) - centres[:, 0].view(-1, 1, 1)
    dx = t.view(1, 1, -1) - centres[:, 1].view(-1, 1, 1)
    cos, sin = torch.cos(angles).view(-1, 1, 1), torch.sin(angles).view(-1, 1, 1)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    r = torch.sqrt((u / radii[:, 1].view(-1, 1, 1)) ** 2 + (v / radii[:, 0].view(-1, 1, 1)) ** 2)
    # (1 - r) * mean radius: roughly the distance in pixels inside the edge
    return torch.sigmoid((1 - r) * radii.mean(1).view(-1, 1, 1) / EDGE).unsqueeze(1)


def generate(n: int, split: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, 7])
    labels = torch.from_numpy(rng.integers(0, 3, n)).long()
    radii = torch.from_numpy(rng.uniform(*RADII, (n, 2))).float()
    centres = torch.from_numpy(rng.uniform(0, SIZE, (n, 2))).float()
    angles = torch.from_numpy(rng.uniform(0, math.pi, n)).float()
    strength = torch.from_numpy(rng.uniform(*STRENGTH, n)).float()
    sampler = crop_sampler(split, int(rng.integers(2**31)))
    lo, hi = BACKGROUND
    background = lo + (hi - lo) * sampler.sample(n)
    sign = torch.tensor([0.0, 1.0, -1.0])[labels]
    alpha = region_alpha(centres, radii, angles)
    images = (background + (sign * strength).view(-1, 1, 1, 1) * alpha).clamp(0, 1).mul(255).round().div(255)
    masks = (alpha > 0.5) & (labels != 0).view(-1, 1, 1, 1)
    return images, labels, masks
