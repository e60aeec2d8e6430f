"""Which information a factorised simplification kept: :func:`information_profile`.

Pure functions of a :class:`~simplebits_audit.simplification.SimplificationResult` made by the
factorised engine (``parameterization="factorised"``, which sets ``result.axis_masks``).
"""

from __future__ import annotations

import math

import torch

from ..codecs import codec_bits
from ..estimators import BitEstimator, resolve_estimator
from ..simplification import SimplificationResult
from ..simplification.common import round_8bit
from ..simplification.factorised import AXES, compose, has_colour, region_reference

__all__ = ["axis_removed_images", "information_profile"]


def _check(result: SimplificationResult) -> None:
    if not isinstance(result, SimplificationResult) or result.axis_masks is None:
        raise ValueError("result: an information profile needs a factorised simplification (parameterization='factorised'), "
                         f"got parameterization={getattr(result, 'settings', {}).get('parameterization')!r}")


def axis_removed_images(result: SimplificationResult) -> dict[str, torch.Tensor]:
    """For each axis, the 8-bit original with only that axis's removal applied (B, C, H, W) in [0, 1].

    The other axes' masks are ones, so the image differs from the original only by what that axis
    gave up. An axis the images do not have (colour of a 1-channel image) is left out.
    """
    _check(result)
    original = round_8bit(result.original, False)
    ref = region_reference(original, result.settings.get("reference", "mean"))
    ones = torch.ones_like(result.axis_masks["region"])
    out = {}
    for axis in AXES:
        if axis == "colour" and not has_colour(original):
            continue
        masks = {a: ones for a in AXES} | {axis: result.axis_masks[axis]}
        image = compose(
            original, masks, reference=ref, blur_sigma=result.settings["blur_sigma"], order=tuple(result.settings["composition"])
        )
        out[axis] = round_8bit(image, False)
    return out


@torch.no_grad()
def information_profile(
    result: SimplificationResult, estimator: BitEstimator | None = None, *, region: torch.Tensor | None = None,
    codec: str | None = "webp",
) -> dict[str, dict[str, torch.Tensor]]:
    """Per image and axis: the bits each axis removed and the share of its information kept inside the region.

    Parameters
    ----------
    result : SimplificationResult
        A factorised simplification (``result.axis_masks`` set); anything else is a ``ValueError``
        naming ``result``.
    estimator : BitEstimator, optional
        Rates the images for ``"bits_removed"``; without one that entry is left out.
    region : Tensor (B, 1, H, W), optional
        Where to read the shares (bool or [0, 1], > 0.5 counts), e.g. a testbed's ground-truth
        object mask. Default: the whole image.
    codec : str or None
        Lossless codec for ``"codec_bits_removed"`` (:func:`~simplebits_audit.codecs.codec_bits`);
        ``None`` skips it (it is the slow part).

    Returns
    -------
    dict
        ``{axis: {"kept_inside": (B,), "bits_removed": (B,), "codec_bits_removed": (B,)}}`` for each
        axis in :data:`~simplebits_audit.simplification.factorised.AXES`. ``kept_inside`` in [0, 1]:
        for ``"region"``, the mean of the region mask inside ``region`` (the share of it the model
        needed); for ``"colour"`` and ``"detail"``, the share of that information kept *where the
        region was kept*: the axis mask averaged inside ``region`` weighted by the region mask
        (a removed region keeps no colour or detail whatever its axis masks say; NaN where the
        region mask is zero throughout). Bits removed: bits of the original minus bits of the original
        with only that axis's removal applied (:func:`axis_removed_images`); positive = removed.
        An axis the images lack (colour of a 1-channel image) has NaN everywhere: n/a, not zero.
    """
    _check(result)
    batch = len(result)
    if region is None:
        inside = torch.ones_like(result.mask)
    else:
        if not isinstance(region, torch.Tensor) or region.shape != result.mask.shape:
            raise ValueError(
                f"region: expected a tensor of shape {tuple(result.mask.shape)}, got {getattr(region, 'shape', type(region).__name__)}"
            )
        inside = (region.float() > 0.5).to(result.mask)
    kept_region = result.axis_masks["region"]
    removed = axis_removed_images(result)
    original = round_8bit(result.original, False)
    if estimator is not None:  # rated where the images are, as every other metric does (the caller's object never moves)
        estimator = resolve_estimator(estimator, device=original.device)
    nan = torch.full((batch,), math.nan)
    bits_before = estimator.bits(original).cpu() if estimator is not None else None
    codec_before = codec_bits(original, codec).float() if codec is not None else None
    profile: dict[str, dict[str, torch.Tensor]] = {}
    for axis in AXES:
        entry: dict[str, torch.Tensor] = {}
        if axis not in removed:
            entry["kept_inside"] = nan.clone()
            if estimator is not None:
                entry["bits_removed"] = nan.clone()
            if codec is not None:
                entry["codec_bits_removed"] = nan.clone()
            profile[axis] = entry
            continue
        weight = inside if axis == "region" else inside * kept_region
        total = weight.flatten(1).sum(1)
        share = (result.axis_masks[axis] * weight).flatten(1).sum(1) / total.clamp_min(1e-12)
        entry["kept_inside"] = torch.where(total > 1e-6, share, torch.full_like(share, math.nan)).cpu()
        if estimator is not None:
            entry["bits_removed"] = bits_before - estimator.bits(removed[axis]).cpu()
        if codec is not None:
            entry["codec_bits_removed"] = codec_before - codec_bits(removed[axis], codec).float()
        profile[axis] = entry
    return profile
