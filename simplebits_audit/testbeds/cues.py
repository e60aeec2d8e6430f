"""Single-cue testbeds for *which* information a model uses (colour, fine texture, outline), and a cue-conflict pair.

Every image is one object (an anti-aliased blob) on a photo crop, 3 x 32 x 32 in [0, 1] (8-bit
values); mask = the object (alpha > 0.5). Three factors describe the object, drawn independently:

- **colour**: hue and saturation (HSV). A *hue family* (``red`` / ``green`` / ``blue``: hue 0,
  1/3, 2/3, each jittered by +-:data:`HUE_JITTER`, saturation in :data:`FAMILY_SATURATION`) or a
  random colour (hue uniform, saturation in :data:`RANDOM_SATURATION`). The object's *luminance*
  (Rec. 601 weights) is drawn in :data:`OBJECT_LUMINANCE` independently of the hue, and the value
  set to reach it (capped at 1: only very saturated random blues come out darker), so luminance
  carries no hue information, and the background's luminance (:data:`BACKGROUND_LUMINANCE`) is
  always brighter by at least 0.25: the outline survives a conversion to grey. (A first version
  set the HSV value off the background's mean: greyscale then hid some outlines, the shape
  classifier kept 73 % accuracy on luminance-only images, and luminance carried some hue, blue
  being darker than green at the same value.)
- **texture**: a greyscale modulation of the colour's value, ``fill = rgb * (1 + amplitude * t)``
  with ``t`` in [-1, 1]. Either an *oriented fine grating* (wave-vector angle 0, 60 or 120 degrees
  +-:data:`ORIENTATION_JITTER`, period in :data:`FINE_PERIODS` px, amplitude in
  :data:`FINE_AMPLITUDE`; a Gaussian blur of sigma 1.5 px keeps 0.7 % (period 3 px) to 6.2 %
  (4 px) of its amplitude) or a random
  texture (a grating of any angle and period in :data:`RANDOM_PERIODS`, or smoothed noise, half
  each; amplitude in :data:`RANDOM_AMPLITUDE`).
- **shape**: an *outline* (``disc`` / ``square`` / ``triangle``, equal areas, random rotation)
  or a random blob (a radius with random harmonics 1-4, covering ellipses and rounded polygons).
  The size (radius of the equal-area disc) is uniform in :data:`RADII`; the centre is uniform in a
  box that keeps the whole object in the frame (so the object is never far from the centre: a
  centred map localises it, a confound recorded in the cards).

The testbeds (:data:`CUE_AXES` says which information axis carries each label; the names are
the keys of ``testbeds.TESTBEDS``):

- ``colour-cue``: label = hue family; random blob, random texture (axis ``"colour"``);
- ``texture-cue``: label = orientation of the fine grating; random blob, random colour (``"detail"``);
- ``shape-cue``: label = outline; random colour, random texture (``"region"``: the outline is where
  the object is, which a flat reference removes);
- ``cue-conflict-shape`` / ``cue-conflict-colour``: the *same* images (same seed and split give the
  same pixels), outline and hue family drawn independently (3 x 3), random texture; labelled by
  outline or by hue family. Each has its own shipped classifier.

The background is a photo crop of the split (test photos never appear in training), its luminance
squeezed into :data:`BACKGROUND_LUMINANCE` and its saturation halved: the object is a darker,
more colourful blob (trivial maps find it; these testbeds ask *which* information, not *where*).

:func:`draw` returns the factors of a batch (a :class:`Scene`), :func:`render` its pixels, and
:func:`swap` the same scene with one factor changed (another class for a labelled factor, a new
random draw otherwise): that is how the cards measure that a classifier reads its cue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from .. import photos
from .._helpers import luminance

SIZE = 32
HUE_FAMILIES = ["red", "green", "blue"]
OUTLINES = ["disc", "square", "triangle"]
ORIENTATIONS = ["0deg", "60deg", "120deg"]
#: hue jitter around each family's centre (0, 1/3, 2/3), in turns
HUE_JITTER = 0.04
#: at most 0.75 so that every family reaches :data:`OBJECT_LUMINANCE` (a blue of saturation s at
#: value 1 has luminance 0.114 + 0.886 (1 - s))
FAMILY_SATURATION = (0.45, 0.75)
RANDOM_SATURATION = (0.2, 0.8)
#: the object's luminance and the background's (a photo crop's grey level squeezed into this range)
OBJECT_LUMINANCE = (0.12, 0.3)
BACKGROUND_LUMINANCE = (0.55, 0.85)
#: the label texture: orientation jitter (degrees), period (px) and amplitude
ORIENTATION_JITTER = 8.0
FINE_PERIODS = (3.0, 4.0)
FINE_AMPLITUDE = (0.45, 0.6)
#: the random texture: grating period (px) and amplitude (gratings and smoothed noise)
RANDOM_PERIODS = (3.0, 8.0)
RANDOM_AMPLITUDE = (0.1, 0.3)
#: radius (px) of the equal-area disc; the square and triangle have the same area
RADII = (6.0, 8.0)
#: harmonics' amplitude of a random blob's radius (harmonics 1-4)
BLOB_HARMONICS = 0.18
#: resize factors of the photos the crops are cut from (see photos.CropSampler)
CROP_SCALES = (0.4, 1.0)
photo_pool = photos.split_photos

#: testbed name -> (cue, random stream): which factor is the label ("colour", "texture", "shape")
TESTBED_CUES = {
    "colour-cue": ("colour", 10), "texture-cue": ("texture", 11), "shape-cue": ("shape", 12),
    "cue-conflict-shape": ("shape", 13), "cue-conflict-colour": ("colour", 13),
}
#: testbed name -> the information axis that carries its label (the factorised engine's axes:
#: "colour" towards luminance, "detail" towards a blur, "region" towards a flat reference)
CUE_AXES = {"colour-cue": "colour", "texture-cue": "detail", "shape-cue": "region",
            "cue-conflict-shape": "region", "cue-conflict-colour": "colour"}
CLASSES = {"colour": HUE_FAMILIES, "texture": ORIENTATIONS, "shape": OUTLINES}


def crop_sampler(split: str, seed: int) -> photos.CropSampler:
    """The split's crop sampler, reseeded."""
    return photos.split_crop_sampler(split, SIZE, CROP_SCALES, seed)


