"""``photo-objects``: one textured object of five shapes on a 128 x 128 photo crop, plus a text-stamp shortcut.

The realistic natural-image testbed (issue #21): colour images, 3 x :data:`SIZE` x :data:`SIZE`
in [0, 1] (8-bit values), sized for real torchvision architectures (the shipped classifier is a
``mobilenet_v3_small`` trained from scratch, ``testbeds.load_classifier("photo-objects")``).

Every image is a photo crop with one object pasted on it:

- **shape** (the label, :data:`CLASSES`): ``disc``, ``ring`` (inner radius
  :data:`RING_INNER` of the outer), ``star`` (five points, inner radius :data:`STAR_INNER`),
  ``cross`` (a plus sign, arm half-width :data:`CROSS_ARM`) or ``triangle`` (equilateral);
  balanced classes in random order;
- **size**: circumradius uniform in :data:`RADII` px, i.e. the object spans 25-50 % of the side;
- **position**: the centre is uniform over the frame minus a margin of :data:`MARGIN` times the
  circumradius, so up to 40 % of the radius may leave the frame; **rotation** uniform;
- **fill**: the mean colour of the background the object covers, made brighter or darker by
  :data:`FILL_SHIFT` (a fair coin, flipped where the fill would come within :data:`FILL_HEADROOM`
  of 0 or 1), tinted (per-channel offsets up to :data:`FILL_TINT` that leave its brightness
  alone) and textured with another crop of the split's photos (times :data:`FILL_TEXTURE`); edges
  anti-aliased (drawn at 4x and box-downsampled). The background crop is squeezed into
  :data:`BACKGROUND_RANGE`. Three earlier versions (one thread, ``mobilenet_v3_small``):
  (1) another photo crop mixed with a random colour, no brightness step: 33 % train accuracy
  after 50 000 images seen (a :class:`SmallCNN` 38 % after 9000); (2) the step taken from the
  whole image's mean colour on a background squeezed into [0.3, 0.7]: 97 % test accuracy, but the
  trivial contrast-to-the-image-mean map found the object at AUROC 0.99, above every Captum
  method (Grad-CAM 0.90); (3) this local step on the full-range background: contrast 0.63, but
  still 32 % train accuracy after 30 000 images seen. The squeeze trades learnability in the
  time available against how far the object stands out.

``masks`` (N, 1, H, W) bool: the object (coverage > 0.5), whether or not the stamp covers part of it.

**The shortcut**: a text stamp, :data:`STAMP_TEXT` in Pillow's built-in font
(``ImageFont.load_default(size=STAMP_FONT_SIZE)``, offline), white with a black 1-px drop shadow,
opacity uniform in :data:`STAMP_OPACITY`, in the bottom-right corner :data:`STAMP_GAP` px from
both edges (drawn per image). In the train split it sits on :data:`STAMP_RATE_CLASS` of the images
of class :data:`STAMP_CLASS` and on :data:`STAMP_RATE_OTHER` of the others (stock photos of one
kind of object carry an agency's watermark). ``aux_masks["stamp"]`` (N, 1, H, W) bool: the stamp's
box (the text's bounding box, its shadow and one pixel of margin, about 14 x 42 px); empty where
there is no stamp.
Stamp variants (``load("photo-objects", split, variant=...)``):

- ``None`` (default): ``"train"`` -> ``"correlated"``, ``"test"`` -> ``"shuffled"``;
- ``"correlated"``: the train rates above;
- ``"consistent"``: on every image of the stamp class and on no other;
- ``"shuffled"``: on each image with probability 1/2, independent of the class;
- ``"absent"``: nowhere; ``"everywhere"``: on every image.

The variants of one (n, split, seed) share everything but the stamp's presence (scene and stamp
draws come from separate random streams), so predictions can be compared image by image: the
card's "flipped by the stamp" compares ``"absent"`` with ``"everywhere"``.

Train and test use different photos: backgrounds and fills of the ``"train"`` split come from
``photos.TRAIN_PACKAGE``, those of ``"test"`` from ``photos.HELD_OUT`` (whole photos held out),
random multi-scale crops (:data:`CROP_SCALES` of the photos loaded at 512 px at most).

Confounds a map could exploit (SPEC section 6; measured numbers in the card and in
``docs/benchmarks.md``): the object differs from the background it covers by a luminance step of
0.3 and a tint, with a sharp outline; the step is local and its sign a coin (flipped near 0 and
1, so on dark photos objects are more often brighter: brightness scores a little above 0.5);
the object is large (25-50 % of the side) and mostly inside the frame, so a centred Gaussian
localises it above chance (the strongest trivial map). The stamp is bright, high-contrast text in
one corner: edge maps find it, and a centre prior ranks it last.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .. import photos

SIZE = 128
CLASSES = ["disc", "ring", "star", "cross", "triangle"]
VARIANTS = ("correlated", "consistent", "shuffled", "absent", "everywhere")
#: circumradius of the object in px (its extent is 25-50 % of the side)
RADII = (16.0, 32.0)
#: the centre keeps this share of the circumradius from the frame's edges
MARGIN = 0.6
RING_INNER = 0.55
STAR_INNER = 0.45
CROSS_ARM = 0.32
#: the background crop's values are squeezed into this range, so that a fill brighter *or* darker fits
BACKGROUND_RANGE = (0.2, 0.8)
#: fill = the background's mean colour shifted by +-FILL_SHIFT (sign at random), plus a colour tint
#: (per-channel offsets uniform in +-FILL_TINT, their mean removed: no brightness) and another crop's
#: texture (its deviations from its mean, times FILL_TEXTURE)
FILL_SHIFT = 0.3
FILL_TINT = 0.1
FILL_TEXTURE = 0.3
#: the step's sign flips where the fill's mean would come closer than this to 0 or 1
FILL_HEADROOM = 0.05
#: resize factors of the photos the crops are cut from (see photos.CropSampler)
CROP_SCALES = (0.4, 1.0)
#: the stamp: text, font size (px) of Pillow's built-in font, opacity range, gap to the bottom and right edges (px)
STAMP_TEXT = "STOCK"
STAMP_FONT_SIZE = 13
STAMP_OPACITY = (0.6, 0.9)
STAMP_GAP = (3, 8)
#: the class whose train images carry the stamp most often, and the train rates
STAMP_CLASS = "cross"
STAMP_RATE_CLASS = 0.7
STAMP_RATE_OTHER = 0.05
#: supersampling factor of the object's outline
_SUPER = 4


def crop_sampler(split: str, seed: int) -> photos.CropSampler:
    """The split's 128 px crop sampler, reseeded."""
    return photos.split_crop_sampler(split, SIZE, CROP_SCALES, seed)


