"""Bits-efficiency (the paper's axis): how much of the prediction survives on how few bits?

One curve per image, a :class:`BitsCurve`: points (bits fraction, target probability).

* For a map, :func:`bits_efficiency_curve` keeps the map's top-k % pixels of the original, fills
  the rest with a reference (blurred image by default, or a flat mean colour), rounds to 8 bits and
  measures bpd under the estimator and the target's probability.
* For SimpleBits, :func:`simplebits_curve` reads the same two quantities off the lambda path of a
  :class:`~simplebits_audit.SimplificationResult` (original first, then every snapshot).

The definition, identical for both: x = bpd of the image shown to the model divided by bpd of
the 8-bit original (same estimator); y = *probability kept*, the target's probability (softmax,
or the target label's sigmoid for ``head="sigmoid"``) divided by the original's, clipped to
[0, 1]. :func:`curve_auc` integrates the *budget envelope* Y(b) = max {y_s : x_s <= b} over b in
[0, 1]: the best share of the probability reachable within a bit budget (0 below the cheapest
point). Higher is better; 1 would mean "all of the prediction on no bits". :func:`bits_needed` is
the cheapest x keeping at least ``keep`` of the probability (lower is better; the original,
x = 1, always qualifies). A map's curve can never go below its reference's bits (fraction 0 is
the reference alone) while SimpleBits rewrites pixels; that difference is what the axis
measures. The reference choice matters: report it. Explain the predicted class
(``target=None``): for a class the model gives little probability, "kept" is easy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .._helpers import Transform, as_tuple, resolve_target
from ..estimators import BitEstimator, resolve_estimator
from ..simplification.heads import check_head
from .faithfulness import make_reference, pixel_order, target_probability

#: default fractions of pixels kept: 0 is the reference alone, 1 the original
FRACTIONS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)


@dataclass
class BitsCurve:
    """Per-image bits/probability curves.

    Attributes
    ----------
    bpd : Tensor (S, B)
        Bits per dimension of each point's 8-bit image under the estimator.
    target_prob : Tensor (S, B)
        Probability of the target at each point (softmax, or the target label's sigmoid).
    bpd_original, prob_original : Tensor (B,)
        The 8-bit original's bpd and target probability.
    fractions : Tensor (S,) or None
        Fraction of pixels kept (map curves); ``None`` for a lambda path.
    lambdas : Tensor (S,) or None
        The lambda of each point (SimpleBits paths; 0 = the original).
    """

    bpd: torch.Tensor
    target_prob: torch.Tensor
    bpd_original: torch.Tensor
    prob_original: torch.Tensor
    fractions: torch.Tensor | None = None
    lambdas: torch.Tensor | None = None

    @property
    def prob_kept(self) -> torch.Tensor:
        """y of every point: target probability / the original's, clipped to [0, 1], (S, B)."""
        return (self.target_prob / self.prob_original.clamp_min(1e-12)).clamp(0, 1)

    @property
    def bits_fraction(self) -> torch.Tensor:
        """x of every point: bpd / bpd of the original, (S, B)."""
        return self.bpd / self.bpd_original.clamp_min(1e-12)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (for JSON)."""
        out = {k: getattr(self, k) for k in ("bpd", "target_prob", "bpd_original", "prob_original", "fractions", "lambdas")}
        return {k: (v.detach().cpu().tolist() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}


def curve_auc(curve: BitsCurve) -> torch.Tensor:
    """Area under the budget envelope of each image's curve, (B,), in [0, 1] (see the module docstring)."""
    x = curve.bits_fraction.double().clamp(0, 1)
    y = curve.prob_kept.double().to(x.device)
    order = x.argsort(0)
    xs, ys = x.gather(0, order), y.gather(0, order)
    envelope = ys.cummax(0).values  # best probability at or below each budget
    right = torch.cat([xs[1:], torch.ones_like(xs[:1])])
    return (envelope * (right - xs)).sum(0)


def bits_needed(curve: BitsCurve, keep: float = 0.9) -> torch.Tensor:
    """Smallest bits fraction among the points keeping at least ``keep`` of the probability, (B,); lower is better."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep: expected a fraction in (0, 1], got {keep}")
    x = curve.bits_fraction.double()
    ok = curve.prob_kept.double().to(x.device) >= keep - 1e-9
    return torch.where(ok, x, torch.full_like(x, math.inf)).amin(0).clamp(max=1.0)


@torch.no_grad()
def bits_efficiency_curve(
    forward_func: Callable[..., torch.Tensor],
    pixel_images: torch.Tensor,
    maps: torch.Tensor,
    target: Any = None,
    estimator: BitEstimator | str | None = None,
    fractions: Sequence[float] = FRACTIONS,
    reference: str = "blur",
    to_model: Transform | None = None,
    *,
    additional_forward_args: Any = None,
    seed: int = 0,
    head: str = "softmax",
) -> BitsCurve:
    """Keep each map's top pixels of the original, fill the rest with a reference, measure bits and probability.

    Parameters
    ----------
    forward_func : callable
        Model-space images -> logits (B, K).
    pixel_images : Tensor (B, C, H, W)
        The images in pixel space, [0, 1].
    maps : Tensor (B, 1, H, W)
        Relevance; ties broken at random (``seed``).
    target : None, int, list or Tensor (B,)
        ``None`` = the prediction on the original.
    estimator : BitEstimator or str, optional
        Rates pixel-space images (default: the package default).
    fractions : sequence of float in [0, 1]
        Fractions of pixels kept.
    reference : {"blur", "mean"}
        What replaces the other pixels: the Gaussian-blurred image or its flat mean colour.
    to_model : callable, optional
        Pixel -> model space (default identity).
    head : {"softmax", "sigmoid"}
        The model's output head (see :func:`~simplebits_audit.metrics.perturbation_curve`).

    Returns
    -------
    BitsCurve
        With ``fractions`` (S,) and (S, B) bpd and probabilities; every image rounded to 8 bits.
    """
    if reference not in ("blur", "mean"):
        raise ValueError(f"reference: expected 'blur' or 'mean', got {reference!r}")
    check_head(head)
    fr = torch.as_tensor(list(fractions), dtype=torch.float64)
    if fr.numel() == 0 or bool((fr < 0).any()) or bool((fr > 1).any()):
        raise ValueError(f"fractions: expected values in [0, 1], got {list(fractions)}")
    if maps.shape[0] != pixel_images.shape[0] or maps.shape[-2:] != pixel_images.shape[-2:]:
        raise ValueError(f"maps: shape {tuple(maps.shape)} does not match pixel_images {tuple(pixel_images.shape)}")
    to_model = to_model or (lambda x: x)
    estimator = resolve_estimator(estimator, device=pixel_images.device)
    pixels = (pixel_images.detach().clamp(0, 1) * 255).round() / 255
    extra = as_tuple(additional_forward_args)
    t = resolve_target(target, pixels.shape[0], predict=lambda: forward_func(to_model(pixels), *extra), device=pixels.device)
    ranks = pixel_order(maps, seed)
    ref = make_reference(pixels, reference)
    n_pixels = ranks[0].numel()
    bpd, prob = [], []
    for f in fr.tolist():
        kept = ranks < round(f * n_pixels)
        x = (torch.where(kept, pixels, ref) * 255).round() / 255
        bpd.append(estimator.bpd(x).to(pixels.dtype))
        prob.append(target_probability(forward_func(to_model(x), *extra), t, head))
    bpd_original = estimator.bpd(pixels).to(pixels.dtype)
    prob_original = target_probability(forward_func(to_model(pixels), *extra), t, head)
    return BitsCurve(torch.stack(bpd), torch.stack(prob), bpd_original, prob_original, fractions=fr.float())


def simplebits_curve(result: Any) -> BitsCurve:
    """The lambda path of a :class:`~simplebits_audit.SimplificationResult` as a :class:`BitsCurve`.

    Points: the original (lambda = 0) and every snapshot, with ``path_bits`` (S, B) divided by
    C*H*W and ``path_target_prob`` (S, B); all 8-bit images rated by the result's estimator.
    """
    dims = float(result.original[0].numel())
    bpd = result.path_bits.detach() / dims
    prob = result.path_target_prob.detach()
    return BitsCurve(bpd, prob, bpd[0], prob[0], fractions=None, lambdas=result.path_lambdas.detach())
