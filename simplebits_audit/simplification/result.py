"""What every simplification engine returns: :class:`SimplificationResult`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .._io import save_torch


@dataclass
class SimplificationResult:
    """Per-image results of :func:`simplify` (batch dimension first everywhere).

    Attributes
    ----------
    original, simplified : Tensor (B, C, H, W)
        Pixel space, [0, 1]; ``simplified`` is rounded to 8 bits.
    simplified_inputs : Tensor (B, C, H, W)
        ``simplified`` in the model's input space.
    bits_before, bits_after, bpd_before, bpd_after : Tensor (B,)
        Under the estimator, after rounding to 8 bits.
    bits_map_before, bits_map_after : Tensor (B, 1, H, W)
        Per-pixel bits; ``bit_reduction_map`` is their difference (positive = bits removed).
    probs_before, probs_after : Tensor (B, K)
        The head's probabilities of the classifier's output: softmax over classes, or one
        sigmoid per label (``head="sigmoid"``).
    pred_before, pred_after, target : Tensor (B,)
        ``target`` is the class explained (softmax), or the label whose probability
        ``target_prob_delta`` and ``path_target_prob`` follow (sigmoid: the given target, or the
        most probable of ``kept_labels``).
    target_prob_delta, kl : Tensor (B,)
        Change of the target's probability and KL(p_before || p_after).
    kept : Tensor (B,) bool
        Whether the returned image satisfies ``keep``.
    lambda_chosen : Tensor (B,)
        lambda of the returned snapshot.
    path_lambdas : Tensor (S,)
    path_bits, path_target_prob : Tensor (S, B)
    path_kept : Tensor (S, B) bool
    path_images : Tensor (S, B, C, H, W) uint8
        The trade-off path: the original (lambda = 0) and every snapshot along the knob.
    status : list[str]
        ``"ok"``, ``"not kept"`` or ``"non-finite"`` per image.
    steps : int
    seconds : float
        Wall time of the whole batch.
    settings : dict
        The options used (objective, parameterization, keep, ...).
    mask : Tensor (B, 1, H, W) or None
        The mask engine's mask in [0, 1] (1 = the original's pixel kept, 0 = the reference's):
        the returned image's (the chosen path snapshot's: ones for the original, zeros for the
        flat reference), so ``simplified == round8(mask * original + (1 - mask) * reference)``.
        ``None`` for the other engines.
    axis_masks : dict[str, Tensor (B, 1, H, W)] or None
        The factorised engine's mask per kind of information (``"colour"``, ``"detail"``,
        ``"region"``), each in [0, 1], 1 = kept in the returned image; ``simplified`` equals
        ``round8(compose(original, axis_masks))``
        (:func:`~simplebits_audit.simplification.factorised.compose`), and ``mask`` is the region's.
        ``None`` for the other engines.
    mask_mean : Tensor (B, 1, H, W) or None
        The mean of the masks along the path (every snapshot after the original), in [0, 1]: how
        much of the path kept each pixel. Ranks the pixels that ``mask`` ties (an insertion
        snapshot's mask is binary): the ``"mask"`` map (:func:`refine_ties`). ``None`` where
        ``mask`` is.
    removed_order : Tensor (B, 1, H, W) or None
        The learned simplifier's order head (``Simplifier(order=True)``), in [0, 1] per image,
        higher = removing the pixel lowered the answer more: ranks, in the ``"mask"`` map, the
        pixels the returned image takes from the reference (``mask`` below :data:`HALF_LEVEL`);
        it never changes the returned image. ``None`` for the other engines and for a simplifier
        without the order head.
    kept_labels : Tensor (B, K) bool or None
        Sigmoid head only: the labels whose side (on or off) the returned image must keep, i.e.
        what was explained: the ``target`` label when one was given, otherwise every label that
        was on, or every label when none was on. ``None`` under softmax.
    path_labels : list[str] or None
        What each path snapshot is (``"original"``, ``"step 20"``, ``"top 5% of the mask"``,
        ``"reference"``, ...); ``None`` where the lambda value says it.
    """

    original: torch.Tensor
    simplified: torch.Tensor
    simplified_inputs: torch.Tensor
    bits_before: torch.Tensor
    bits_after: torch.Tensor
    bpd_before: torch.Tensor
    bpd_after: torch.Tensor
    bits_map_before: torch.Tensor
    bits_map_after: torch.Tensor
    probs_before: torch.Tensor
    probs_after: torch.Tensor
    pred_before: torch.Tensor
    pred_after: torch.Tensor
    target: torch.Tensor
    target_prob_delta: torch.Tensor
    kl: torch.Tensor
    kept: torch.Tensor
    lambda_chosen: torch.Tensor
    path_lambdas: torch.Tensor
    path_bits: torch.Tensor
    path_target_prob: torch.Tensor
    path_kept: torch.Tensor
    path_images: torch.Tensor
    status: list[str]
    steps: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    mask: torch.Tensor | None = None
    path_labels: list[str] | None = None
    axis_masks: dict[str, torch.Tensor] | None = None
    mask_mean: torch.Tensor | None = None
    removed_order: torch.Tensor | None = None
    kept_labels: torch.Tensor | None = None

    @property
    def bit_reduction_map(self) -> torch.Tensor:
        """Bits removed per pixel, (B, 1, H, W): ``bits_map_before - bits_map_after``."""
        return self.bits_map_before - self.bits_map_after

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / max(1, len(self.status))

    def __len__(self) -> int:
        return len(self.status)

    @classmethod
    def cat(cls, parts: Sequence[SimplificationResult]) -> SimplificationResult:
        """One result of the batches ``parts`` (runs of the same settings), in order.

        Per-image fields are concatenated along the batch, the path fields (S, B, ...) along their
        second dimension; ``seconds`` is their sum. Parts whose paths differ (knobs, labels, steps
        or settings) are a ``ValueError`` naming ``parts``.
        """
        if not parts:
            raise ValueError("parts: need at least one result")
        first = parts[0]
        for other in parts[1:]:
            if (other.steps, other.settings, other.path_labels) != (first.steps, first.settings, first.path_labels) or not torch.equal(
                other.path_lambdas, first.path_lambdas
            ):
                raise ValueError("parts: results of different settings or paths cannot be joined")
        values: dict[str, Any] = {}
        for f in fields(cls):
            items = [getattr(p, f.name) for p in parts]
            if f.name in ("path_lambdas", "steps", "settings", "path_labels"):
                values[f.name] = items[0]
            elif f.name == "seconds":
                values[f.name] = float(sum(items))
            elif f.name == "status":
                values[f.name] = [s for item in items for s in item]
            elif items[0] is None:
                values[f.name] = None
            elif isinstance(items[0], dict):
                values[f.name] = {k: torch.cat([item[k] for item in items]) for k in items[0]}
            else:
                values[f.name] = torch.cat(items, dim=1 if f.name.startswith("path_") else 0)
        return cls(**values)

    def to(self, device: str | torch.device) -> SimplificationResult:
        """A copy with every tensor on ``device``."""
        return SimplificationResult(**{f.name: _move(getattr(self, f.name), device) for f in fields(self)})

    def save(self, path: str | Path) -> Path:
        """Write the result atomically (tensors, strings and numbers only: loads with ``weights_only``)."""
        return save_torch({f.name: _move(getattr(self, f.name), "cpu") for f in fields(self)}, path)

    @classmethod
    def load(cls, path: str | Path) -> SimplificationResult:
        """Read a result written by :meth:`save`."""
        return cls(**torch.load(path, map_location="cpu", weights_only=True))


#: the most a refined map moves a mask value (:func:`refine_ties`)
TIE_BREAK = 1e-3
#: A mask below this moves the returned 8-bit pixel from the reference's by less than half a level, so
#: the pixel is the reference's: the ``"mask"`` map treats such pixels as one tie (:attr:`SimplificationResult.removed_order`).
HALF_LEVEL = 0.5 / 255


def refine_ties(mask: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``mask`` (B, 1, H, W) in [0, 1] with its ties broken by ``order`` (same shape, in [0, 1]).

    The pixels sharing one mask value are spread by ``order`` over less than half the gap to the
    next distinct value (and at most :data:`TIE_BREAK`): upwards, or downwards for the top value
    where upwards would leave [0, 1]. So every pixel the mask ranks above another stays at least
    level with it: the map refines the mask's ranking and never contradicts it. An image whose
    mask is constant (all kept, or the flat reference: nothing needed), or whose order is its
    mask, keeps its mask as the map.

    Why: the returned image of an insertion snapshot has a binary mask; as a map it cannot rank the
    kept pixels among themselves, and localisation fell from AUROC 0.94 to 0.83 on
    ``digits-on-photos`` (64 test images) when the map became the returned image's mask.
    """
    b = mask.shape[0]
    # An image whose order is its mask has nothing to break (a tie group would only move as one): left as it is,
    # and only the others sorted (the learned simplifier's images that kept their answer at once, most of them).
    differs = (mask != order).flatten(1).any(1)
    if not bool(differs.all()):
        out = mask.clone()
        if bool(differs.any()):
            out[differs] = refine_ties(mask[differs], order[differs])
        return out
    # float32 (not the mask's fp16 / bf16): the spreads of 1e-3 x order need its resolution near 1
    v, o = mask.reshape(b, -1).float(), order.reshape(b, -1).float().nan_to_num(0.0).clamp(0, 1)
    finite = torch.isfinite(v)  # a non-finite mask value is left as it is (sorted above every level)
    sv, idx = torch.where(finite, v, torch.full_like(v, 2.0)).sort(dim=1)
    # group = index of the pixel's distinct value in its image; levels[i, g] = that value
    group = torch.cat([torch.zeros_like(sv[:, :1], dtype=torch.long), (sv.diff(dim=1) != 0).long().cumsum(1)], 1)
    n_levels = group[:, -1:] + 1
    levels = torch.full_like(sv, math.inf).scatter(1, group, sv)
    padded = torch.cat([torch.full_like(sv[:, :1], -math.inf), levels, torch.full_like(sv[:, :1], math.inf)], 1)
    gap_up = padded.gather(1, group + 2) - sv
    gap_down = sv - padded.gather(1, group)
    up, down = torch.clamp(0.45 * gap_up, max=TIE_BREAK), torch.clamp(0.45 * gap_down, max=TIE_BREAK)
    so = o.gather(1, idx)
    spread_down = sv + up > 1  # only the top value near 1 can have no room above
    refined = torch.where(spread_down, sv - down * (1 - so), sv + up * so)
    # images with one level (nothing or everything needed) or without ties are returned as they are
    untouched = (n_levels < 2) | (n_levels == sv.shape[1])
    refined = torch.where(untouched, sv, refined)
    out = torch.empty_like(v).scatter(1, idx, refined)
    out = torch.where(finite, out, v).view_as(mask).to(mask.dtype)
    return out


def _move(value: Any, device: str | torch.device) -> Any:
    if isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values()):
        return {k: v.to(device) for k, v in value.items()}
    return value.to(device) if isinstance(value, torch.Tensor) else value
