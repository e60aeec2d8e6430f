"""Real-codec sizes, the outside check on any bit estimator, and the estimator as a codec.

A learned estimator can be fooled into rating an image cheap that a real codec finds expensive;
comparing against PNG, WebP lossless and JPEG-XL lossless exposes that (SPEC section 6).

JPEG-XL comes from ``imagecodecs`` (``jpegxl_encode(..., lossless=True, effort=...)``, the
reference libjxl inside the wheel) rather than ``pillow-jxl-plugin``: both install from PyPI with
pip on Python 3.11 (manylinux wheels) and round-trip 1- and 3-channel uint8 images of odd sizes
(17x23, 1x1, 5x1) bit-exactly, but imagecodecs works on numpy arrays directly instead of
registering a Pillow plugin process-wide on import, takes libjxl's ``effort`` and thread count as
plain arguments (one thread here, so sizes do not depend on the machine's core count), and is a
long-maintained collection of codec bindings.

Effort: :data:`JXL_EFFORT` (7, libjxl's own default) for reports, 9 for benchmarks. Measured on 32
held-out photo crops, one thread (2-core CPU), encode time per image and bpd::

    size   effort 5          effort 7          effort 9          WebP lossless (method 4)
    32     3.1 ms  3.434     4.4 ms  3.405     13 ms   3.358     4.4 ms
    64     8.3 ms  3.192     12 ms   3.165     47 ms   3.132     13 ms
    128    28 ms   3.073     35 ms   3.039     93 ms   3.041     51 ms
    224    50 ms   2.788     95 ms   2.740     418 ms  2.746     207 ms

Effort 7 is within 1.4 % of effort 9 and no slower than WebP, so it can sit next to WebP in every
report; effort 9 costs 3-4x more for at most 1.4 %.

:func:`encode` and :func:`decode` turn a bit estimator into a real lossless codec (its own
per-pixel probabilities driving an ANS entropy coder, see :mod:`simplebits_audit.entropy_coding`):
the file is a 24-26 byte header plus the estimator's ``bits(x)`` plus 33-64 bits of coder state
and word rounding, give or take the coder's 24-bit quantisation of the probabilities (about 1e-4
of the bits, either way: +65 bits on a flat 256 x 256 image, -105 on a random two-level 512 x 512
one), and decodes bit for bit (``benchmarks/codec.py``).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from PIL import Image

#: codecs :func:`codec_bits` knows
CODECS = ("webp", "png", "jxl")
#: JPEG-XL effort used when none is given (libjxl's default; benchmarks use 9)
JXL_EFFORT = 7


def to_uint8_images(x: torch.Tensor) -> list[np.ndarray]:
    """Pixel images (B, C, H, W) in [0, 1] as a list of uint8 arrays (H, W) or (H, W, 3)."""
    arr = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return [a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0) for a in arr]


def jxl_encode(img: np.ndarray, effort: int = JXL_EFFORT) -> bytes:
    """JPEG-XL lossless file of a uint8 image (H, W) or (H, W, 3) (one thread: same bytes everywhere)."""
    imagecodecs = _require_imagecodecs()
    return bytes(imagecodecs.jpegxl_encode(np.ascontiguousarray(img), lossless=True, effort=effort, numthreads=1))


def jxl_decode(data: bytes) -> np.ndarray:
    """The uint8 image (H, W) or (H, W, 3) of a JPEG-XL file."""
    return np.asarray(_require_imagecodecs().jpegxl_decode(data))


def codec_bits(x: torch.Tensor, codec: str = "webp", *, effort: int | None = None) -> torch.Tensor:
    """File size in bits of each image compressed losslessly, shape (B,).

    Parameters
    ----------
    x : Tensor, shape (B, C, H, W)
        Pixel images in [0, 1] (rounded to 8 bits).
    codec : {"webp", "png", "jxl"}
        WebP lossless (method 4, quality 100), PNG (optimize=True) or JPEG-XL lossless (imagecodecs
        / libjxl). WebP method 4 rather than 6: on 32 x 32 testbed images, simplified images and
        128 x 128 photos it was 25-30x faster and its files were 0.3-1.3 % *smaller* on average
        (method 6 at quality 100 took 1.9 s per 128 x 128 photo, which made WebP the slowest step
        of an audit).
    effort : int, optional
        JPEG-XL effort 1-10 (default :data:`JXL_EFFORT`; 9 for benchmarks). Only for ``"jxl"``.
    """
    if codec not in CODECS:
        raise ValueError(f"codec: expected one of {list(CODECS)}, got {codec!r}")
    if effort is not None:
        if codec != "jxl":
            raise ValueError(f"effort: only the 'jxl' codec takes an effort, got effort={effort!r} with codec={codec!r}")
        if isinstance(effort, bool) or not isinstance(effort, int) or not 1 <= effort <= 10:
            raise ValueError(f"effort: expected an integer from 1 to 10, got {effort!r}")
    sizes = []
    for img in to_uint8_images(x):
        if codec == "jxl":
            sizes.append(8 * len(jxl_encode(img, JXL_EFFORT if effort is None else effort)))
            continue
        buf = io.BytesIO()
        if codec == "webp":
            Image.fromarray(img).save(buf, format="WEBP", lossless=True, quality=100, method=4)
        else:
            Image.fromarray(img).save(buf, format="PNG", optimize=True)
        sizes.append(8 * buf.tell())
    return torch.tensor(sizes, dtype=torch.float64)


def codec_bpd(x: torch.Tensor, codec: str = "webp", *, effort: int | None = None) -> torch.Tensor:
    """Bits per dimension of the lossless file, shape (B,)."""
    return codec_bits(x, codec, effort=effort) / float(np.prod(x.shape[1:]))


# -- the estimator as a codec ----------------------------------------------------------------------
def encode(pixels: torch.Tensor | np.ndarray, estimator: Any = None) -> bytes:
    """Compress one image losslessly with a bit estimator's own probabilities.

    Parameters
    ----------
    pixels : Tensor or ndarray, shape (C, H, W), C = 1 or 3
        uint8 values, or floats in [0, 1] (rounded to 8 bits as :func:`to_uint8_images` does).
    estimator : BitEstimator or str, optional
        The estimator (default: the default estimator) or its registry name. Only estimators with
        an exact causal coding model can code (at present ``"analytic"``); others raise
        ``ValueError``.

    Returns
    -------
    bytes
        A small header (format version, estimator name, a CRC of its coding parameters, shape, a
        CRC of the pixels) followed by the ANS payload, whose size is the estimator's
        ``bits(pixels)`` up to float and 24-bit quantisation round-off plus at most 64 bits.
    """
    from . import entropy_coding

    img = _as_uint8_chw(pixels)
    return _encode(img, entropy_coding.coding_model(_resolve_estimator(estimator)))


def _encode(img: np.ndarray, model: Any) -> bytes:
    from . import entropy_coding

    return entropy_coding.pack(model.name, model.config, img, model.encode(img))


def decode(data: bytes, estimator: Any = None) -> torch.Tensor:
    """Restore the image of :func:`encode`, bit for bit: uint8 tensor (C, H, W).

    ``estimator`` defaults to the one named in the file; a given one must match that name and the
    coding parameters the file was written with. The decoded pixels are checked against the CRC
    stored in the header.
    """
    from . import entropy_coding

    header = entropy_coding.read_header(data)
    if estimator is None:
        from .estimators import list_estimators

        if header.estimator not in list_estimators():
            raise ValueError(f"data: written by estimator {header.estimator!r}, which is not available here ({list_estimators()})")
    est = _resolve_estimator(header.estimator if estimator is None else estimator)
    model = entropy_coding.coding_model(est)
    if model.name != header.estimator or model.config != header.config:
        raise ValueError(
            f"estimator: the file was written by {header.estimator!r} with coding parameters {header.config:#010x}; "
            f"got {model.name!r} with {model.config:#010x}"
        )
    words = entropy_coding.payload_words(data, header)
    try:
        img = model.decode(words, header.channels, header.height, header.width)
    except ValueError as err:
        raise ValueError(f"data: corrupt compressed stream ({err})") from None
    if entropy_coding.zlib.crc32(img.tobytes()) != header.checksum:
        raise ValueError("data: the decoded pixels do not match the checksum in the header (corrupt file)")
    return torch.from_numpy(img)


def encoded_bits(x: torch.Tensor, estimator: Any = None) -> torch.Tensor:
    """Size in bits of the :func:`encode` file of each image of a batch (B, C, H, W), shape (B,)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a tensor of shape (B, C, H, W); got {getattr(x, 'shape', type(x).__name__)}")
    from . import entropy_coding

    # one coding model for the batch: it caches its per-scale tables
    model = entropy_coding.coding_model(_resolve_estimator(estimator))
    return torch.tensor([8.0 * len(_encode(_as_uint8_chw(img), model)) for img in x], dtype=torch.float64)