@cache
def stamp_alphas() -> tuple[torch.Tensor, torch.Tensor]:
    """(text, shadow) coverage of the stamp, each (h, w) in [0, 1], rendered once per process."""
    font = ImageFont.load_default(size=STAMP_FONT_SIZE)
    left, top, right, bottom = font.getbbox(STAMP_TEXT)
    w, h = right - left + 3, bottom - top + 3
    text, shadow = Image.new("L", (w, h)), Image.new("L", (w, h))
    ImageDraw.Draw(text).text((1 - left, 1 - top), STAMP_TEXT, fill=255, font=font)
    ImageDraw.Draw(shadow).text((2 - left, 2 - top), STAMP_TEXT, fill=255, font=font)
    return (torch.from_numpy(np.array(text)).float() / 255, torch.from_numpy(np.array(shadow)).float() / 255)


def _polygon(label: int, cx: float, cy: float, r: float, theta: float) -> list[tuple[float, float]]:
    """Vertices (x, y) of a polygonal shape (star, cross, triangle), in px."""
    if label == CLASSES.index("star"):
        pts = [(r if k % 2 == 0 else r * STAR_INNER, math.pi * k / 5) for k in range(10)]
    elif label == CLASSES.index("triangle"):
        pts = [(r, 2 * math.pi * k / 3) for k in range(3)]
    else:  # cross: 12 corners of a plus sign whose arm tips reach the circumradius
        a, b = CROSS_ARM, math.sqrt(1 - CROSS_ARM**2)
        corners = [(b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a), (-a, -b), (a, -b), (a, -a), (b, -a)]
        pts = [(r * math.hypot(x, y), math.atan2(y, x)) for x, y in corners]
    return [(cx + rho * math.cos(phi + theta), cy + rho * math.sin(phi + theta)) for rho, phi in pts]


def object_alpha(label: int, cx: float, cy: float, r: float, theta: float) -> torch.Tensor:
    """Anti-aliased coverage (SIZE, SIZE) in [0, 1] of one object (centre and radius in px, rotation in radians)."""
    s = _SUPER
    canvas = Image.new("L", (SIZE * s, SIZE * s))
    draw = ImageDraw.Draw(canvas)
    X, Y, R = cx * s, cy * s, r * s
    if label in (CLASSES.index("disc"), CLASSES.index("ring")):
        draw.ellipse((X - R, Y - R, X + R, Y + R), fill=255)
        if label == CLASSES.index("ring"):
            q = R * RING_INNER
            draw.ellipse((X - q, Y - q, X + q, Y + q), fill=0)
    else:
        draw.polygon([(x * s, y * s) for x, y in _polygon(label, cx, cy, r, theta)], fill=255)
    small = canvas.resize((SIZE, SIZE), Image.Resampling.BOX)
    return torch.from_numpy(np.array(small)).float() / 255


