"""``digits-on-photos``: a handwritten digit made of photo texture, placed anywhere on a photo crop.

Label = the digit (scikit-learn's 8x8 digits, upscaled); mask = the digit's strokes (alpha > 0.5).
Designed so that trivial maps cannot localise the digit (SPEC section 6):

- colour: the background crop is squeezed into [0.3, 0.7] and the strokes are its own mean
  colour shifted by 0.35 brighter or darker with a fair coin (plus a faint texture from another
  crop), so neither brightness nor the maximum over channels points at the digit on average, and
  every digit has the same contrast (with the full range, dark photos hid half of the digits);
- position: the glyph's centre is drawn uniformly over the *whole* canvas, so glyphs near the
  border are partly cut off by the frame. Keeping glyphs inside the frame made a centred Gaussian
  a strong localiser (AUROC 0.81 with 16-24 px glyphs, 0.74 with 10-14 px); with the centre
  uniform over the canvas the stroke pixels are spread almost uniformly over the frame. A
  placement is redrawn while less than :data:`MIN_VISIBLE` of the glyph's strokes remain in the
  frame, so the label stays readable (this keeps a slight centre bias, measured in the card).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import photos

SIZE = 32
#: smallest and largest side of the pasted digit, in pixels
DIGIT_SIDES = (14, 20)
#: fewest of the glyph's stroke pixels (fraction) that must stay inside the frame
MIN_VISIBLE = 0.5
#: brightness difference between the strokes and the background's mean colour (sign at random)
STROKE_SHIFT = 0.35
#: background photos of the train split (colour photos and grey textures; the test split uses photos.HELD_OUT)
TRAIN_BACKGROUNDS = photos.TRAIN_PACKAGE

#: resize factors of the photos the crops are cut from (see photos.CropSampler)
CROP_SCALES = (0.4, 1.0)
photo_pool = photos.split_photos


def crop_sampler(split: str, seed: int) -> photos.CropSampler:
    """The split's crop sampler, reseeded."""
    return photos.split_crop_sampler(split, SIZE, CROP_SCALES, seed)


def digit_glyphs(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 8, 8) in [0, 16], labels) of a split: 80 % / 20 % of scikit-learn's digits, so test
    digits are unseen samples."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    cut = int(0.8 * len(order))
    pool = order[:cut] if split == "train" else order[cut:]
    return digits.images[pool], digits.target[pool]


def paste_alpha(glyph: torch.Tensor, side: int, rng: np.random.Generator, size: int = SIZE,
                min_visible: float = MIN_VISIBLE) -> torch.Tensor:
    """Alpha (1, size, size) of an 8x8 ``glyph`` upscaled to ``side`` px, its centre uniform over the
    canvas (redrawn while fewer than ``min_visible`` of its stroke pixels are inside the frame)."""
    g = F.interpolate(glyph.view(1, 1, *glyph.shape[-2:]), size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    total = int((g > 0.5).sum())
    big = torch.zeros(size + 2 * side, size + 2 * side)
    for _ in range(100):
        y0, x0 = (np.floor(rng.uniform(0, size, 2) - side / 2)).astype(int)
        big.zero_()
        big[side + y0 : side + y0 + side, side + x0 : side + x0 + side] = g
        alpha = big[side : side + size, side : side + size]
        if int((alpha > 0.5).sum()) >= min_visible * total:
            break
    return alpha.clone().unsqueeze(0)


def stroke_fill(mean: torch.Tensor, sampler: photos.CropSampler, rng: np.random.Generator) -> torch.Tensor:
    """The strokes' colour (N, C, H, W) in [0, 1] for backgrounds of mean colour ``mean`` (N, C, 1, 1).

    That mean shifted by :data:`STROKE_SHIFT` brighter or darker (a fair coin per image, from
    ``rng``), plus a faint texture from another crop of ``sampler``: neither colour nor brightness
    gives the digit away on average. Draws the texture first, then the coins.
    """
    n = len(mean)
    texture = sampler.sample(n)
    shift = torch.from_numpy(rng.choice([-STROKE_SHIFT, STROKE_SHIFT], n)).float().view(n, 1, 1, 1)
    return (mean + shift + 0.15 * (texture - texture.mean((1, 2, 3), keepdim=True))).clamp(0, 1)


def generate(n: int, split: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    glyph_images, glyph_labels = digit_glyphs(split)
    pick = rng.choice(len(glyph_labels), n)
    glyphs = torch.from_numpy(glyph_images[pick]).float().div(16)  # (n, 8, 8)
    labels = torch.from_numpy(glyph_labels[pick]).long()

    sampler = crop_sampler(split, int(rng.integers(2**31)))
    # Backgrounds squeezed into [0.3, 0.7] so that a digit brighter *or* darker than its
    # background always fits; the sign of the shift is then a fair coin on every image.
    background = 0.3 + 0.4 * sampler.sample(n)
    texture = stroke_fill(background.mean((2, 3), keepdim=True), sampler, rng)

    sides = rng.integers(DIGIT_SIDES[0], DIGIT_SIDES[1] + 1, n)
    alpha = torch.stack([paste_alpha(glyphs[i], int(sides[i]), rng) for i in range(n)]).clamp(0, 1)
    images = ((1 - alpha) * background + alpha * texture).mul(255).round().div(255)
    return images, labels, alpha > 0.5