def read_header(data: bytes) -> Any:
    """The header of an :func:`encode` file (estimator, shape, header size in bytes, ...)."""
    from . import entropy_coding

    return entropy_coding.read_header(data)


def _resolve_estimator(estimator: Any) -> Any:
    from .estimators import resolve_estimator

    return resolve_estimator(estimator)


def _as_uint8_chw(pixels: Any) -> np.ndarray:
    """uint8 (C, H, W) numpy array from a tensor or array (uint8, or float in [0, 1])."""
    if isinstance(pixels, torch.Tensor):
        arr = pixels.detach().cpu()
        arr = arr.numpy() if arr.dtype != torch.bfloat16 else arr.float().numpy()
    elif isinstance(pixels, np.ndarray):
        arr = pixels
    else:
        raise TypeError(f"pixels must be a torch.Tensor or numpy array of shape (C, H, W), got {type(pixels).__name__}")
    if arr.ndim != 3:
        hint = " (one image, not a batch: pass x[0])" if arr.ndim == 4 else ""
        raise ValueError(f"pixels must have shape (C, H, W){hint}; got shape {tuple(arr.shape)}")
    if arr.shape[0] not in (1, 3):
        raise ValueError(f"pixels must have 1 or 3 channels (C, H, W); got shape {tuple(arr.shape)}")
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"pixels is empty: shape {tuple(arr.shape)}")
    if max(arr.shape[1:]) > 1 << 16:
        raise ValueError(f"pixels: height and width must be at most 65536; got shape {tuple(arr.shape)}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"pixels must be uint8 or floating point in [0, 1]; got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("pixels contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"pixels: float images must hold values in [0, 1]; got range [{lo:.4g}, {hi:.4g}]")
    return (torch.from_numpy(arr).clamp(0, 1) * 255).round().to(torch.uint8).numpy()  # as to_uint8_images


def _require_imagecodecs() -> Any:
    try:
        import imagecodecs
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError("JPEG-XL sizes need the 'imagecodecs' package: pip install imagecodecs") from err
    return imagecodecs
