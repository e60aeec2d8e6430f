"""The factorised engine: simplify colour, fine detail and region separately, and say which the model needed.

The mask engine answers *where* the classifier looks. This engine gives each kind of information
its own smooth mask (a coarse grid of logits, sigmoid, bilinear upsampling: the mask engine's
:class:`~simplebits_audit.simplification.mask.MaskParams`), and removing information on an axis
moves pixels towards a cheaper image:

- ``"colour"``: towards the luminance (ITU-R 601 weights, replicated over the three channels);
- ``"detail"``: towards a Gaussian blur (``blur_sigma`` pixels; removes texture and fine structure);
- ``"region"``: towards the flat reference (``reference``), as the mask engine, but grey: its
  luminance (:func:`region_reference`; a removed region keeps no colour).

The axes are applied one after the other, in :data:`COMPOSITION` order (innermost first)::

    x_c = m_c * x   + (1 - m_c) * luminance(x)
    x_d = m_d * x_c + (1 - m_d) * blur(x_c)
    x'  = m_r * x_d + (1 - m_r) * r

The objective is the mask engine's: ``D_task + lambda * bpd(x')``, the bits charged only while the
prediction holds (the same continuation, keep rule, snapshots and 8-bit rounding), so every axis
gives up what the classifier does not need. Region last means a removed region is the flat
reference whatever the other masks say; ``colour``/``detail`` masks are read where the region mask
kept the original (outside it they describe nothing: :func:`~simplebits_audit.metrics.information.information_profile`
reads them inside the region). An image without three channels has no colour axis: its colour
mask is all ones, and the profile says n/a (NaN).

Result: ``result.mask`` is the region mask (existing consumers work unchanged) and
``result.axis_masks`` maps each axis in :data:`AXES` to its mask (B, 1, H, W) in [0, 1] (1 = that
information kept); the returned image is exactly ``round8(compose(x, axis_masks))``
(:func:`compose`, ``x`` the 8-bit original). The design choices (order, per-axis grid, blur scale,
no per-axis bits weight) were measured on the design split: docs/design-log.md, "Factorised engine".
"""

from __future__ import annotations

import torch

from .._helpers import LUMA, blur, luminance
from .common import RunContext, round_8bit
from .config import SimplifyConfig
from .mask import MaskParams, mask_continuation, reference_image
from .result import SimplificationResult

#: The axes, each a kind of information the engine can remove separately.
AXES = ("colour", "detail", "region")
#: The order the axes are applied in, innermost first (measured: docs/design-log.md).
COMPOSITION = ("colour", "detail", "region")
#: Where the colour and detail masks start (the region starts at ``mask_init``; measured: docs/design-log.md).
AXIS_INIT = 0.4
#: ITU-R BT.601 luma weights (what PIL's ``convert("L")`` uses).

__all__ = ["AXES", "COMPOSITION", "LUMA", "compose", "factorised_engine", "has_colour", "kept_axis_maps", "region_reference", "remove"]


def has_colour(pixels: torch.Tensor) -> bool:
    """Whether images (B, C, H, W) have a colour axis (three channels)."""
    return pixels.shape[1] == 3


def remove(x: torch.Tensor, axis: str, *, reference: torch.Tensor, blur_sigma: float) -> torch.Tensor:
    """``x`` (B, C, H, W) with all of ``axis``'s information removed: luminance, blur or the reference.

    Differentiable in ``x``. ``"colour"`` needs three channels (``ValueError`` naming ``axis`` otherwise).
    """
    if axis == "colour":
        if not has_colour(x):
            raise ValueError(f"axis: 'colour' needs 3-channel images, got {x.shape[1]} channel(s)")
        return luminance(x).unsqueeze(1).expand_as(x)
    if axis == "detail":
        return blur(x, blur_sigma)
    if axis == "region":
        return reference.expand_as(x)
    raise ValueError(f"axis: expected one of {AXES}, got {axis!r}")


def compose(
    pixels: torch.Tensor, axis_masks: dict[str, torch.Tensor], *, reference: torch.Tensor, blur_sigma: float,
    order: tuple[str, ...] | None = None,
) -> torch.Tensor:
    """The image the axis masks describe (not rounded): each axis in ``order`` blends towards its removal.

    ``pixels`` (B, C, H, W) in [0, 1]; ``axis_masks`` maps each of :data:`AXES` to (B, 1, H, W) in
    [0, 1] (1 = keep); ``reference`` the region axis's simple image (B, C, H, W). The colour axis
    is skipped for images without three channels (its mask is all ones there). ``order``: innermost
    first, default :data:`COMPOSITION` (a result records its own in ``settings["composition"]``).
    ``round_8bit(compose(...), False)`` equals the factorised engine's returned image.
    """
    x = pixels
    for axis in COMPOSITION if order is None else order:
        if axis == "colour" and not has_colour(pixels):
            continue
        m = axis_masks[axis]
        x = m * x + (1 - m) * remove(x, axis, reference=reference, blur_sigma=blur_sigma)
    return x