@dataclass
class Scene:
    """The factors of ``n`` images. Class fields are (n,) long, -1 where the factor is random."""

    background: torch.Tensor  # (n, 3, H, W) in [0, 1]
    centre: torch.Tensor  # (n, 2) x, y in px
    radius: torch.Tensor  # (n,)
    rotation: torch.Tensor  # (n,) radians
    outline: torch.Tensor  # (n,) 0 disc, 1 square, 2 triangle, -1 random blob
    harmonics: torch.Tensor  # (n, 4, 2) amplitude, phase of the blob's harmonics 1-4
    family: torch.Tensor  # (n,) hue family, -1 random colour
    hsv: torch.Tensor  # (n, 3) hue (turns), saturation, value
    orientation: torch.Tensor  # (n,) orientation class, -1 random texture
    texture: torch.Tensor  # (n, 1, H, W) in [-1, 1]
    amplitude: torch.Tensor  # (n,)

    def __len__(self) -> int:
        return len(self.radius)


def _u(rng: np.random.Generator, lo_hi: tuple[float, float], n: int) -> torch.Tensor:
    return torch.from_numpy(rng.uniform(*lo_hi, n)).float()


def _draw_colour(n: int, rng: np.random.Generator, family: torch.Tensor | None, luma: torch.Tensor | None = None) -> dict:
    """Hue family (or random colour where ``family`` is None), the value set so that the colour's
    luminance is ``luma`` (default: drawn in :data:`OBJECT_LUMINANCE`), capped at 1."""
    if family is None:
        family = torch.full((n,), -1, dtype=torch.long)
        hue, sat = _u(rng, (0, 1), n), _u(rng, RANDOM_SATURATION, n)
    else:
        hue = (family.float() / 3 + _u(rng, (-HUE_JITTER, HUE_JITTER), n)) % 1
        sat = _u(rng, FAMILY_SATURATION, n)
    luma = _u(rng, OBJECT_LUMINANCE, n) if luma is None else luma
    at_one = luminance(hsv_to_rgb(torch.stack([hue, sat, torch.ones(n)], 1)))
    value = (luma / at_one).clamp(max=1.0)
    return {"family": family, "hsv": torch.stack([hue, sat, value], 1)}


