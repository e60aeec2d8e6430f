"""``twin-digits``: the same digit drawn twice on a photo crop, so that either copy alone names it.

Label = the digit; mask = the strokes of both copies (alpha > 0.5); ``aux_masks["first"]`` and
``aux_masks["second"]`` (N, 1, H, W) bool, each copy's strokes (the second drawn over the first
where they overlap). Each copy is its own sample of
the class from the split's scikit-learn glyphs (:func:`~.digits_on_photos.digit_glyphs`), 12-18 px,
its centre uniform over the canvas with at least :data:`MIN_VISIBLE` of its strokes inside, and
its strokes drawn as in ``digits-on-photos`` (the background's mean colour shifted brighter or
darker by a coin of its own, with a faint texture), so brightness and the maximum over channels do
not point at them. The contrast to the mean colour does (AUROC 0.976 on 200 test images, seed 11,
``benchmarks/testbeds.py``'s ``contrast`` map), as on ``digits-on-photos`` (0.982), whose strokes
these are: localisation AUROC ranks methods here only among themselves.

Why (issue #23): the evidence is redundant. A simplification may keep one copy and drop the other,
and then the map's order below the kept pixels (a learned simplifier's order head) decides whether
the dropped copy, which the classifier would also read, ranks above the background. On the other
design testbeds every stroke is needed once and that order ranks almost nothing.
"""

from __future__ import annotations

import numpy as np
import torch

from . import digits_on_photos

SIZE = digits_on_photos.SIZE
#: smallest and largest side of each copy, in pixels
DIGIT_SIDES = (12, 18)
#: fewest of a copy's stroke pixels (fraction) that must stay inside the frame
MIN_VISIBLE = 0.5


def generate(n: int, split: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, 7])
    glyph_images, glyph_labels = digits_on_photos.digit_glyphs(split)
    labels_np = rng.integers(0, 10, n)
    by_class = [np.flatnonzero(glyph_labels == c) for c in range(10)]
    # two different samples of the image's class
    pairs = np.stack([rng.choice(by_class[c], 2, replace=False) for c in labels_np])
    glyphs = torch.from_numpy(glyph_images[pairs]).float().div(16)  # (n, 2, 8, 8)
    labels = torch.from_numpy(labels_np).long()

    sampler = digits_on_photos.crop_sampler(split, int(rng.integers(2**31)))
    background = 0.3 + 0.4 * sampler.sample(n)
    mean = background.mean((2, 3), keepdim=True)
    images = background
    copies = []
    for copy in range(2):
        fill = digits_on_photos.stroke_fill(mean, sampler, rng)
        sides = rng.integers(DIGIT_SIDES[0], DIGIT_SIDES[1] + 1, n)
        alpha = torch.stack([digits_on_photos.paste_alpha(glyphs[i, copy], int(sides[i]), rng, SIZE, MIN_VISIBLE)
                             for i in range(n)]).clamp(0, 1)
        images = (1 - alpha) * images + alpha * fill
        copies.append(alpha > 0.5)
    return images.mul(255).round().div(255), labels, copies[0] | copies[1], {"first": copies[0], "second": copies[1]}
