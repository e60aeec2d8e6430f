"""Real-codec sizes (Pillow's PNG and WebP lossless): the outside check on any bit estimator.

A learned estimator can be fooled into rating an image cheap that a real codec finds expensive;
comparing against PNG/WebP exposes that (SPEC section 6).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def to_uint8_images(x: torch.Tensor) -> list[np.ndarray]:
    """Pixel images (B, C, H, W) in [0, 1] as a list of uint8 arrays (H, W) or (H, W, 3)."""
    arr = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return [a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0) for a in arr]


def codec_bits(x: torch.Tensor, codec: str = "webp") -> torch.Tensor:
    """File size in bits of each image compressed losslessly, shape (B,).

    Parameters
    ----------
    x : Tensor, shape (B, C, H, W)
        Pixel images in [0, 1] (rounded to 8 bits).
    codec : {"webp", "png"}
        WebP lossless (method 4, quality 100) or PNG (optimize=True). Method 4 rather than 6:
        on 32 x 32 testbed images, simplified images and 128 x 128 photos it was 25-30x faster
        and its files were 0.3-1.3 % *smaller* on average (method 6 at quality 100 took 1.9 s per
        128 x 128 photo, which made WebP the slowest step of an audit).
    """
    if codec not in ("webp", "png"):
        raise ValueError(f"codec: expected 'webp' or 'png', got {codec!r}")
    sizes = []
    for img in to_uint8_images(x):
        buf = io.BytesIO()
        if codec == "webp":
            Image.fromarray(img).save(buf, format="WEBP", lossless=True, quality=100, method=4)
        else:
            Image.fromarray(img).save(buf, format="PNG", optimize=True)
        sizes.append(8 * buf.tell())
    return torch.tensor(sizes, dtype=torch.float64)


def codec_bpd(x: torch.Tensor, codec: str = "webp") -> torch.Tensor:
    """Bits per dimension of the lossless file, shape (B,)."""
    return codec_bits(x, codec) / float(np.prod(x.shape[1:]))
