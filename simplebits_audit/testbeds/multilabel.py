"""``digits-stripes``: a multi-label testbed; a photo crop may hold a digit, faint stripes, both or neither.

Built from the pieces of ``digits-on-photos`` and ``stripes`` (32x32 RGB photo crops, the same
held-out photos and digit glyphs per split):

- label 0, "digit": a handwritten digit made of photo texture is pasted anywhere on the crop, as in
  ``digits-on-photos`` (stroke colour = the background's mean colour shifted 0.35 brighter or
  darker with a fair coin; centre uniform over the canvas, at least half of the strokes inside);
- label 1, "stripes": faint horizontal or vertical stripes (orientation, period and phase at
  random) are blended in with weight :data:`BLEND`, as in ``stripes``. Without stripes the same
  weight goes to flat mid-grey, so the blend's loss of contrast does not give the label away.

Each label is present with probability 0.5, independently, so all four combinations occur.
``labels`` is a (N, 2) long multi-hot tensor (``Testbed[i]`` returns its row as a tensor);
the classifier has two sigmoid logits (``classes = ["digit", "stripes"]``).

Mask (N, 1, H, W) bool = the digit's strokes (alpha > 0.5) where a digit is present, all False
where none is: it localises label 0 only; the stripes cover the whole image and have no mask.
Localisation metrics are computed for label 0 on the images with a digit (an empty mask gives NaN
and is left out of the mean).

Not a class-index testbed: the audits and condensation expect one class index per image and
refuse it (``list_testbeds()`` leaves it out unless asked, see ``testbeds.SIGMOID_HEADS``); it is
for the library (explainers with a ``target`` logit, ``train_simplifier(head="sigmoid")``), the
train job (one sigmoid logit per label) and ``benchmarks/heads.py``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import digits_on_photos, stripes

SIZE = digits_on_photos.SIZE
CLASSES = ["digit", "stripes"]
#: weight of the stripes (or of flat grey, when there are none) in the blend
BLEND = stripes.BLEND


def generate(n: int, split: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images (n, 3, 32, 32) in [0, 1], labels (n, 2) long multi-hot, digit masks (n, 1, 32, 32) bool)."""
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, 23])
    labels = torch.from_numpy(rng.integers(0, 2, (n, 2))).long()
    # every random draw is made for every image, present or not, so a label does not shift the stream
    glyph_images, _ = digits_on_photos.digit_glyphs(split)
    glyphs = torch.from_numpy(glyph_images[rng.choice(len(glyph_images), n)]).float().div(16)
    sampler = digits_on_photos.crop_sampler(split, int(rng.integers(2**31)))
    background = 0.3 + 0.4 * sampler.sample(n)
    texture = sampler.sample(n)
    shift = torch.from_numpy(rng.choice([-digits_on_photos.STROKE_SHIFT, digits_on_photos.STROKE_SHIFT], n)).float().view(n, 1, 1, 1)
    fill = background.mean((2, 3), keepdim=True) + shift
    texture = (fill + 0.15 * (texture - texture.mean((1, 2, 3), keepdim=True))).clamp(0, 1)
    sides = rng.integers(digits_on_photos.DIGIT_SIDES[0], digits_on_photos.DIGIT_SIDES[1] + 1, n)
    alpha = torch.stack([digits_on_photos.paste_alpha(glyphs[i], int(sides[i]), rng) for i in range(n)]).clamp(0, 1)
    alpha = alpha * labels[:, 0].view(n, 1, 1, 1).float()
    images = (1 - alpha) * background + alpha * texture

    orientation = torch.from_numpy(rng.integers(0, 2, n)).long()
    periods = torch.from_numpy(rng.uniform(*stripes.PERIODS, n)).float()
    phases = torch.from_numpy(rng.uniform(0, 2 * math.pi, n)).float()
    pattern = stripes.stripe_pattern(orientation, periods, phases)
    pattern = torch.where(labels[:, 1].view(n, 1, 1, 1).bool(), pattern, torch.full_like(pattern, 0.5))
    images = ((1 - BLEND) * images + BLEND * pattern).mul(255).round().div(255)
    return images, labels, alpha > 0.5
