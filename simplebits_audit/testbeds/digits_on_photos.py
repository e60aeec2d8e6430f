"""``digits-on-photos``: a handwritten digit made of photo texture, placed anywhere on a photo crop.

Label = the digit (scikit-learn's 8x8 digits, upscaled); mask = the digit's strokes. Designed so
that trivial maps cannot localise the digit (SPEC section 6): the strokes are filled with another
photo crop whose brightness is shifted up or down at random (no colour or brightness cue on
average), and the digit is placed uniformly over the frame (no centre prior).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import photos

SIZE = 32
#: smallest and largest side of the pasted digit, in pixels
DIGIT_SIDES = (16, 24)
#: background photos of the train split (the test split uses photos.HELD_OUT)
TRAIN_BACKGROUNDS = ("astronaut.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png", "retina.jpg", "flower.jpg")


def _photo_pool(split: str) -> list[np.ndarray]:
    # Backgrounds for the test split come from photos the train split never sees.
    paths = photos.held_out_photos() if split == "test" else photos.package_photos(TRAIN_BACKGROUNDS)
    return [photos.load_rgb(p, max_side=512) for p in paths]


def generate(n: int, split: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    # Split the digit glyphs too, so test digits are unseen writers.
    order = np.random.default_rng(0).permutation(len(digits.target))
    cut = int(0.8 * len(order))
    pool = order[:cut] if split == "train" else order[cut:]
    pick = rng.choice(pool, n)
    glyphs = torch.from_numpy(digits.images[pick]).float().div(16).unsqueeze(1)  # (n, 1, 8, 8)
    labels = torch.from_numpy(digits.target[pick]).long()

    sampler = photos.CropSampler(_photo_pool(split), SIZE, scales=(0.4, 1.0), seed=int(rng.integers(2**31)))
    background = sampler.sample(n)
    texture = sampler.sample(n)
    shift = torch.from_numpy(rng.choice([-0.4, 0.4], n)).float().view(n, 1, 1, 1)
    # Strokes: the background's own mean colour, shifted brighter or darker at random, with a
    # faint photo texture, so neither colour nor brightness gives the digit away on average.
    fill = background.mean((2, 3), keepdim=True) + shift
    texture = (fill + 0.25 * (texture - texture.mean((1, 2, 3), keepdim=True))).clamp(0, 1)

    side = torch.from_numpy(rng.integers(DIGIT_SIDES[0], DIGIT_SIDES[1] + 1, n))
    alpha = torch.zeros(n, 1, SIZE, SIZE)
    for i in range(n):
        s = int(side[i])
        glyph = F.interpolate(glyphs[i : i + 1], size=(s, s), mode="bilinear", align_corners=False)
        y0, x0 = rng.integers(0, SIZE - s + 1, 2)
        alpha[i, :, y0 : y0 + s, x0 : x0 + s] = glyph[0]
    alpha = alpha.clamp(0, 1)
    images = ((1 - alpha) * background + alpha * texture).mul(255).round().div(255)
    return images, labels, alpha > 0.5
