"""Reading images for users: clear errors for missing, unreadable or odd files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


def load_image(
    path: str | Path, *, grayscale: bool | None = False, size: int | tuple[int, int] | None = None, name: str = "image"
) -> torch.Tensor:
    """Read an image file (any format Pillow reads) as a pixel tensor (1, C, H, W) in [0, 1].

    Parameters
    ----------
    path : path
        The image file.
    grayscale : bool or None
        Return one channel (C = 1) instead of RGB (C = 3); None: as the file stores it (one channel
        for grey files, :func:`is_grey`, RGB for the others). Transparency is dropped.
    size : int or (height, width), optional
        Resize to this size (an int resizes the shorter side, keeping the aspect ratio).
    name : str
        Argument name used in error messages.

    Notes
    -----
    Everything here is 8-bit (the estimators rate 256 levels). A 16-bit grey image (PNG or TIFF,
    e.g. a radiograph) is reduced to 8 bits as ``round(value * 255 / 65535)``, with a warning that
    gives its range: Pillow's own conversion clips every value above 255 to white. Floating-point
    pixels (mode ``F``) and 32-bit integers beyond 0..65535 have no known range and raise
    ``ValueError`` naming ``name``.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{name}: {str(path)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"{name}: {str(path)!r} is a directory, expected an image file")
    try:
        with Image.open(path) as im:
            grey = is_grey(im) if grayscale is None else grayscale
            if _deep(im) and im.mode in ("RGB", "RGBA"):  # Pillow keeps the high byte of 16-bit colour: said, not silent
                warnings.warn(f"{name}: {str(path)!r} has 16-bit samples that Pillow reads as their high byte (8 bits)", stacklevel=2)
            im = _eight_bit(im, path, name)
            im = im.convert("L" if grey else "RGB")
            if size is not None:
                if isinstance(size, int):
                    w, h = im.size
                    s = size / min(w, h)
                    im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
                else:
                    im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{name}: {str(path)!r} is not a readable image ({err})") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div(255)


def _eight_bit(im: Image.Image, path: Path, name: str) -> Image.Image:
    """``im`` itself, or its 16-bit grey levels scaled to an 8-bit ``L`` image (see :func:`load_image`)."""
    if im.mode == "F":
        raise ValueError(f"{name}: {str(path)!r} has floating-point pixels, whose range is unknown; save it as an 8- or 16-bit image")
    if not (im.mode == "I" or im.mode.startswith("I;16")):
        return im
    if im.mode == "I" and "16" not in _rawmode(im):  # 32-bit integers: no known range (8-bit values would come out black)
        raise ValueError(f"{name}: {str(path)!r} has 32-bit integer pixels, whose range is unknown; save it as an 8- or 16-bit image")
    values = np.asarray(im)
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 65535:
        raise ValueError(f"{name}: {str(path)!r} has 32-bit integer pixels ({low}..{high}) outside 0..65535; "
                         "save it as an 8- or 16-bit image")
    eight = ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # round(v * 255 / 65535)
    warnings.warn(f"{name}: {str(path)!r} has 16-bit pixels ({low}..{high}); read as 8 bits "
                  f"({int(eight.min())}..{int(eight.max())}), value * 255 / 65535", stacklevel=3)
    return Image.fromarray(eight, "L")


def _rawmode(im: Image.Image) -> str:
    """How the file stores its samples, before Pillow's decoding (e.g. ``"LA;16B"`` for a 16-bit grey + alpha
    PNG that Pillow opens as 8-bit RGBA); ``""`` when the decoder does not say. Read before the image is loaded."""
    tile = im.tile[0] if getattr(im, "tile", None) else None
    args = getattr(tile, "args", None) if tile is not None else None
    if isinstance(args, tuple):
        args = args[0] if args else None
    return args if isinstance(args, str) else ""


def is_grey(im: Image.Image) -> bool:
    """Whether an open Pillow image stores grey levels only (modes 1, L, LA, I, F, the 16-bit I;16 modes, and
    16-bit grey + alpha files that Pillow opens as RGBA)."""
    return im.mode in ("1", "L", "LA", "I", "F") or im.mode.startswith("I;16") or _rawmode(im).startswith(("L", "I"))


def _deep(im: Image.Image) -> bool:
    """More than 8 bits per sample in the file (Pillow opens a 16-bit RGB PNG as 8-bit RGB, silently)."""
    raw = _rawmode(im)
    return im.mode in ("I", "F") or im.mode.startswith("I;16") or "16" in raw or "32" in raw


def image_facts(path: str | Path) -> dict[str, bool]:
    """What an image file stores beyond 8-bit grey or RGB pixels: ``{"grey", "transparent", "deep"}``
    (grey levels only; some pixel not fully opaque; more than 8 bits per sample). The file must be
    readable (read it with :func:`load_image` first for the error messages)."""
    with Image.open(path) as im:
        grey, deep = is_grey(im), _deep(im)
        transparent = False
        if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
            transparent = im.convert("RGBA").getchannel("A").getextrema()[0] < 255
        return {"grey": grey, "transparent": transparent, "deep": deep}