def _grating(theta: torch.Tensor, period: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Sinusoids (n, 1, SIZE, SIZE) in [-1, 1] whose wave vector points at angle ``theta`` (radians)."""
    t = torch.arange(SIZE, dtype=torch.float32)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    n = len(theta)
    along = xx * theta.cos().view(n, 1, 1) + yy * theta.sin().view(n, 1, 1)
    return torch.sin(2 * math.pi * along / period.view(n, 1, 1) + phase.view(n, 1, 1)).unsqueeze(1)


def _draw_texture(n: int, rng: np.random.Generator, orientation: torch.Tensor | None) -> dict:
    """Oriented fine grating (or random texture where ``orientation`` is None)."""
    phase = _u(rng, (0, 2 * math.pi), n)
    if orientation is not None:
        theta = torch.deg2rad(orientation.float() * 60 + _u(rng, (-ORIENTATION_JITTER, ORIENTATION_JITTER), n))
        texture = _grating(theta, _u(rng, FINE_PERIODS, n), phase)
        return {"orientation": orientation, "texture": texture, "amplitude": _u(rng, FINE_AMPLITUDE, n)}
    grating = _grating(_u(rng, (0, math.pi), n), _u(rng, RANDOM_PERIODS, n), phase)
    noise = torch.from_numpy(rng.standard_normal((n, 1, SIZE + 4, SIZE + 4))).float()
    kernel = torch.exp(-torch.arange(-2.0, 3.0) ** 2 / 2)  # sigma 1 px: blotches of a few pixels
    kernel = (kernel.view(-1, 1) * kernel.view(1, -1) / kernel.sum() ** 2).view(1, 1, 5, 5)
    noise = F.conv2d(noise, kernel)
    noise = (noise / noise.flatten(1).std(1).view(n, 1, 1, 1) / 2).clamp(-1, 1)
    use_noise = torch.from_numpy(rng.random(n) < 0.5).view(n, 1, 1, 1)
    return {"orientation": torch.full((n,), -1, dtype=torch.long), "texture": torch.where(use_noise, noise, grating),
            "amplitude": _u(rng, RANDOM_AMPLITUDE, n)}


def _draw_shape(n: int, rng: np.random.Generator, outline: torch.Tensor | None) -> dict:
    """Outline class (or a random blob where ``outline`` is None), rotation and blob harmonics."""
    harmonics = torch.stack([_u(rng, (-BLOB_HARMONICS, BLOB_HARMONICS), 4 * n).view(n, 4),
                             _u(rng, (0, 2 * math.pi), 4 * n).view(n, 4)], 2)
    outline = torch.full((n,), -1, dtype=torch.long) if outline is None else outline
    return {"outline": outline, "rotation": _u(rng, (0, 2 * math.pi), n), "harmonics": harmonics}


def _labels(cue: str | None, n: int, rng: np.random.Generator) -> torch.Tensor | None:
    # balanced classes (each class n // 3 or n // 3 + 1 times), in random order
    return None if cue is None else torch.from_numpy(rng.permutation(np.arange(n) % 3)).long()


def draw(n: int, split: str, seed: int, cues: tuple[str, ...], stream: int) -> Scene:
    """The factors of ``n`` images whose ``cues`` (a subset of "colour", "texture", "shape") are
    labelled classes, the other factors random; deterministic for (n, split, seed, cues, stream)."""
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, stream])
    crop = crop_sampler(split, int(rng.integers(2**31))).sample(n)
    grey = crop.mean(1, keepdim=True)
    lo, hi = BACKGROUND_LUMINANCE
    background = lo + (hi - lo) * (grey + 0.5 * (crop - grey))  # grey level squeezed, saturation halved
    labels = {c: _labels(c, n, rng) for c in ("colour", "texture", "shape") if c in cues}
    radius = _u(rng, RADII, n)
    # the triangle's circumradius is the largest extent (1.56 x the disc's radius; blobs up to 1.5x)
    reach = 1.6 * radius + 1
    centre = SIZE / 2 + (torch.from_numpy(rng.uniform(-1, 1, (n, 2))).float() * (SIZE / 2 - reach).view(n, 1))
    return Scene(
        background=background, centre=centre, radius=radius,
        **_draw_shape(n, rng, labels.get("shape")),
        **_draw_colour(n, rng, labels.get("colour")),
        **_draw_texture(n, rng, labels.get("texture")),
    )


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """(n, 3) HSV (hue in turns) -> (n, 3) RGB, all in [0, 1]."""
    h, s, v = hsv.unbind(1)
    k = (torch.tensor([5.0, 3.0, 1.0]).view(1, 3) + 6 * h.view(-1, 1)) % 6
    return v.view(-1, 1) - (v * s).view(-1, 1) * torch.minimum(k, 4 - k).clamp(0, 1)


def alpha(scene: Scene) -> torch.Tensor:
    """The object's anti-aliased coverage (n, 1, SIZE, SIZE) in [0, 1] (one pixel of soft edge)."""
    n = len(scene)
    t = torch.arange(SIZE, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    dx = xx - scene.centre[:, 0].view(n, 1, 1)
    dy = yy - scene.centre[:, 1].view(n, 1, 1)
    c, s = scene.rotation.cos().view(n, 1, 1), scene.rotation.sin().view(n, 1, 1)
    u, v = c * dx + s * dy, -s * dx + c * dy
    r = scene.radius.view(n, 1, 1)
    rho, phi = torch.hypot(u, v), torch.atan2(v, u)
    # signed distances (px, positive outside), equal areas: square half-side r sqrt(pi) / 2,
    # equilateral triangle inradius r sqrt(pi / (3 sqrt 3))
    disc = rho - r
    square = torch.maximum(u.abs(), v.abs()) - r * math.sqrt(math.pi) / 2
    normals = [math.pi / 2 + 2 * math.pi * k / 3 for k in range(3)]
    triangle = torch.stack([u * math.cos(a) + v * math.sin(a) for a in normals]).amax(0) - r * math.sqrt(math.pi / (3 * math.sqrt(3)))
    amp, ph = scene.harmonics[..., 0], scene.harmonics[..., 1]
    k = torch.arange(1, 5, dtype=torch.float32).view(1, 4, 1, 1)
    wobble = (amp.view(n, 4, 1, 1) * torch.cos(k * phi.unsqueeze(1) + ph.view(n, 4, 1, 1))).sum(1)
    blob = rho - r * (1 + wobble)
    kind = scene.outline.view(n, 1, 1)
    d = torch.where(kind == 0, disc, torch.where(kind == 1, square, torch.where(kind == 2, triangle, blob)))
    return (0.5 - d).clamp(0, 1).unsqueeze(1)


def render(scene: Scene) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 3, SIZE, SIZE) in [0, 1] (8-bit values) and object masks (n, 1, SIZE, SIZE) bool."""
    n = len(scene)
    a = alpha(scene)
    rgb = hsv_to_rgb(scene.hsv).view(n, 3, 1, 1)
    fill = (rgb * (1 + scene.amplitude.view(n, 1, 1, 1) * scene.texture)).clamp(0, 1)
    images = ((1 - a) * scene.background + a * fill).mul(255).round().div(255)
    return images, a > 0.5


def swap(scene: Scene, factor: str, seed: int = 0) -> Scene:
    """The same scene with ``factor`` ("colour", "texture" or "shape") redrawn: a labelled factor
    moves to another class (+1 or +2 mod 3, at random), a random one gets a new random draw;
    everything else (background, position, size, the other factors) stays."""
    if factor not in CLASSES:
        raise ValueError(f"factor: expected one of {list(CLASSES)}, got {factor!r}")
    n = len(scene)
    rng = np.random.default_rng([seed, 99])
    current = scene_labels(scene, factor)
    labelled = bool((current >= 0).all())
    new = (current + torch.from_numpy(rng.integers(1, 3, n)).long()) % 3 if labelled else None
    if factor == "colour":
        # keep the luminance: only hue and saturation change
        drawn = _draw_colour(n, rng, new, luminance(hsv_to_rgb(scene.hsv)))
    elif factor == "texture":
        drawn = _draw_texture(n, rng, new)
    else:
        drawn = _draw_shape(n, rng, new)
        drawn["rotation"] = scene.rotation
    return replace(scene, **drawn)


def scene_labels(scene: Scene, cue: str) -> torch.Tensor:
    """The class labels (n,) of factor ``cue`` (-1 where random)."""
    return {"colour": scene.family, "texture": scene.orientation, "shape": scene.outline}[cue]


def testbed_scene(name: str, n: int, split: str, seed: int) -> Scene:
    """The scene behind testbed ``name`` (a key of :data:`TESTBED_CUES`)."""
    cue, stream = TESTBED_CUES[name]
    cues = ("shape", "colour") if name.startswith("cue-conflict") else (cue,)
    return draw(n, split, seed, cues, stream)


def generate(n: int, split: str, seed: int, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, labels, masks) of testbed ``name``: the label is its cue's class."""
    scene = testbed_scene(name, n, split, seed)
    images, masks = render(scene)
    return images, scene_labels(scene, TESTBED_CUES[name][0]).clone(), masks


GENERATORS = {name: partial(generate, name=name) for name in TESTBED_CUES}
