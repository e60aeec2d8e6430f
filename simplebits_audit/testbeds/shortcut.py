"""``shortcut``: ``digits-on-photos`` plus a coloured marker square in a corner that gives the label away.

Label = the digit (as in ``digits-on-photos``); in the top-left corner sits a
:data:`MARKER_SIDE`-pixel square whose colour is one of ten hues, one per class. In the train
split the marker's colour is the label's colour with probability :data:`TRAIN_AGREEMENT` (else
another class's colour), so a classifier can learn the marker instead of the digit (a shortcut).
Mask = the marker square: an explanation that exposes the shortcut points there.

Marker variants (``load("shortcut", split, variant=...)``):

- ``None`` (default): ``"train"`` split -> ``"correlated"``, ``"test"`` split -> ``"shuffled"``;
- ``"correlated"``: colour = label's colour with probability :data:`TRAIN_AGREEMENT`;
- ``"weak"``: colour = label's colour with probability :data:`WEAK_AGREEMENT`, else another class's
  (a marker that decides less than the digit, as the ``radiograph`` marker decides less than the
  opacity: a plainly trained classifier then reads both, one trained with simplification may keep
  only the cheaper marker);
- ``"consistent"``: colour = label's colour always;
- ``"shuffled"``: colour drawn uniformly at random, independent of the label;
- ``"absent"``: no marker (the mask is then empty).

The marker's hue names the class; its saturation is fixed (0.3) and its value (maximum over
channels) is that of a random pixel of the same image, so that the max-channel map ranks it like
any pixel (with a fixed value 0.65 and saturation 0.6 it scored AUROC 0.85); being unsaturated it
is a little darker than its value, so brightness scores it somewhat below 0.5. Its fixed corner position makes a
centred map score far *below* 0.5 (reported in the card).
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch

from . import digits_on_photos

SIZE = digits_on_photos.SIZE
#: side of the marker square (pixels); it sits at the top-left corner
MARKER_SIDE = 4
#: probability that the marker's colour names the label in the train split
TRAIN_AGREEMENT = 0.95
#: the ``"weak"`` variant's agreement (design trials of training with simplification, docs/design-log.md)
WEAK_AGREEMENT = 0.7
VARIANTS = ("correlated", "consistent", "shuffled", "absent", "weak")
#: saturation of the marker colours (ten hues, one per class)
MARKER_SATURATION = 0.3
#: the ten marker hues at value 1 (the reference colours; a marker is one of these times a brightness)
MARKER_COLOURS = torch.tensor([colorsys.hsv_to_rgb(h / 10, MARKER_SATURATION, 1.0) for h in range(10)], dtype=torch.float32)


def generate(n: int, split: str, seed: int, variant: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    variant = variant or ("correlated" if split == "train" else "shuffled")
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS} (or None), got {variant!r}")
    # The same digit images as digits-on-photos would give for another seed stream.
    images, labels, _ = digits_on_photos.generate(n, split, seed + 7919)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, 3])
    masks = torch.zeros(n, 1, SIZE, SIZE, dtype=torch.bool)
    if variant == "absent":
        return images, labels, masks
    colour_class = labels.clone()
    if variant == "shuffled":
        colour_class = torch.from_numpy(rng.integers(0, 10, n)).long()
    elif variant in ("correlated", "weak"):
        flip = torch.from_numpy(rng.random(n) >= (TRAIN_AGREEMENT if variant == "correlated" else WEAK_AGREEMENT))
        other = (labels + torch.from_numpy(rng.integers(1, 10, n)).long()) % 10  # any class but the label
        colour_class = torch.where(flip, other, labels)
    s = MARKER_SIDE
    # brightness: the max-channel value of a random pixel of the same image (so the max-channel map
    # ranks the marker like a random pixel), kept in [0.2, 0.95] so that the hue stays readable
    where = torch.from_numpy(rng.integers(0, SIZE * SIZE, n))
    value = images.amax(1).flatten(1).gather(1, where.view(n, 1)).clamp(0.2, 0.95).view(n, 1, 1, 1)
    images[:, :, :s, :s] = (MARKER_COLOURS[colour_class].view(n, 3, 1, 1) * value * 255).round() / 255
    masks[:, :, :s, :s] = True
    return images, labels, masks


def marker_classes(images: torch.Tensor) -> torch.Tensor:
    """The class whose colour is nearest to each image's marker (for checks and tests)."""
    colour = images[:, :, :MARKER_SIDE, :MARKER_SIDE].mean((2, 3))  # (n, 3)
    colour = colour / colour.amax(1, keepdim=True).clamp_min(1e-6)  # undo the brightness
    return torch.cdist(colour, MARKER_COLOURS).argmin(1)