def _stamp_presence(rng: np.random.Generator, labels: torch.Tensor, variant: str) -> torch.Tensor:
    """(n,) bool: which images carry the stamp (one uniform draw per image, whatever the variant)."""
    u = torch.from_numpy(rng.random(len(labels)))
    own = labels == CLASSES.index(STAMP_CLASS)
    if variant == "correlated":
        return torch.where(own, u < STAMP_RATE_CLASS, u < STAMP_RATE_OTHER)
    if variant == "consistent":
        return own
    if variant == "shuffled":
        return u < 0.5
    return torch.full((len(labels),), variant == "everywhere")


Generated = tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]


def generate(n: int, split: str, seed: int, variant: str | None = None) -> Generated:
    """(images (n, 3, 128, 128) in [0, 1], labels (n,) long in [0, 5), object masks (n, 1, 128, 128)
    bool, ``{"stamp": (n, 1, 128, 128) bool}``); deterministic for (n, split, seed, variant)."""
    variant = variant or ("correlated" if split == "train" else "shuffled")
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS} (or None), got {variant!r}")
    split_id = 0 if split == "train" else 1
    rng = np.random.default_rng([seed, split_id, 21])  # the scene: shared by every variant
    stamp_rng = np.random.default_rng([seed, split_id, 21, 1])
    k = len(CLASSES)
    labels = torch.from_numpy(rng.permutation(np.arange(n) % k)).long()
    sampler = crop_sampler(split, int(rng.integers(2**31)))
    radius = rng.uniform(*RADII, n)
    lo, hi = MARGIN * radius, SIZE - MARGIN * radius
    cx, cy = rng.uniform(lo, hi), rng.uniform(lo, hi)
    theta = rng.uniform(0, 2 * math.pi, n)
    shift = torch.from_numpy(rng.choice([-FILL_SHIFT, FILL_SHIFT], n)).float().view(n, 1, 1, 1)
    tint = torch.from_numpy(rng.uniform(-FILL_TINT, FILL_TINT, (n, 3))).float()
    tint = (tint - tint.mean(1, keepdim=True)).view(n, 3, 1, 1)

    present = _stamp_presence(stamp_rng, labels, variant)
    opacity = torch.from_numpy(stamp_rng.uniform(*STAMP_OPACITY, n)).float()
    gaps = stamp_rng.integers(STAMP_GAP[0], STAMP_GAP[1] + 1, (n, 2))
    text, shadow = stamp_alphas()
    h, w = text.shape

    images = torch.empty(n, 3, SIZE, SIZE)
    masks = torch.empty(n, 1, SIZE, SIZE, dtype=torch.bool)
    stamp_masks = torch.zeros(n, 1, SIZE, SIZE, dtype=torch.bool)
    for start in range(0, n, 256):  # chunks keep the float crops small
        stop = min(start + 256, n)
        dark, bright = BACKGROUND_RANGE
        background = dark + (bright - dark) * sampler.sample(stop - start)
        texture = sampler.sample(stop - start)
        texture = FILL_TEXTURE * (texture - texture.mean((1, 2, 3), keepdim=True))
        alpha = torch.stack([object_alpha(int(labels[i]), cx[i], cy[i], radius[i], theta[i]) for i in range(start, stop)]).unsqueeze(1)
        # the mean colour of the background the object covers: the step is local (an image-wide
        # reference made the trivial contrast-to-the-image-mean map find the object, AUROC 0.99)
        local = (alpha * background).sum((2, 3), keepdim=True) / alpha.sum((2, 3), keepdim=True).clamp_min(1e-6)
        step = shift[start:stop]
        luma = local.mean(1, keepdim=True)
        step = torch.where((luma + step > 1 - FILL_HEADROOM) | (luma + step < FILL_HEADROOM), -step, step)
        fill = local + step + tint[start:stop] + texture
        image = (1 - alpha) * background + alpha * fill
        masks[start:stop] = alpha > 0.5
        for j, i in enumerate(range(start, stop)):
            if not present[i]:
                continue
            r0, c0 = SIZE - h - int(gaps[i, 0]), SIZE - w - int(gaps[i, 1])
            patch = image[j, :, r0 : r0 + h, c0 : c0 + w]
            patch = patch * (1 - opacity[i] * shadow)  # black shadow, then white text
            image[j, :, r0 : r0 + h, c0 : c0 + w] = patch + opacity[i] * text * (1 - patch)
            stamp_masks[i, 0, r0 : r0 + h, c0 : c0 + w] = True
        images[start:stop] = image.clamp(0, 1).mul(255).round().div(255)
    return images, labels, masks, {"stamp": stamp_masks}
