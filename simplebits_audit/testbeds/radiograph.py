"""``radiograph``: synthetic chest radiographs (greyscale, 128x128) with or without a basal opacity, plus a marker shortcut.

The paper's chest-radiograph audit setting, built offline from geometry and noise only (no data
set, no download). Every image is one channel, :data:`SIZE` x :data:`SIZE` px, values in [0, 1]
(8-bit steps): a dark background, a soft torso outline, two dark lung fields (narrow apex, wide
base, diaphragm domes), a bright mediastinum and heart shadow, a spine column with vertebral
banding, faint curved ribs and clavicles, lung vessel texture, a smooth low-frequency field,
random pose (shift, scale, a few degrees of rotation), random brightness/contrast and film noise.

Label (binary, ``classes = ["no effusion", "effusion"]``; the classifier has ONE sigmoid logit):
1 when a soft basal opacity ("effusion-like") fills the bottom of one or both lung fields, with a
meniscus-shaped upper edge that climbs towards the lateral wall; 0 otherwise (p = 0.5 each).

Ground truth:

- ``masks`` (N, 1, H, W) bool: the visible opacity (the part of the lung, outside the heart shadow,
  below the fluid line). For label-0 images the mask is all False, so localisation metrics are
  undefined there: AUROC, pointing game and mass inside the mask are computed on the *positive*
  images only (``benchmarks/testbeds.py``'s ``mean_auroc`` gives NaN for an empty mask and averages
  over the images where it is defined).
- ``aux_masks["marker"]`` (N, 1, H, W) bool: the laterality-marker token (empty for ``"absent"``).

The shortcut: a :data:`MARKER_SIDE`-px token (a dark plate with a bright "L" or "R" glyph) sits
in a random corner, a few pixels from the edges. Its letter follows the label ("R" = effusion) in a
share of the images, as markers of one ward or one scanner do in real radiograph data sets, where
models are known to read them. Marker variants (``load("radiograph", split, variant=...)``):

- ``None`` (default): ``"train"`` split -> ``"correlated"``, ``"test"`` split -> ``"shuffled"``;
- ``"correlated"``: letter = the label's letter with probability :data:`TRAIN_AGREEMENT`, else a
  fair coin (so it agrees with the label in ``TRAIN_AGREEMENT + (1 - TRAIN_AGREEMENT) / 2`` of images);
- ``"consistent"``: letter = the label's letter always;
- ``"shuffled"``: a fair coin, independent of the label;
- ``"opposite"``: the other label's letter always (the worst case for a model that reads it);
- ``"absent"``: no marker (the marker mask is then empty).

The variants of one (n, split, seed) share everything but the marker (anatomy, opacity and noise
come from one random stream, the marker from another), so a model's predictions can be compared
image by image across variants.

Trivial maps (SPEC section 6): the opacity is a partial brightening of a dark lung base, while
the heart, spine, clavicles, ribs, abdomen and soft tissue are brighter, so brightness does not
point at it (nor does darkness much: the background and the rest of the lungs are darker still);
it sits low and lateral, and the pose varies, so a centre prior is weak. Measured on the 200 test
images of seed 11 (``benchmarks/testbeds.py``; the 89 positive ones count): AUROC against the
opacity mask, brightness (= max over channels: one channel) 0.386, centre Gaussian 0.656, random
0.497 (and from ``explainers/reference.py``'s maps: darkness 0.614, Sobel edges 0.478, contrast to
the image mean 0.189); against the marker mask,
brightness 0.303, centre Gaussian 0.054. The shipped classifier's card repeats them, next to
Integrated Gradients (0.815) and Occlusion (0.906).

Difficulty and the shortcut were tuned together (shipped classifier: 4000 train images, 6 epochs):
with opacity strengths 0.35-0.75 (heights 0.14-0.4) the classifier reached 99.8 % and ignored the
marker (the letter flipped 0.2 % of predictions); with 0.05-0.75 (heights 0.1-0.4 from here on),
87.8 % and 16.6 % flipped; with :data:`OPACITY_STRENGTH` = 0.15-0.75, 94.6 % on the test split
(shuffled markers; 92.8 % on the 500 images of seed 11), 95.8 % with consistent and 90.0 % with
opposite letters, 5.8 % of predictions flipped by the letter alone: a faint opacity leaves the
decision to the marker.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 128
CLASSES = ["no effusion", "effusion"]
VARIANTS = ("correlated", "consistent", "shuffled", "opposite", "absent")
#: share of train images whose marker letter is set by the label (the rest: a fair coin)
TRAIN_AGREEMENT = 0.7
#: side of the square marker token, in pixels
MARKER_SIDE = 10
#: the token's glyph intensity (in [0, 1], before film noise) and plate intensity ranges
MARKER_GLYPH = (0.55, 0.8)
MARKER_PLATE = (0.1, 0.25)
#: range of the gap between the token and the image edges, in pixels
MARKER_GAP = (2, 8)
#: opacity strength (share of the lung's darkness it takes away) and height (share of the lung's height);
#: the faint end keeps some opacities ambiguous, so that the marker matters (see the module docstring)
OPACITY_STRENGTH = (0.15, 0.75)
OPACITY_HEIGHT = (0.1, 0.4)
#: 8x6 glyphs of the two marker letters (2-px strokes)
_GLYPHS = {
    "L": ["XX....", "XX....", "XX....", "XX....", "XX....", "XX....", "XXXXXX", "XXXXXX"],
    "R": ["XXXXX.", "XX..XX", "XX..XX", "XXXXX.", "XXXX..", "XX.XX.", "XX..XX", "XX..XX"],
}
#: marker letter per label: 0 (no effusion) -> "L", 1 (effusion) -> "R"
MARKER_LETTERS = ("L", "R")
_BATCH = 64
#: the anatomy is drawn on a grid of this side and upsampled (bilinear) to SIZE: it is smooth, and
#: this makes generating four times faster; film noise and the marker are drawn at full resolution
_GRID = SIZE // 2


def glyph(letter: str) -> torch.Tensor:
    """The (8, 6) binary glyph of a marker letter."""
    return torch.tensor([[c == "X" for c in row] for row in _GLYPHS[letter]], dtype=torch.float32)


def _sig(t: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(t)


def _u(rng: np.random.Generator, lo: float, hi: float, n: int) -> torch.Tensor:
    return torch.from_numpy(rng.uniform(lo, hi, n)).float().view(n, 1, 1)


def _smooth_noise(rng: np.random.Generator, n: int, cells: int) -> torch.Tensor:
    """(n, _GRID, _GRID) standard normal noise on a cells x cells grid, upsampled bicubically."""
    noise = torch.from_numpy(rng.standard_normal((n, 1, cells, cells))).float()
    return F.interpolate(noise, size=(_GRID, _GRID), mode="bicubic", align_corners=True)[:, 0]


def _anatomy(rng: np.random.Generator, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, SIZE, SIZE) before marker and noise, and the opacity masks (n, SIZE, SIZE)."""
    n = len(labels)

    def u(lo, hi):
        return _u(rng, lo, hi, n)

    # pose: pixel grid in [-1, 1], mapped into anatomy coordinates (X right, Y down)
    t = (torch.arange(_GRID, dtype=torch.float32) - (_GRID - 1) / 2) / (_GRID / 2)
    y, x = t.view(1, -1, 1), t.view(1, 1, -1)
    theta = u(-4, 4) * math.pi / 180
    scale, tx, ty = u(1.0, 1.15), u(-0.1, 0.1), u(-0.1, 0.1)
    X = (torch.cos(theta) * (x - tx) + torch.sin(theta) * (y - ty)) / scale
    Y = (-torch.sin(theta) * (x - tx) + torch.cos(theta) * (y - ty)) / scale
    e = 0.025  # edge softness (anatomy units; 1 px is about 0.016)

    # torso: a neck above the shoulders, widening a little downwards
    neck, torso = u(0.22, 0.3), u(0.8, 0.92) + 0.06 * Y
    half_width = neck + (torso - neck) * _sig((Y + u(0.68, 0.78)) / 0.05)
    body = _sig((half_width - X.abs()) / 0.04)

    # lungs: apex narrow, base wide, bottom = diaphragm dome (the right hemidiaphragm a little higher)
    lung = torch.zeros_like(X)
    fluid = torch.zeros_like(X)
    below = torch.zeros_like(X)
    geometry = []
    side_choice = torch.from_numpy(rng.integers(0, 3, n))  # 0: image-left lung, 1: image-right lung, 2: both
    for side, sign in enumerate((-1.0, 1.0)):
        cx, a = sign * u(0.36, 0.44), u(0.25, 0.31)
        top, bottom = u(-0.72, -0.6), u(0.42, 0.58) + (0.04 if sign > 0 else 0.0)
        dome = bottom - u(0.06, 0.12) * (1 - ((X - cx) / a).clamp(-1, 1) ** 2)
        depth = ((Y - top) / (bottom - top)).clamp(0, 1)
        hw = a * (0.35 + 0.65 * depth.sqrt())
        this = _sig((Y - top) / e) * _sig((dome - Y) / e) * _sig((hw - (X - cx).abs()) / e)
        lung = lung + this
        below = torch.maximum(below, _sig((Y - dome) / 0.04) * _sig((a + 0.15 - (X - cx).abs()) / 0.05))
        # the opacity: below a fluid line that climbs towards the lateral wall (a meniscus)
        height = u(*OPACITY_HEIGHT) * (bottom - top)
        lateral = (((X - cx) * sign / a + 1) / 2).clamp(0, 1)  # 0 medial, 1 lateral
        line = bottom - height - u(0.04, 0.14) * lateral**2
        present = (labels == 1) & ((side_choice == side) | (side_choice == 2))
        this_fluid = _sig((Y - line) / 0.02) * (0.75 + 0.25 * _sig((Y - line - 0.08) / 0.04))
        fluid = fluid + this * this_fluid * present.view(n, 1, 1).float()
        geometry.append((cx, a, top, bottom))

    # heart (mostly on the image-right side, resting on the diaphragm) and mediastinum: opaque over the lungs
    heart = _sig((1 - ((X - u(0.08, 0.16)) / u(0.32, 0.4)) ** 2 - ((Y - u(0.3, 0.38)) / u(0.22, 0.28)) ** 2) / 0.15)
    medi = _sig((u(0.11, 0.15) - (X - 0.02 * Y).abs()) / e) * _sig((0.35 - Y) / 0.05)
    opaque = torch.maximum(heart, medi)
    visible_lung = lung * (1 - opaque)
    strength = u(*OPACITY_STRENGTH)
    air = visible_lung * (1 - strength * fluid)

    ax = X.abs()
    spine = _sig((u(0.06, 0.08) - ax) / 0.02)
    vertebrae = 0.5 + 0.5 * torch.cos(2 * math.pi * (Y - u(0, 1)) / u(0.11, 0.14))
    # ribs: curved bands, one period apart (a periodic profile instead of one band per rib)
    bend = Y - u(0.45, 0.65) * (ax - 0.3) ** 2 - u(0.1, 0.25) * ax
    ribs = (0.5 + 0.5 * torch.cos(2 * math.pi * (bend - u(0, 1)) / u(0.12, 0.15))) ** 6
    ribs = ribs * _sig((ax - 0.1) / 0.03) * _sig((0.6 - bend) / 0.05)
    clavicle = torch.exp(-(((Y - (-0.74 + 0.12 * (ax - 0.15))) / 0.035) ** 2)) * _sig((0.62 - ax) / 0.04) * _sig((ax - 0.08) / 0.03)

    # low-frequency field and vessel texture (smooth noise at two scales)
    low, vessels = _smooth_noise(rng, n, 5), _smooth_noise(rng, n, 24)

    density = (
        u(0.04, 0.12)
        + body * (u(0.44, 0.52) + 0.08 * below)
        - body * u(0.28, 0.36) * air
        + body * (u(0.1, 0.16) * heart + 0.1 * medi)
        + u(0.16, 0.22) * spine * (0.8 + 0.2 * vertebrae)
        + body * u(0.07, 0.12) * ribs
        + u(0.1, 0.16) * clavicle
        + 0.03 * low
        + 0.025 * vessels * visible_lung
    )
    contrast, offset, gamma = u(0.85, 1.15), u(-0.06, 0.06), u(0.85, 1.15)
    image = ((contrast * (density - 0.4) + 0.4 + offset).clamp(0, 1)) ** gamma

    def up(t):
        return F.interpolate(t.unsqueeze(1), size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]

    return up(image), up(visible_lung * fluid) > 0.5


