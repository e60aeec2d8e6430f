"""``blended-digits``: a handwritten digit blended 50/50 with a photo crop (the paper's MNIST + CIFAR-10 blend).

Label = the digit (scikit-learn's 8x8 digits, upscaled, as in ``digits-on-photos``); the photo is
the distractor. ``x = 0.5 * photo + 0.5 * glyph`` with a grey glyph: white strokes on black, or
with a fair coin black strokes on white, so that neither brightness nor the maximum over channels
points at the strokes on average (with white strokes only, brightness would localise them). The
glyph's centre is uniform over the canvas as in ``digits-on-photos`` (at least
:data:`MIN_VISIBLE` of its strokes inside the frame). Mask = the strokes (alpha > 0.5).

Unlike ``digits-on-photos`` the photo is present everywhere, inside the strokes too: no mask can
remove it completely, so what a simplification keeps is a mix of the digit's shape and the photo
under it; the training-with-simplification setting (:func:`~simplebits_audit.train_with_simplification`)
asks how much of the photo the task needs.
"""

from __future__ import annotations

import numpy as np
import torch

from . import digits_on_photos

SIZE = digits_on_photos.SIZE
#: weight of the digit in the blend (the paper: 50 %)
BLEND = 0.5
#: smallest and largest side of the digit, in pixels (18-26 px with 70 % visible made a centred Gaussian localise at AUROC 0.64)
DIGIT_SIDES = (16, 24)
#: fewest of the glyph's stroke pixels (fraction) that must stay inside the frame
MIN_VISIBLE = 0.5
#: resize factors of the photos the crops are cut from (see photos.CropSampler)
CROP_SCALES = (0.25, 1.0)


def generate(n: int, split: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, 4])
    glyph_images, glyph_labels = digits_on_photos.digit_glyphs(split)
    pick = rng.choice(len(glyph_labels), n)
    glyphs = torch.from_numpy(glyph_images[pick]).float().div(16)  # (n, 8, 8)
    labels = torch.from_numpy(glyph_labels[pick]).long()
    photo = digits_on_photos.photos.split_crop_sampler(split, SIZE, CROP_SCALES, int(rng.integers(2**31))).sample(n)
    sides = rng.integers(DIGIT_SIDES[0], DIGIT_SIDES[1] + 1, n)
    alpha = torch.stack([digits_on_photos.paste_alpha(glyphs[i], int(sides[i]), rng, SIZE, MIN_VISIBLE) for i in range(n)]).clamp(0, 1)
    # Black strokes on white for half of the images: brightness does not give the strokes away.
    invert = torch.from_numpy(rng.random(n) < 0.5).view(n, 1, 1, 1)
    glyph = torch.where(invert, 1 - alpha, alpha)
    images = ((1 - BLEND) * photo + BLEND * glyph).mul(255).round().div(255)
    return images, labels, alpha > 0.5
