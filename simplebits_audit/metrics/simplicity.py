"""Simplicity: bits removed under the estimator, checked against real codecs (SPEC sections 5 and 6)."""

from __future__ import annotations

import torch

from ..codecs import codec_bpd
from ..estimators import BitEstimator, resolve_estimator

#: the lossless codecs :func:`codec_check` reports by default (JPEG-XL: the strongest classic codec, issue 24)
CODECS = ("png", "webp", "jxl")


def _round(x: torch.Tensor) -> torch.Tensor:
    return (x.detach().clamp(0, 1) * 255).round() / 255


@torch.no_grad()
def bits_removed(original: torch.Tensor, simplified: torch.Tensor, estimator: BitEstimator | str | None = None) -> torch.Tensor:
    """Bits per dimension removed by simplification under the estimator, (B,).

    Both pixel batches (B, C, H, W) in [0, 1] are rounded to 8 bits first; positive = simpler.
    """
    if original.shape != simplified.shape:
        raise ValueError(f"simplified: expected shape {tuple(original.shape)} like original, got {tuple(simplified.shape)}")
    estimator = resolve_estimator(estimator, device=original.device)
    return estimator.bpd(_round(original)) - estimator.bpd(_round(simplified))


def codec_check(original: torch.Tensor, simplified: torch.Tensor, codecs: tuple[str, ...] = CODECS) -> dict[str, torch.Tensor]:
    """Lossless PNG / WebP / JPEG-XL bits per dimension before and after, each (B,).

    Returns
    -------
    dict
        ``{"png_bpd_before", "png_bpd_after", "webp_bpd_before", "webp_bpd_after", "jxl_bpd_before",
        "jxl_bpd_after"}`` (for the requested ``codecs``; JPEG-XL at
        :data:`~simplebits_audit.codecs.JXL_EFFORT`). An estimator that was fooled shows as bpd_after >= bpd_before here.
    """
    if original.shape != simplified.shape:
        raise ValueError(f"simplified: expected shape {tuple(original.shape)} like original, got {tuple(simplified.shape)}")
    out: dict[str, torch.Tensor] = {}
    for codec in codecs:
        out[f"{codec}_bpd_before"] = codec_bpd(original, codec)
        out[f"{codec}_bpd_after"] = codec_bpd(simplified, codec)
    return out
