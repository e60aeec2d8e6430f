"""What ``simplebits bits`` measures and writes: each image's bits under an estimator, beside PNG, WebP and
JPEG-XL lossless; the estimator as a real codec (``encode_file`` / ``decode_file``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .._io import atomic_write
from ..codecs import codec_bpd, decode, encode, read_header
from ..estimators import BitEstimator, resolve_estimator
from ..images import load_image


@dataclass(frozen=True)
class ImageBits:
    """One image's size under the estimator and three lossless codecs (bits per dimension)."""

    path: str
    height: int
    width: int
    bits: float
    bpd: float
    png_bpd: float
    webp_bpd: float
    jxl_bpd: float


def measure_bits(
    images: Sequence[str | Path],
    *,
    estimator: BitEstimator | str | None = None,
    grayscale: bool = False,
    device: str | torch.device = "cpu",
) -> list[ImageBits]:
    """Bits and bits per dimension of each image file under ``estimator``, and its PNG / WebP / JPEG-XL bpd.

    Every file is read (and checked) before the estimator is loaded or any image rated.
    """
    pixels = [load_image(p, grayscale=grayscale, name="IMAGES") for p in images]
    est = resolve_estimator(estimator, device=device)
    rows = []
    with torch.no_grad():
        for path, x in zip(images, pixels):
            x = x.to(device)
            bits = float(est.bits(x)[0])
            rows.append(ImageBits(
                str(path), x.shape[2], x.shape[3], bits, bits / x[0].numel(), float(codec_bpd(x, "png")[0]), float(codec_bpd(x, "webp")[0]),
                float(codec_bpd(x, "jxl")[0]),
            ))
    return rows


@dataclass(frozen=True)
class EncodedFile:
    """A file written by :func:`encode_file`: its size against the estimator's bits for the image."""

    path: str
    bytes: int
    header_bytes: int
    estimator_bits: float


def encode_file(image: str | Path, out: str | Path, *, estimator: BitEstimator | str | None = None, grayscale: bool = False) -> EncodedFile:
    """Compress one image file with the estimator as a real codec (:func:`~simplebits_audit.codecs.encode`), atomically.

    The file holds the 8-bit image exactly; its size is the estimator's bits plus a small header
    (``bytes * 8 - estimator_bits`` is the overhead). Errors name ``IMAGES`` or ``estimator``.
    """
    x = load_image(image, grayscale=grayscale, name="IMAGES")
    est = resolve_estimator(estimator)
    data = encode(x[0], est)
    with torch.no_grad():
        bits = float(est.bits(x)[0])
    atomic_write(out, lambda tmp: tmp.write_bytes(data))
    return EncodedFile(str(out), len(data), read_header(data).size, bits)


def decode_file(data_path: str | Path, out: str | Path, *, estimator: BitEstimator | str | None = None) -> tuple[int, int, int]:
    """Restore the image of a file written by :func:`encode_file` into a PNG ``out`` (bit for bit), atomically; (C, H, W)."""
    from PIL import Image

    path = Path(data_path)
    if not path.is_file():
        raise ValueError(f"decode: {str(path)!r} is not a file")
    image = decode(path.read_bytes(), estimator)  # uint8 (C, H, W); a damaged file is a ValueError naming data
    array = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()
    atomic_write(out, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))
    return tuple(image.shape)
