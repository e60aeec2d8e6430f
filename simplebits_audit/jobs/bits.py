"""What ``simplebits bits`` measures: each image's bits under an estimator, beside PNG and WebP lossless."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..codecs import codec_bpd
from ..estimators import BitEstimator, load_estimator
from ..images import load_image


@dataclass(frozen=True)
class ImageBits:
    """One image's size under the estimator and two lossless codecs."""

    path: str
    height: int
    width: int
    bits: float
    bpd: float
    png_bpd: float
    webp_bpd: float


def measure_bits(
    images: Sequence[str | Path],
    *,
    estimator: BitEstimator | str | None = None,
    grayscale: bool = False,
    device: str | torch.device = "cpu",
) -> list[ImageBits]:
    """Bits and bits per dimension of each image file under ``estimator``, and its PNG / WebP bpd.

    Every file is read (and checked) before the estimator is loaded or any image rated.
    """
    pixels = [load_image(p, grayscale=grayscale, name="IMAGES") for p in images]
    est = estimator if isinstance(estimator, BitEstimator) else load_estimator(estimator, device=device)
    rows = []
    with torch.no_grad():
        for path, x in zip(images, pixels):
            x = x.to(device)
            bits = float(est.bits(x)[0])
            rows.append(ImageBits(
                str(path), x.shape[2], x.shape[3], bits, bits / x[0].numel(), float(codec_bpd(x, "png")[0]), float(codec_bpd(x, "webp")[0]),
            ))
    return rows