def kept_axis_maps(axis_masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the returned image kept of each kind of information, from the factorised engine's masks (each (..., H, W) in [0, 1]).

    ``region`` as it is; ``colour`` and ``detail`` times the region mask (a removed region keeps
    neither): the maps of ``SimpleBits.attribute(..., attribution="colour"|"detail"|"region")``.
    """
    region = axis_masks["region"]
    return {axis: mask if axis == "region" else mask * region for axis, mask in axis_masks.items()}


def region_reference(pixels: torch.Tensor, kind: str = "mean") -> torch.Tensor:
    """The region axis's simple image, 8-bit (B, C, H, W): the mask engine's reference without its colour.

    :func:`~simplebits_audit.simplification.mask.reference_image` of ``kind``, turned to its
    luminance for 3-channel images: a removed region keeps no colour, so the colour the model needs
    can only come through the colour axis (the mean colour of an image would otherwise leak the hue
    of a large coloured object: measured, docs/design-log.md).
    """
    ref = reference_image(pixels, kind)
    return round_8bit(remove(ref, "colour", reference=ref, blur_sigma=0.0), False) if has_colour(pixels) else ref


class _AxisParams:
    """One :class:`MaskParams` grid per optimised axis (the colour axis is fixed at ones without colour):
    a :class:`~simplebits_audit.simplification.mask.MaskParameterisation` whose masks are a dict over :data:`AXES`."""

    def __init__(self, pixels: torch.Tensor, reference: torch.Tensor, config: SimplifyConfig, order: tuple[str, ...]) -> None:
        self.pixels, self.reference, self.blur_sigma, self.order = pixels, reference, config.blur_sigma, order
        self.axes = [a for a in AXES if a != "colour" or has_colour(pixels)]
        sizes = {"region": config.mask_size}
        inits = {"region": config.mask_init}
        self.grids = {a: MaskParams(pixels, reference, sizes.get(a, config.axis_mask_size), inits.get(a, AXIS_INIT)) for a in self.axes}
        self.ones = torch.ones(pixels.shape[0], 1, *pixels.shape[-2:], device=pixels.device, dtype=pixels.dtype)

    def tensors(self) -> list[torch.Tensor]:
        return [g.z for g in self.grids.values()]

    def masks(self) -> dict[str, torch.Tensor]:
        return {a: self.grids[a].mask() if a in self.grids else self.ones for a in AXES}

    def image(self, masks: dict[str, torch.Tensor]) -> torch.Tensor:
        return compose(self.pixels, masks, reference=self.reference, blur_sigma=self.blur_sigma, order=self.order)

    def full(self) -> dict[str, torch.Tensor]:
        return {a: self.ones for a in AXES}

    def stack(self, masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """The axis masks as one (B, len(AXES), H, W) tensor (how a path snapshot carries them)."""
        return torch.cat([masks[a].detach() for a in AXES], 1)

    def ranked(self, masks: dict[str, torch.Tensor]) -> torch.Tensor:
        return masks["region"]

    def insertion(self, last: dict[str, torch.Tensor], keep: torch.Tensor, fraction: float) -> dict[str, torch.Tensor]:
        # The region's insertion path (as the mask engine's), the last colour and detail masks inside it;
        # the reference itself (fraction 0) keeps the other axes at ones (nothing left for them to remove).
        return {**last, "region": keep} if fraction > 0 else {**self.full(), "region": keep}


def factorised_engine(run: RunContext, config: SimplifyConfig) -> SimplificationResult:
    """Optimise one mask per axis (see the module docstring) and return the simplest kept snapshot.

    ``config`` is resolved; the engine reads the mask engine's options plus ``blur_sigma`` and
    ``axis_mask_size`` (the colour and detail grids; the region grid is ``mask_size``). The result
    carries ``axis_masks`` (each axis's mask of the returned image) and ``mask`` (the region's).
    """
    original_8bit = round_8bit(run.pixels, False)
    ref = region_reference(original_8bit, config.reference)
    params = _AxisParams(original_8bit, ref, config, COMPOSITION)
    result = mask_continuation(run, config, params, description="simplifying (factorised)", ranked="the region mask")
    stacked = result.mask
    result.axis_masks = {a: stacked[:, i : i + 1].contiguous() for i, a in enumerate(AXES)}
    result.mask = result.axis_masks["region"]
    if result.mask_mean is not None:  # the region's mean mask ranks the region map's ties
        result.mask_mean = result.mask_mean[:, AXES.index("region") : AXES.index("region") + 1].contiguous()
    return result
