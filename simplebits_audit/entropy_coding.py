"""The bit estimator as a real lossless codec: its own per-pixel probabilities drive an entropy coder.

``bits(x)`` of an estimator is the sum of ``-log2 p`` over the discrete probabilities the model
assigns to each 8-bit value. Feeding exactly those probabilities to an entropy coder gives a file
whose size is ``bits(x)`` plus a few bytes, and decoding it returns the image bit for bit: the
reported bits become a file size anyone can check (issue #24).

Coder: ANS (``constriction.stream.stack.AnsCoder``, 32-bit words, 24-bit probability precision)
with a per-symbol categorical model over the 256 values (``Categorical(perfect=False)``, the
documented fast quantisation; every value keeps a nonzero probability).

The analytic estimator (:class:`~simplebits_audit.estimators.analytic.AnalyticCoder`) as a coding
model
-------------------------------------------------------------------------------------------------
Planes G, R - G, B - G (grayscale: one plane); each symbol is the pixel's own 8-bit value
(G, R or B), whose model is the estimator's discretised Laplace with

- mean ``mu = pred + offset``: ``pred`` the median-edge prediction of the plane from its causal
  neighbours (W, N, NW, the estimator's first-row/first-column rules, ``start`` at the corner) and
  ``offset`` the pixel's G for the R and B planes (the estimator's range [-g, 255 - g] for R - G is
  exactly R in [0, 255]), 0 otherwise;
- scale ``b = max(gain * (S + prior_weight * prior_scale) / (k + prior_weight), min_scale)``, where
  ``S`` is the sum of the absolute residuals of the in-image neighbours W, N, NW, NE of the same
  plane and ``k`` their number;
- the edge values 0 and 255 collecting the tails, as in the estimator;
- mixed with a uniform over the 256 values: ``p = (1 - w) p_Laplace + w / 256``.

Every context value (``mu``, ``S``, ``k``) is an integer, so the decoder recomputes it exactly.
The only real numbers are the Laplace tail masses ``0.5 exp(-(m + 1/2) / b)``; they are computed in
float64 with a fixed exponential built from IEEE additions, multiplications, ``floor`` and
``ldexp`` only (no platform ``exp``/``pow``, whose last bit differs between libm builds), so an
encoder and a decoder on different machines build the same tables, and constriction's quantisation
of identical float inputs is identical.

One symbol per value: the estimator mixes each Laplace with a uniform part (weight ``w``, 2^-10 by
default), so every value's probability is at least ``w / 256`` (2^-18), above the coder's 24-bit
precision, and the quantised model codes it at its own ``-log2 p`` to a small fraction of a bit.
(Before the uniform part, a jump into a flat region cost hundreds of bits, below that precision,
and format version 1 coded it as a chain of escape events.) The payload is the estimator's
``bits(x)`` plus the ANS coder's final state and word rounding (33-64 bits), give or take the
quantisation's round-off, which grows with the number of symbols (about 1e-4 of the bits, either
sign: +65 bits on a flat 256 x 256 RGB image, -105 on a random two-level 512 x 512 one).

Decoding order: the model's context (W, N, NW, NE) is causal in raster order, so all pixels on a
"wavefront" ``2 y + x = t`` are independent given the earlier fronts; the decoder handles one front
per step, vectorised (G first, then R and B, which need the pixel's G). A 32x32 RGB image takes 94 steps, a 128x128
one 382.

File layout (format version 2; all integers little-endian)::

    b"SBc" version:u8 | name_len:u8 name:ascii | config:u32 (CRC-32 of the coding parameters)
    | channels:u8 height:uleb128 width:uleb128 | pixels:u32 (CRC-32 of the decoded uint8 C,H,W
    bytes) | ANS words:u32 ...
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

MAGIC = b"SBc"
#: bump when the bitstream or the coding model changes; old files are refused with a clear message
FORMAT_VERSION = 2
#: largest height or width the format takes (a corrupt header cannot ask for a huge allocation)
MAX_SIDE = 1 << 16
#: symbols handed to the ANS coder per call when encoding (bounds the encoder's memory)
_ENCODE_CHUNK = 8192
#: initial ANS state 2^32 (words low, high). constriction's coder starts empty (state 0), where a
#: symbol at the start of a row's cumulative table costs nothing: the last values of an image
#: ending in black would be coded for free, below their bits. From 2^32 every symbol costs its
#: -log2 p (to the 24-bit quantisation's round-off, about 1e-4 of the bits either way), the file
#: is the bits plus 33-64 bits, and the decoder must end back at 2^32 (a check).
_SENTINEL = np.array([0, 1], dtype=np.uint32)
#: the analytic model's scale key is S * _K + k (k = number of in-image neighbours, 0..4)
_K = 5


def _require_constriction() -> Any:
    try:
        import constriction
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError("the estimator codec needs the 'constriction' package: pip install constriction") from err
    return constriction


# -- a deterministic exponential ------------------------------------------------------------------
_LN2_HI = 6.93147180369123816490e-01  # high bits of ln 2 (trailing zeros: n * _LN2_HI is exact)
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_EXP_COEFFS = tuple(1.0 / math.factorial(i) for i in range(14))  # Taylor series, |r| <= ln2 / 2


def det_exp(z: np.ndarray) -> np.ndarray:
    """``exp(z)`` for float64 ``z <= 0``, bit-identical on every IEEE-754 machine.

    Cody-Waite range reduction, a degree-13 Taylor polynomial (error below 1e-17 relative) and
    ``ldexp``; only correctly rounded operations, unlike libm's ``exp``. Arguments below -700 are
    clamped (results stay normal numbers; such masses are far below the coder's precision).
    """
    z = np.maximum(np.asarray(z, dtype=np.float64), -700.0)
    n = np.floor(z * _INV_LN2 + 0.5)
    r = (z - n * _LN2_HI) - n * _LN2_LO
    p = np.full_like(r, _EXP_COEFFS[-1])
    for c in _EXP_COEFFS[-2::-1]:
        p = p * r + c
    return np.ldexp(p, n.astype(np.int32))


# -- the analytic estimator's model in integer contexts ----------------------------------------------
def _med(west: np.ndarray, north: np.ndarray, northwest: np.ndarray, ys: np.ndarray, xs: np.ndarray, start: int) -> np.ndarray:
    """Median-edge prediction with the estimator's border rules (see ``analytic.med_predict``)."""
    row0, col0 = ys == 0, xs == 0
    north = np.where(row0, west, north)
    northwest = np.where(row0, west, northwest)
    west = np.where(col0, north, west)
    northwest = np.where(col0, north, northwest)
    lo, hi = np.minimum(west, north), np.maximum(west, north)
    pred = np.where(northwest >= hi, lo, np.where(northwest <= lo, hi, west + north - northwest))
    return np.where(row0 & col0, start, pred)


# One symbol per value. The estimator mixes each value's Laplace mass with a uniform part of weight
# w >= _MIN_UNIFORM (p = (1 - w) p_Laplace + w / 256), so every probability is at least 2^-22, above
# the coder's 24-bit precision: the quantised model then codes each value at its own -log2 p to a
# small fraction of a bit, with no escape chains.
#: the smallest uniform weight the codec takes (w / 256 = 2^-22: well above 2^-24)
_MIN_UNIFORM = 2.0**-14
#: +- infinity for the end cuts
_BIG = 1 << 30
#: cuts between the values' preimages under clamp(X, 0, 255): value v holds _CUTS[v] <= X < _CUTS[v + 1]
_CUTS = np.concatenate([[-_BIG], np.arange(1, 256), [_BIG]]).astype(np.int64)
#: exp(-n / (2 b)) for n = 0 .. _N - 1: tail masses G[m] = 0.5 exp(-(m + 1/2) / b) = 0.5 H[2m + 1],
#: m <= 510 (every |cut - mean| of a plane is at most 509: means lie in [-255, 510], cuts in [1, 255])
_N = 1023
_MAX_TWICE = _N - 2


class AnalyticCodingModel:
    """Per-symbol probabilities of :class:`AnalyticCoder`, rebuilt exactly from decoded pixels."""

    name = "analytic"

    def __init__(self, estimator: Any) -> None:
        self.prior_scale = float(estimator.prior_scale)
        self.prior_weight = float(estimator.prior_weight)
        self.scale_gain = float(estimator.scale_gain)
        self.min_scale = float(estimator.min_scale)
        self.uniform_weight = float(estimator.uniform_weight)
        if not (self.prior_weight > 0 and self.min_scale > 0 and self.scale_gain >= 0 and self.prior_scale >= 0):
            raise ValueError(
                "estimator: the analytic coder needs prior_weight > 0, min_scale > 0, scale_gain >= 0 and prior_scale >= 0 to be "
                f"used as a codec; got prior_weight={self.prior_weight}, min_scale={self.min_scale}, "
                f"scale_gain={self.scale_gain}, prior_scale={self.prior_scale}"
            )
        if not _MIN_UNIFORM <= self.uniform_weight < 1:
            raise ValueError(
                f"estimator: the analytic coder needs uniform_weight >= 2^-14 to be used as a codec (every value's probability "
                f"above the coder's precision); got uniform_weight={self.uniform_weight}"
            )
        self._cache: dict[int, np.ndarray] = {}

    @property
    def config(self) -> int:
        """CRC-32 of the coding parameters: a file only decodes with the same ones."""
        text = (f"analytic:{self.prior_scale!r}:{self.prior_weight!r}:{self.scale_gain!r}:{self.min_scale!r}"
                f":{self.uniform_weight!r}")
        return zlib.crc32(text.encode())

    # -- contexts ------------------------------------------------------------------------------------
    @staticmethod
    def planes(img: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Integer planes (C, H, W) (G, R - G, B - G or the gray plane) and each plane's start."""
        v = img.astype(np.int64)
        if v.shape[0] == 3:
            r, g, b = v
            return np.stack([g, r - g, b - g]), [128, 0, 0]
        return v, [128]

    @staticmethod
    def _context(pp: np.ndarray, ap: np.ndarray, ys: np.ndarray, xs: np.ndarray, width: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Prediction and scale key of the pixels (ys, xs) of one plane.

        ``pp`` and ``ap`` are the plane and its absolute residuals, zero-padded by one row on top and
        one column on each side (only already coded pixels are read).
        """
        y1, x1 = ys + 1, xs + 1
        pred = _med(pp[y1, xs], pp[ys, x1], pp[ys, xs], ys, xs, start)
        s = ap[y1, xs] + ap[ys, x1] + ap[ys, xs] + ap[ys, xs + 2]
        above = ys > 0
        k = (xs > 0).astype(np.int64) + above + (above & (xs > 0)) + (above & (xs < width - 1))
        return pred, s.astype(np.int64) * _K + k

    def contexts(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Symbols, means and scale keys, each (C, H, W) in plane order (G, R, B), for a uint8 image (C, H, W)."""
        planes, starts = self.planes(img)
        c, h, w = planes.shape
        ys, xs = (a.ravel() for a in np.indices((h, w)))
        mu = np.empty((c, h, w), dtype=np.int64)
        keys = np.empty((c, h, w), dtype=np.int64)
        for i in range(c):
            pp = np.zeros((h + 1, w + 2), dtype=np.int64)
            pp[1:, 1:-1] = planes[i]
            pred = _med(pp[ys + 1, xs], pp[ys, xs + 1], pp[ys, xs], ys, xs, starts[i]).reshape(h, w)
            ap = np.zeros_like(pp)
            ap[1:, 1:-1] = np.abs(planes[i] - pred)
            _, key = self._context(pp, ap, ys, xs, w, starts[i])
            offset = planes[0] if (c == 3 and i > 0) else 0
            mu[i] = pred + offset
            keys[i] = key.reshape(h, w)
        return _plane_order(img).astype(np.int64), mu, keys

    # -- per-symbol distributions ------------------------------------------------------------------------
    def _tables(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """H of each distinct scale key (unique keys, _N) and the row -> table index."""
        unique, inverse = np.unique(keys, return_inverse=True)
        missing = [k for k in unique.tolist() if k not in self._cache]
        if missing:
            key = np.asarray(missing, dtype=np.int64)
            s, k = (key // _K).astype(np.float64), (key % _K).astype(np.float64)
            local = (s + self.prior_weight * self.prior_scale) / (k + self.prior_weight)
            scale = np.maximum(self.scale_gain * local, self.min_scale)
            table = det_exp(-np.arange(_N, dtype=np.float64)[None, :] / (scale[:, None] + scale[:, None]))
            for i, kk in enumerate(missing):
                self._cache[kk] = table[i]
        table = np.stack([self._cache[k] for k in unique.tolist()]) if len(unique) else np.empty((0, _N))
        return table, inverse.reshape(-1)

    def rows(self, mu: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """(n, 256) probabilities of the values 0..255 of n symbols with means ``mu`` and scale ``keys``."""
        table, inv = self._tables(keys)
        # P(X < cut) = G[mu - cut] = 0.5 H[2 (mu - cut) + 1] at or left of the mean, else
        # 1 - P(X >= cut) = 1 - G[cut - mu - 1]: both read H at |2 (cut - mu) - 1|
        twice = 2 * (_CUTS[None, :] - mu[:, None]) - 1
        half = 0.5 * np.take(table, (inv * _N)[:, None] + np.minimum(np.abs(twice), _MAX_TWICE))
        cdf = np.where(twice < 0, half, 1.0 - half)
        cdf[:, 0], cdf[:, -1] = 0.0, 1.0  # the edge values hold the tails
        laplace = np.maximum(np.diff(cdf, axis=1), 0.0)
        w = self.uniform_weight
        return (1 - w) * laplace + w / 256

    def code_length(self, img: np.ndarray) -> float:
        """Ideal code length in bits (before the coder's 24-bit quantisation)."""
        sym, mu, keys = (a.reshape(-1) for a in self.contexts(img))
        total = 0.0
        for lo in range(0, len(sym), _ENCODE_CHUNK):
            part = slice(lo, lo + _ENCODE_CHUNK)
            rows = self.rows(mu[part], keys[part])
            total += float(-np.log2(rows[np.arange(len(rows)), sym[part]] / rows.sum(1)).sum())
        return total

    # -- coding --------------------------------------------------------------------------------------
    def encode(self, img: np.ndarray) -> np.ndarray:
        """ANS words (uint32) for a uint8 image (C, H, W), in the decoder's order of symbols."""
        constriction = _require_constriction()
        sym, mu, keys = self.contexts(img)
        order = _wavefront_order(*img.shape)
        sym, mu, keys = (a.reshape(-1)[order] for a in (sym, mu, keys))
        family = constriction.stream.model.Categorical(perfect=False)
        coder = constriction.stream.stack.AnsCoder(_SENTINEL)
        for lo in reversed(range(0, len(sym), _ENCODE_CHUNK)):  # a stack: the last chunk goes in first
            part = slice(lo, lo + _ENCODE_CHUNK)
            coder.encode_reverse(sym[part].astype(np.int32), family, self.rows(mu[part], keys[part]))
        return coder.get_compressed()

    def _decode_group(self, coder: Any, family: Any, mu: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Decode one group of symbols (the values, int64)."""
        return coder.decode(family, self.rows(mu, keys)).astype(np.int64)

    def decode(self, words: np.ndarray, channels: int, height: int, width: int) -> np.ndarray:
        """The uint8 image (C, H, W) from ANS words, one wavefront at a time."""
        constriction = _require_constriction()
        family = constriction.stream.model.Categorical(perfect=False)
        coder = constriction.stream.stack.AnsCoder(words)
        h, w = height, width
        starts = [128, 0, 0] if channels == 3 else [128]
        pp = np.zeros((channels, h + 1, w + 2), dtype=np.int64)  # planes, padded
        ap = np.zeros_like(pp)  # absolute residuals, padded
        out = np.zeros((channels, h, w), dtype=np.int64)  # symbols in plane order (G, R, B)
        for t in range(2 * (h - 1) + w):
            ys = np.arange(max(0, (t - w + 2) // 2), min(h - 1, t // 2) + 1)
            xs = t - 2 * ys
            pred_g, key_g = self._context(pp[0], ap[0], ys, xs, w, starts[0])
            g = self._decode_group(coder, family, pred_g, key_g)
            out[0, ys, xs] = g
            pp[0, ys + 1, xs + 1] = g
            ap[0, ys + 1, xs + 1] = np.abs(g - pred_g)
            if channels == 3:
                ctx = [self._context(pp[i], ap[i], ys, xs, w, starts[i]) for i in (1, 2)]
                mu = np.concatenate([ctx[0][0] + g, ctx[1][0] + g])
                vals = self._decode_group(coder, family, mu, np.concatenate([ctx[0][1], ctx[1][1]]))
                for j, i in enumerate((1, 2)):
                    v = vals[j * len(ys) : (j + 1) * len(ys)]
                    out[i, ys, xs] = v
                    pp[i, ys + 1, xs + 1] = v - g
                    ap[i, ys + 1, xs + 1] = np.abs(v - g - ctx[j][0])
        if not np.array_equal(coder.get_compressed(), _SENTINEL):
            raise ValueError("the coder did not end in its initial state after the last pixel")
        return _plane_order(out).astype(np.uint8)  # (G, R, B) back to (R, G, B): the same swap


def _plane_order(img: np.ndarray) -> np.ndarray:
    """Channels in plane order: (R, G, B) -> (G, R, B) (its own inverse); grayscale unchanged."""
    return img[[1, 0, 2]] if img.shape[0] == 3 else img


def _wavefront_order(c: int, h: int, w: int) -> np.ndarray:
    """Flat indices into (C, H, W) in decoding order: fronts 2y + x = t; per front G, then R, then B."""
    ys, xs = np.indices((h, w))
    t = (2 * ys + xs).ravel()
    pix = np.lexsort((ys.ravel(), t))  # by front, then row
    fronts = t[pix]
    bounds = np.flatnonzero(np.diff(fronts)) + 1
    parts = []
    for front in np.split(pix, bounds):
        parts.extend(i * h * w + front for i in range(c))
    return np.concatenate(parts)


#: exact estimator class name -> coding model; subclasses are refused (they may change the model)
CODING_MODELS: dict[str, type] = {"AnalyticCoder": AnalyticCodingModel}


def coding_model(estimator: Any) -> AnalyticCodingModel:
    """The coding model of an estimator instance, or ``ValueError`` naming ``estimator``."""
    cls = type(estimator)
    model = CODING_MODELS.get(cls.__name__)
    from .estimators.analytic import AnalyticCoder

    if model is None or (cls.__name__ == "AnalyticCoder" and cls is not AnalyticCoder):
        name = getattr(estimator, "name", cls.__name__)
        raise ValueError(
            f"estimator: {name!r} ({cls.__name__}) cannot be used as a codec: it has no exact causal per-pixel coding model; "
            f"codable estimators: {sorted(m.name for m in CODING_MODELS.values())}"
        )
    return model(estimator)


# -- file format ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    """What a compressed file says about itself."""

    version: int
    estimator: str
    config: int
    channels: int
    height: int
    width: int
    checksum: int
    #: header length in bytes; the rest of the file is the ANS payload
    size: int


def _uleb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_uleb128(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 56:
            raise ValueError("data: truncated or corrupt header (image size)")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def pack(name: str, config: int, img: np.ndarray, words: np.ndarray) -> bytes:
    """Header + little-endian ANS words."""
    c, h, w = img.shape
    raw = name.encode("ascii")
    head = MAGIC + bytes([FORMAT_VERSION, len(raw)]) + raw + struct.pack("<I", config) + bytes([c]) + _uleb128(h) + _uleb128(w)
    head += struct.pack("<I", zlib.crc32(np.ascontiguousarray(img, dtype=np.uint8).tobytes()))
    return head + np.asarray(words, dtype="<u4").tobytes()


def read_header(data: bytes) -> Header:
    """Parse the header of a file written by :func:`simplebits_audit.codecs.encode`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes (the content of a file written by codecs.encode), got {type(data).__name__}")
    data = bytes(data)
    if data[:3] != MAGIC:
        raise ValueError(f"data: not a simplebits estimator-codec file (starts with {data[:3]!r}, expected {MAGIC!r})")
    if len(data) < 5:
        raise ValueError("data: truncated header")
    version = data[3]
    if version != FORMAT_VERSION:
        raise ValueError(f"data: format version {version} is not supported by this simplebits-audit (reads version {FORMAT_VERSION})")
    n = data[4]
    pos = 5 + n
    if len(data) < pos + 5:
        raise ValueError("data: truncated header")
    try:
        name = data[5:pos].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("data: corrupt header (estimator name)") from None
    (config,) = struct.unpack_from("<I", data, pos)
    channels = data[pos + 4]
    height, p = _read_uleb128(data, pos + 5)
    width, p = _read_uleb128(data, p)
    if len(data) < p + 4:
        raise ValueError("data: truncated header")
    (checksum,) = struct.unpack_from("<I", data, p)
    size = p + 4
    if channels not in (1, 3) or not 1 <= height <= MAX_SIDE or not 1 <= width <= MAX_SIDE:
        raise ValueError(f"data: corrupt header (channels={channels}, height={height}, width={width})")
    if (len(data) - size) % 4:
        raise ValueError(f"data: the payload is {len(data) - size} bytes, not whole 32-bit words (truncated file?)")
    return Header(version, name, config, channels, height, width, checksum, size)


def payload_words(data: bytes, header: Header) -> np.ndarray:
    """The ANS words after the header, as native uint32."""
    return np.frombuffer(bytes(data), dtype="<u4", offset=header.size).astype(np.uint32)
