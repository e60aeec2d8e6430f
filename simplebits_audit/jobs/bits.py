"""What ``simplebits bits`` measures and writes: each image's bits under an estimator, beside PNG, WebP and
JPEG-XL lossless; the estimator as a real codec (``encode_file`` / ``decode_file``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .._io import atomic_write, check_parent
from ..codecs import codec_bpd, decode, encode, read_header
from ..estimators import BitEstimator, resolve_estimator
from ..images import image_facts, load_image
from .checks import check_out_file


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
    grayscale: bool | None = None,
    device: str | torch.device = "cpu",
) -> list[ImageBits]:
    """Bits and bits per dimension of each image file under ``estimator``, and its PNG / WebP / JPEG-XL bpd.

    ``grayscale``: rate one grey plane (True), RGB (False) or each file as stored (None: grey files
    on one plane). Every file is read (and checked) before the estimator is loaded or any image rated.
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


def encode_file(
    image: str | Path, out: str | Path, *, estimator: BitEstimator | str | None = None, grayscale: bool | None = None
) -> EncodedFile:
    """Compress one image file with the estimator as a real codec (:func:`~simplebits_audit.codecs.encode`), atomically.

    The file holds the 8-bit pixels exactly: a grey file as one plane, any other as RGB (a palette
    image comes back as RGB); ``grayscale=True`` / ``False`` forces one or the other. Its size is the
    estimator's bits plus a small header (``bytes * 8 - estimator_bits`` is the overhead). An image
    the file could not restore is refused (``ValueError`` naming ``IMAGES``): transparent pixels, or
    more than 8 bits per sample; ``out`` may be any file name but not a folder. Errors name ``IMAGES``,
    ``encode`` (``out``: the command's ``--encode``) or ``estimator``.
    """
    with warnings.catch_warnings():  # a 16-bit file is refused just below, not read as 8 bits
        warnings.simplefilter("ignore")
        x = load_image(image, grayscale=grayscale, name="IMAGES")  # a missing or unreadable file: its one-line error first
    facts = image_facts(image)
    if facts["transparent"] or facts["deep"]:
        what = "transparent pixels" if facts["transparent"] else "more than 8 bits per sample"
        raise ValueError(f"IMAGES: {str(image)!r} has {what}, which the codec does not store (8-bit grey or RGB pixels), "
                         "so decoding could not restore it; save it as an 8-bit grey or RGB image first")
    if Path(out).is_dir():  # checked before the work: the rename onto a folder would fail only after it
        raise ValueError(f"encode: {str(out)!r} is a folder; give a file name such as photo.sbits")
    check_parent(out, "encode")
    est = resolve_estimator(estimator)
    data = encode(x[0], est)
    with torch.no_grad():
        bits = float(est.bits(x)[0])
    atomic_write(out, lambda tmp: tmp.write_bytes(data))
    return EncodedFile(str(out), len(data), read_header(data).size, bits)


def decode_file(data_path: str | Path, out: str | Path, *, estimator: BitEstimator | str | None = None) -> tuple[int, int, int]:
    """Restore the image of a file written by :func:`encode_file` into a PNG ``out`` (bit for bit), atomically; (C, H, W).

    ``out`` must end in ``.png`` and not be a folder; errors name ``decode``, ``out`` or ``estimator``.
    """
    from PIL import Image

    path = Path(data_path)
    if not path.is_file():
        raise ValueError(f"decode: {str(path)!r} is not a file")
    out = check_out_file(out, ".png", "restored.png")  # before decoding: it writes PNG bytes, and not into a folder
    try:
        image = decode(path.read_bytes(), estimator)  # uint8 (C, H, W)
    except ValueError as err:  # a damaged file: the codec names its bytes ``data``, the caller gave ``decode``
        message = str(err)
        raise ValueError(f"decode: {message.removeprefix('data: ')}" if message.startswith("data: ") else message) from None
    array = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()
    atomic_write(out, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))
    return tuple(image.shape)
