"""From image files to the tensors a user's classifier takes: resize, crop, normalise; class names.

:class:`Preprocessing` describes what the model expects (the usual torchvision recipe: resize the
shorter side, centre-crop, normalise by mean and std). Images stay in pixel space [0, 1] until the
model is called; the explainer gets ``normalization`` to move between the two spaces.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ._io import read_utf8
from .images import load_image

#: Named normalisation presets: (mean, std).
PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


@dataclass(frozen=True)
class Preprocessing:
    """What the classifier expects of an image.

    Parameters
    ----------
    size : int, optional
        Resize the shorter side to ``size`` (aspect kept). None keeps the file's size.
    crop : int, optional
        Centre-crop to ``crop`` x ``crop`` after resizing.
    mean, std : sequence of float, optional
        Per-channel normalisation: the model takes ``(pixels - mean) / std``. One value per
        channel (or one value for all). None: the model takes pixels in [0, 1].
    grayscale : bool
        Load images with one channel.
    """

    size: int | None = None
    crop: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    grayscale: bool = False

    def __post_init__(self) -> None:
        for name in ("size", "crop"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}: expected a positive number of pixels, got {value!r}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std: give both or neither")
        if self.mean is not None:
            channels = 1 if self.grayscale else 3
            for name in ("mean", "std"):
                values = tuple(float(v) for v in getattr(self, name))
                if len(values) == 1:
                    values = values * channels
                if len(values) != channels:
                    raise ValueError(f"{name}: expected 1 or {channels} values, got {len(values)}")
                object.__setattr__(self, name, values)
            if any(s <= 0 for s in self.std):
                raise ValueError("std: every value must be positive")

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> Preprocessing:
        """A preset's normalisation (``"imagenet"``, ``"none"``) plus other fields."""
        if preset not in PRESETS:
            raise ValueError(f"preset: unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        mean, std = PRESETS[preset]
        if overrides.get("grayscale"):
            mean, std = (sum(mean) / 3,), (sum(std) / 3,)
        return cls(mean=mean, std=std, **overrides)

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """``(mean, std)`` for :class:`~simplebits_audit.SimpleBits`, or None."""
        return None if self.mean is None else (self.mean, self.std)

    def load(self, path: str | Path, *, name: str = "image") -> torch.Tensor:
        """Read, resize and crop one image file: a pixel tensor (1, C, H, W) in [0, 1]."""
        pixels = load_image(path, grayscale=self.grayscale, name=name)
        return self.apply(pixels)

    def apply(self, pixels: torch.Tensor) -> torch.Tensor:
        """Resize and crop pixel images (B, C, H, W); values stay in [0, 1]."""
        from torchvision.transforms.v2 import functional as TF  # torchvision is slow to import: only when needed

        if self.size is not None:
            pixels = TF.resize(pixels, self.size, antialias=True).clamp(0, 1)
        if self.crop is not None:
            if min(pixels.shape[-2:]) < self.crop:
                raise ValueError(f"crop: {self.crop} px is larger than the image ({pixels.shape[-2]} x {pixels.shape[-1]}); set size")
            pixels = TF.center_crop(pixels, [self.crop, self.crop])
        return pixels

    def to_model(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels [0, 1] -> the model's input space."""
        if self.mean is None:
            return pixels
        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
        return (pixels - mean) / std


def load_images(paths: Sequence[str | Path], preprocessing: Preprocessing | None = None, *, name: str = "images") -> torch.Tensor:
    """Read every file (all checked before any is returned) into one pixel batch (B, C, H, W).

    The images must come out the same size: set ``size`` and ``crop`` for photos of mixed sizes.
    """
    if not paths:
        raise ValueError(f"{name}: no image given")
    preprocessing = preprocessing or Preprocessing()
    pixels = [preprocessing.load(p, name=name) for p in paths]
    shapes = {tuple(p.shape[1:]) for p in pixels}
    if len(shapes) > 1:
        raise ValueError(f"{name}: the images have different sizes {sorted(shapes)}; set size and crop (--size/--crop)")
    return torch.cat(pixels)


def load_labels(path: str | Path) -> list[str]:
    """Class names from a text file (one per line) or JSON (a list, or ``{"index": name}``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"labels: {str(path)!r} is not a file")
    text = read_utf8(path, "labels")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"labels: {str(path)!r} is not valid JSON ({err})") from None
        if isinstance(data, dict):
            try:
                items = sorted((int(k), str(v)) for k, v in data.items())
            except ValueError:
                raise ValueError(f"labels: {str(path)!r} maps non-integer keys; expected {{\"0\": \"cat\", ...}}") from None
            if [k for k, _ in items] != list(range(len(items))):
                raise ValueError(f"labels: {str(path)!r} must number the classes 0..{len(items) - 1} without gaps")
            return _named([v for _, v in items], path, lambda i: f"key {str(i)!r}")
        if isinstance(data, list):
            return _named([str(v) for v in data], path, lambda i: f"entry {i + 1}")
        raise ValueError(f"labels: {str(path)!r} holds a {type(data).__name__}; expected a list or an object")
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ValueError(f"labels: {str(path)!r} is empty")
    return _named(names, path, lambda i: f"line {i + 1}")


def _named(names: list[str], path: Path, where: Callable[[int], str]) -> list[str]:
    """``names`` if none is blank (``where(i)`` says where class ``i`` is written): a blank line would shift every
    later class onto the wrong index, silently."""
    blank = [i for i, n in enumerate(names) if not n.strip()]
    if blank:
        raise ValueError(f"labels: {str(path)!r} {where(blank[0])} is blank; every class needs a name")
    return names
