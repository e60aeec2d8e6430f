"""Reading images for users: clear errors for missing, unreadable or odd files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


def load_image(
    path: str | Path, *, grayscale: bool = False, size: int | tuple[int, int] | None = None, name: str = "image"
) -> torch.Tensor:
    """Read an image file (any format Pillow reads) as a pixel tensor (1, C, H, W) in [0, 1].

    Parameters
    ----------
    path : path
        The image file.
    grayscale : bool
        Return one channel (C = 1) instead of RGB (C = 3).
    size : int or (height, width), optional
        Resize to this size (an int resizes the shorter side, keeping the aspect ratio).
    name : str
        Argument name used in error messages.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{name}: {str(path)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"{name}: {str(path)!r} is a directory, expected an image file")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if grayscale else "RGB")
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