def _marker(rng: np.random.Generator, labels: torch.Tensor, variant: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Letters (n,) 0 = "L" / 1 = "R", token rows and columns (n,), glyph and plate intensities (n,)."""
    n = len(labels)
    coin = torch.from_numpy(rng.integers(0, 2, n)).long()
    follow = torch.from_numpy(rng.random(n) < TRAIN_AGREEMENT)
    letters = {"consistent": labels, "opposite": 1 - labels, "correlated": torch.where(follow, labels, coin)}.get(variant, coin)
    corner = rng.integers(0, 4, n)
    gap_y, gap_x = rng.integers(MARKER_GAP[0], MARKER_GAP[1] + 1, (2, n))
    rows = np.where(corner < 2, gap_y, SIZE - MARKER_SIDE - gap_y)
    cols = np.where(corner % 2 == 0, gap_x, SIZE - MARKER_SIDE - gap_x)
    glyph_value = rng.uniform(*MARKER_GLYPH, n)
    plate_value = rng.uniform(*MARKER_PLATE, n)
    return letters, torch.from_numpy(rows), torch.from_numpy(cols), torch.from_numpy(np.stack([glyph_value, plate_value], 1)).float()


@contextmanager
def _one_thread():
    """Torch on one thread meanwhile: the generator's many small elementwise operations ran about eight
    times slower (CPU time) with two OpenMP threads on a busy two-core machine, and no faster on an idle one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


Generated = tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]


def generate(n: int, split: str, seed: int, variant: str | None = None) -> Generated:
    """(images (n, 1, 128, 128) in [0, 1], labels (n,) long 0/1, opacity masks (n, 1, 128, 128) bool,
    ``{"marker": (n, 1, 128, 128) bool}``)."""
    variant = variant or ("correlated" if split == "train" else "shuffled")
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS} (or None), got {variant!r}")
    with _one_thread():
        return _generate(n, split, seed, variant)


def _generate(n: int, split: str, seed: int, variant: str) -> Generated:
    split_id = 0 if split == "train" else 1
    rng = np.random.default_rng([seed, split_id, 19])  # anatomy, opacity, noise: shared by every variant
    marker_rng = np.random.default_rng([seed, split_id, 19, 1])
    labels = torch.from_numpy(rng.integers(0, 2, n)).long()
    letters, rows, cols, values = _marker(marker_rng, labels, variant)
    images = torch.empty(n, 1, SIZE, SIZE)
    masks = torch.zeros(n, 1, SIZE, SIZE, dtype=torch.bool)
    marker_masks = torch.zeros(n, 1, SIZE, SIZE, dtype=torch.bool)
    glyphs = torch.stack([glyph(c) for c in MARKER_LETTERS])
    s = MARKER_SIDE
    for start in range(0, n, _BATCH):
        stop = min(start + _BATCH, n)
        m = stop - start
        image, mask = _anatomy(rng, labels[start:stop])
        sigma = torch.from_numpy(rng.uniform(0.008, 0.02, m)).float().view(m, 1, 1)
        noise = torch.from_numpy(rng.standard_normal((m, SIZE, SIZE), dtype=np.float32))
        if variant != "absent":
            for j in range(m):
                i = start + j
                r, c = int(rows[i]), int(cols[i])
                token = torch.full((s, s), float(values[i, 1]))
                token[1:9, 2:8] = torch.where(glyphs[letters[i]] > 0, values[i, 0], values[i, 1])
                image[j, r : r + s, c : c + s] = token
                marker_masks[i, 0, r : r + s, c : c + s] = True
        images[start:stop, 0] = (image + sigma * noise).clamp(0, 1).mul(255).round().div(255)
        masks[start:stop, 0] = mask
    return images, labels, masks, {"marker": marker_masks}


def marker_letters(images: torch.Tensor, marker_masks: torch.Tensor) -> torch.Tensor:
    """The letter (0 = "L", 1 = "R") of each image's marker, read off the pixels inside its marker mask
    (for checks and tests; -1 where there is no marker): the "R" has ink in its top-right cells, the "L" none."""
    out = torch.full((len(images),), -1, dtype=torch.long)
    for i in range(len(images)):
        where = marker_masks[i, 0].nonzero()
        if len(where) == 0:
            continue
        r, c = (int(v) for v in where.min(0).values)
        token = images[i, 0, r : r + MARKER_SIDE, c : c + MARKER_SIDE]
        plate = token[0].mean()
        top_right = token[1:4, 6:8].mean()  # glyph rows 0-2, columns 4-5: ink in "R", empty in "L"
        left_stroke = token[1:9, 2:4].mean()
        out[i] = int(top_right - plate > 0.5 * (left_stroke - plate))
    return out
