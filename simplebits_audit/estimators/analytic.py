"""Analytic predictive coder: no weights, the bar every learned estimator must beat.

The design follows lossless image codecs (LOCO-I / JPEG-LS, WebP lossless):

1. reversible colour transform "subtract green": planes G, R - G, B - G (grayscale: one plane);
2. median-edge (MED) prediction of each plane from its causal neighbours W, N, NW;
3. each residual coded with a discretised Laplace whose scale is the mean absolute residual of
   the causal neighbours (W, N, NW, NE), shrunk towards a prior scale, mixed with a uniform
   distribution over the 256 values (weight :data:`UNIFORM_WEIGHT`, 2^-10).

Why the uniform part: a Laplace's tail falls exponentially, so a jump of 255 grey levels next to a
flat region (scale 0.15) cost about 2,400 bits, and an image with few grey levels (a posterised
photo, a drawing, a binary mask) was rated at up to 36 bits per dimension, more than its raw 8
bits and up to 150x its WebP file (``benchmarks/estimators.py``, few-level table). With the
uniform part no value costs more than 18 bits (the escape codes of real codecs play this role);
photos cost about 0.5 % less, flat images about the same.

Everything is written with differentiable tensor ops, so gradients with respect to the pixels
exist almost everywhere. Grayscale is rated natively (one plane, no colour transform).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .._validation import check_pixel_images
from .base import BitEstimator

_LOG2 = math.log(2.0)


def _causal_neighbours(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Views of the W, N, NW and NE neighbours of every pixel of ``p`` (..., H, W), zero outside the image.

    One zero-padded copy and four views of it (a padded copy per neighbour cost a third of the
    coder's time at one megapixel).
    """
    h, w = p.shape[-2:]
    padded = F.pad(p, (1, 1, 1, 0))
    return padded[..., 1:, 0:w], padded[..., :h, 1 : w + 1], padded[..., :h, 0:w], padded[..., :h, 2 : w + 2]


def med_predict(p: torch.Tensor, start: float | torch.Tensor) -> torch.Tensor:
    """Median-edge prediction of each plane of ``p`` (B, C, H, W) from W, N and NW.

    On the first row the missing N and NW are taken as W, on the first column W and NW as N; the
    first pixel is predicted as ``start`` (a number, or a tensor broadcastable to (1, C, 1, 1)).
    """
    return _med(p, start)[0]


def _med(p: torch.Tensor, start: float | torch.Tensor) -> tuple[torch.Tensor, ...]:
    """:func:`med_predict`'s prediction with what its adjoint needs: ``(pred, west, north, take_lo, take_hi)``,
    ``take_lo`` where it took min(W, N), ``take_hi`` where max(W, N) (both true on a flat NW: min wins)."""
    west, north, northwest, _ = _causal_neighbours(p)
    # The border rules touch one row and one column: copies fixed there, not full-size selects.
    north, northwest, west = north.clone(), northwest.clone(), west.clone()
    north[..., 0, :] = west[..., 0, :]
    northwest[..., 0, :] = west[..., 0, :]
    west[..., :, 0] = north[..., :, 0]
    northwest[..., :, 0] = north[..., :, 0]
    lo, hi = torch.minimum(west, north), torch.maximum(west, north)
    take_lo, take_hi = northwest >= hi, northwest <= lo
    pred = torch.where(take_lo, lo, torch.where(take_hi, hi, west + north - northwest))
    pred[..., :1, :1] = torch.as_tensor(start, dtype=pred.dtype, device=pred.device).expand_as(pred[..., :1, :1])
    return pred, west, north, take_lo, take_hi


_LOG_HALF = math.log(0.5)


def _log_cdf(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """log P(e <= t) for a zero-mean Laplace of scale 1 / ``u``, stable on both sides."""
    return torch.where(t < 0, t * u + _LOG_HALF, torch.log1p(-0.5 * torch.exp(-t.clamp(min=0) * u)))


def _log_prob(e: torch.Tensor, scale: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
    """Log-probability of the unit bin around residual ``e`` (edge: -1 lowest value, 1 highest, 0 interior).

    Interior bins by the distance ``a = |e|`` from the mode: beyond half a unit the closed form
    ``log(1/2) - (a - 1/2) / b + log(1 - exp(-1 / b))`` (finite in far tails), the centre bin from
    both tails. The edge bins hold the whole tail beyond them: ``log P(e <= e + 1/2)`` for the lowest
    value, ``log P(e >= e - 1/2)`` for the highest.
    """
    u = scale.reciprocal()
    a = e.abs()
    far = torch.log1p(-torch.exp(-u)) + _LOG_HALF - (a - 0.5) * u
    centre = torch.log((1 - 0.5 * torch.exp((a - 0.5).clamp(max=0) * u) - 0.5 * torch.exp(-(a + 0.5) * u)).clamp(min=1e-12))
    out = torch.where(a < 0.5, centre, far)
    at_edge = edge != 0
    if bool(at_edge.any()):  # on those pixels only: saturated pixels are few, and the tail costs an exp and a log
        side = edge[at_edge].to(e.dtype)
        out[at_edge] = _log_cdf(0.5 - side * e[at_edge], u[at_edge])  # t = e + 1/2 (lowest), 1/2 - e (highest)
    return out


def _d_log_prob(e: torch.Tensor, scale: torch.Tensor, edge: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d/de and d/dscale of :func:`_log_prob` (closed form; in-place on temporaries, which the coder's size makes matter)."""
    u = scale.reciprocal()
    u2, a, sign = u * u, e.abs(), e.sign()
    # far bins: d/da = -u, d/db = (a - 1/2) u^2 - u^2 / (exp(u) - 1)
    de = (sign * u).neg_()
    db = torch.expm1(u).reciprocal_().neg_().add_(a).sub_(0.5).mul_(u2)
    # centre bin: mass M = 1 - A - C, A = exp(-(1/2 - a) u) / 2, C = exp(-(1/2 + a) u) / 2
    centre = a < 0.5
    if bool(centre.any()):
        big_a = (a - 0.5).clamp_(max=0).mul_(u).exp_().mul_(0.5)
        big_c = (a + 0.5).mul_(u).neg_().exp_().mul_(0.5)
        mass = (big_a + big_c).neg_().add_(1)
        # the forward clamps the mass at 1e-12: no gradient there, as torch.clamp gives
        inv = mass.clamp(min=1e-12).reciprocal_().masked_fill_(mass <= 1e-12, 0)
        de = torch.where(centre, (big_c - big_a).mul_(u).mul_(sign).mul_(inv), de)
        db = torch.where(centre, (big_a.mul_(0.5 - a).add_(big_c.mul_(a + 0.5))).mul_(u2).mul_(inv).neg_(), db)
    if bool(edge.any()):
        # log P(e <= t), t = 1/2 - edge * e: d/dt = u r, d/db = -t u^2 r, r = 1 (t < 0) or q / (1 - q), q = exp(-t u) / 2
        t = 0.5 - edge * e
        q = 0.5 * torch.exp(-t.clamp(min=0) * u)
        r = torch.where(t < 0, torch.ones_like(q), q / (1 - q))
        de = torch.where(edge != 0, -edge * u * r, de)
        db = torch.where(edge != 0, -t * u2 * r, db)
    return de, db


def _reverse_neighbour_sum(g: torch.Tensor) -> torch.Tensor:
    """The adjoint of ``sum(_causal_neighbours(p))``: each pixel collects ``g`` of the pixels it is W, N, NW or NE of."""
    h, w = g.shape[-2:]
    padded = F.pad(g, (1, 1, 0, 1))  # (..., H + 1, W + 2): g at [y, x + 1]
    # p[y, x] is W of [y, x + 1], N of [y + 1, x], NW of [y + 1, x + 1], NE of [y + 1, x - 1]
    return padded[..., :h, 2 : w + 2] + padded[..., 1:, 1 : w + 1] + padded[..., 1:, 2 : w + 2] + padded[..., 1:, 0:w]


def _mix_uniform(log_p: torch.Tensor, log_keep: float, log_uniform: float) -> torch.Tensor:
    """log((1 - w) p + w / 256) of log-probabilities ``log_p``, given ``log_keep`` = log(1 - w) and ``log_uniform`` = log(w / 256)."""
    return torch.logaddexp(log_p + log_keep, log_p.new_tensor(log_uniform))  # a broadcast scalar: no full-size constant on the hot path


def uniform_logs(weight: float) -> tuple[float, float] | None:
    """``(log(1 - w), log(w / 256))`` of the uniform part's weight ``w``, or None for ``w = 0`` (a pure Laplace)."""
    return None if weight == 0 else (math.log1p(-weight), math.log(weight / 256))


class _AnalyticBits(torch.autograd.Function):
    """Log-probabilities (B, C, H, W) of the planes under the coder, forward and gradient written out.

    Autograd through the median predictor, the neighbour scale and the bin probability ran about a
    hundred full-size kernels per step (selects, zero fills, padded copies of every view); at one
    megapixel the coder cost more than the classifier. The same formulas, without a graph, and
    their adjoint by hand. Inputs: ``planes`` (B, C, H, W) in 0..255 units, ``edge`` (int8, as
    :func:`_log_prob`), ``start`` (1, C, 1, 1), and the coder's scale rule ``(k, offset, floor)``:
    ``scale = max(k * (S + offset), floor)`` with ``S`` the neighbours' absolute residuals and ``k``
    (1, 1, H, W); ``mix``: :func:`uniform_logs` of the uniform part (None: none); ``adjoint``: keep
    what :meth:`backward` needs (False when no gradient is wanted: the bookkeeping is about a tenth
    of the coder's time).
    """

    @staticmethod
    def forward(ctx: Any, planes: torch.Tensor, edge: torch.Tensor, start: torch.Tensor, k: torch.Tensor, offset: float,
                floor: float, mix: tuple[float, float] | None, adjoint: bool) -> torch.Tensor:
        pred, west, north, take_lo, take_hi = _med(planes, start)
        e = planes - pred
        raw = (sum(_causal_neighbours(e.abs())) + offset) * k
        scale = raw.clamp(min=floor)
        if adjoint:
            # Which neighbours pred follows: ``linear`` (W + N - NW), else ``turn`` = +1 where it took
            # min(W, N), -1 where max(W, N), times sign(N - W) (0 on a tie, which shares the gradient).
            take_hi &= ~take_lo
            linear = ~(take_lo | take_hi)
            turn = (take_lo.to(torch.int8) - take_hi.to(torch.int8)) * (north - west).sign().to(torch.int8)
        log_p = _log_prob(e, scale, edge)
        if mix is None:
            mixed, share = log_p, None
        else:
            # d mixed / d log_p = the Laplace's share of the mixed probability
            mixed = _mix_uniform(log_p, *mix)
            share = (log_p + mix[0] - mixed).exp_() if adjoint else None
        if adjoint:
            ctx.save_for_backward(e, scale, edge, k, raw >= floor, linear, turn, share)
        return mixed

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        e, scale, edge, k, unclamped, linear, turn, share = ctx.saved_tensors
        if share is not None:
            grad = grad * share
        de, db = _d_log_prob(e, scale, edge)
        # the scale: max(k (S + offset), floor), S the sum of the neighbours' |e|
        g_abs = _reverse_neighbour_sum(db.mul_(grad).mul_(k).mul_(unclamped))
        g_res = de.mul_(grad).add_(g_abs.mul_(e.sign()))  # e = planes - pred
        # the median predictor: dpred/dW = (1 + turn + linear) / 2, dpred/dN = (1 - turn + linear) / 2,
        # dpred/dNW = -linear (min / max follow one neighbour, ties share, as torch.minimum does)
        half = g_res * -0.5
        half[..., :1, :1] = 0  # the corner is predicted as ``start``
        base, swing = half + half * linear, half * turn
        g_w, g_n, g_nw = base + swing, base - swing, half.mul_(-2).mul_(linear)
        # the border rules, undone in reverse order: column 0 took N, row 0 took W (the entries
        # moved are not read below: only W beyond column 0, N and NW beyond row 0 are pixels; the
        # corner, where all three meet, has no gradient: it is predicted as ``start``)
        g_n[..., :, 0] += g_nw[..., :, 0] + g_w[..., :, 0]
        g_w[..., 0, :] += g_nw[..., 0, :] + g_n[..., 0, :]
        # W, N, NW are the pixels to the left, above, above-left
        g_planes = g_res
        g_planes[..., :, :-1] += g_w[..., :, 1:]
        g_planes[..., :-1, :] += g_n[..., 1:, :]
        g_planes[..., :-1, :-1] += g_nw[..., 1:, 1:]
        return g_planes, None, None, None, None, None, None, None


#: defaults of :class:`AnalyticCoder`'s prior scale and its weight (also the context coder's scale rule)
PRIOR_SCALE, PRIOR_WEIGHT = 6.0, 0.1
#: default weight of the uniform part of :class:`AnalyticCoder`'s per-value distribution (2^-10: every
#: value at least 2^-18, so the codec codes it in one symbol; chosen on training photo crops and flat
#: images, docs/design-log.md "The analytic coder's uniform part")
UNIFORM_WEIGHT = 2.0**-10


def edge_bins(values: torch.Tensor) -> torch.Tensor:
    """Which bins of the 8-bit channel ``values`` (0..255 units) are edge bins holding a tail: -1 the
    lowest value, 1 the highest, 0 interior (int8, same shape)."""
    return (values > 254.5).to(torch.int8) - (values < 0.5).to(torch.int8)


def local_scale(e: torch.Tensor, prior_scale: float = PRIOR_SCALE, prior_weight: float = PRIOR_WEIGHT) -> torch.Tensor:
    """The mean absolute residual of each pixel's in-image causal neighbours (W, N, NW, NE) of ``e``
    (B, C, H, W), shrunk towards ``prior_scale`` with the weight of ``prior_weight`` neighbours."""
    count = sum(_causal_neighbours(torch.ones_like(e[:1, :1])))
    return (sum(_causal_neighbours(e.abs())) + prior_weight * prior_scale) / (count + prior_weight)


def autograd_bits_map(coder: AnalyticCoder, x: torch.Tensor) -> torch.Tensor:
    """The coder's bits map (B, 1, H, W) of pixel images ``x`` (B, C, H, W), written with plain autograd ops.

    The same formulas as :meth:`AnalyticCoder._bits_map` without the hand-written adjoint: the
    oracle the tests check its values and gradients against, and the reference
    ``benchmarks/estimators.py`` times it against.
    """
    planes, values, start = _coder_planes(x)
    edge = edge_bins(values)
    pred = med_predict(planes, start)
    scale = torch.clamp(coder.scale_gain * local_scale(planes - pred, coder.prior_scale, coder.prior_weight), min=coder.min_scale)
    log_p = _log_prob(planes - pred, scale, edge)
    mix = uniform_logs(coder.uniform_weight)
    if mix is not None:
        log_p = _mix_uniform(log_p, *mix)
    return (-log_p / _LOG2).sum(1, keepdim=True)


def _coder_planes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The coded planes (G, R - G, B - G, or the grey plane) in 0..255 units, each plane's own channel
    values (whose 0 and 255 are the edge bins: R - G lies in [-G, 255 - G]) and the corner's prediction."""
    v = x * 255.0
    if v.shape[1] == 3:
        r, g, b = v[:, 0:1], v[:, 1:2], v[:, 2:3]
        start = torch.tensor([128.0, 0.0, 0.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return torch.cat([g, r - g, b - g], 1), torch.cat([g, r, b], 1).detach(), start
    return v, v.detach(), torch.full((1, 1, 1, 1), 128.0, device=x.device, dtype=x.dtype)


def snap_to_prediction(pixels: torch.Tensor, near: int) -> torch.Tensor:
    """``pixels`` with every coded residual of at most ``near`` grey levels set to 0: a near-lossless pass for this coder.

    ``pixels`` (B, C, H, W), C = 1 or 3, 8-bit values in [0, 1]. In the coder's planes (G, R - G,
    B - G, or the grey plane) and its causal order, each pixel whose value differs from its MED
    prediction (:func:`med_predict`, from the already-snapped W, N and NW) by at most ``near`` takes
    the prediction; larger residuals are kept as they are. Returns (B, C, H, W) 8-bit values in
    [0, 1], in ``pixels``' dtype: each coded plane moves by at most ``near`` levels (R and B by at
    most 2 * ``near``, as R = (R - G) + G). ``near=0`` returns the rounded input. Where the pass
    changes a pixel, its residual becomes the coder's cheapest, 0. Two exceptions to "every residual
    within ``near`` is 0": where R or B leave [0, 255] they are clamped after the pass, and the
    clamped pixel keeps a small residual; and a pixel's new value changes the context scale of later
    pixels. So a caller that must not add bits compares (as :func:`~simplebits_audit.training.
    condensation.condense` does, per image).

    Why: bits minimised by gradient descent through 8-bit rounding leave flat regions dithered by
    a level or two, since the straight-through gradient cannot make residuals exactly 0
    (docs/design-log.md, "Dataset condensation"). Source: the near-lossless mode of LOCO-I / JPEG-LS
    (Weinberger, Seroussi & Sapiro 2000), which quantises every residual to a step of 2 * NEAR + 1;
    here only the residuals within ``near`` change (a dead zone), the rest stay lossless.
    ``ValueError`` naming ``near`` for a negative or fractional tolerance; ``ValueError`` or
    ``TypeError`` naming ``pixels`` for anything but a non-empty float batch in [0, 1].
    """
    if isinstance(near, bool) or not isinstance(near, int) or near < 0:
        raise ValueError(f"near: expected a whole number of grey levels >= 0, got {near!r}")
    pixels = check_pixel_images(pixels, "pixels")
    v = (pixels.detach().float() * 255).round()
    if near == 0:
        return (v / 255).to(pixels.dtype)
    colour = v.shape[1] == 3
    planes = torch.cat([v[:, 1:2], v[:, 0:1] - v[:, 1:2], v[:, 2:3] - v[:, 1:2]], 1) if colour else v.clone()
    start = torch.tensor([128.0, 0.0, 0.0] if colour else [128.0], device=v.device).view(1, -1)
    h, w = planes.shape[-2:]
    out = planes
    corner = out[:, :, 0, 0]
    out[:, :, 0, 0] = torch.where((corner - start).abs() <= near, start.expand_as(corner), corner)
    # Anti-diagonals in order: a pixel's causal neighbours W, N and NW all lie on earlier ones, so each diagonal is
    # one vectorised step and the result equals a raster-order pass.
    for d in range(1, h + w - 1):
        i = torch.arange(max(0, d - w + 1), min(d, h - 1) + 1, device=v.device)
        j = d - i
        west, north = out[:, :, i, (j - 1).clamp(min=0)], out[:, :, (i - 1).clamp(min=0), j]
        northwest = out[:, :, (i - 1).clamp(min=0), (j - 1).clamp(min=0)]
        first_row, first_col = (i == 0), (j == 0)  # the coder's border rules (:func:`_med`)
        north = torch.where(first_row, west, north)
        northwest = torch.where(first_row, west, torch.where(first_col, north, northwest))
        west = torch.where(first_col, north, west)
        lo, hi = torch.minimum(west, north), torch.maximum(west, north)
        pred = torch.where(northwest >= hi, lo, torch.where(northwest <= lo, hi, west + north - northwest))
        current = out[:, :, i, j]
        out[:, :, i, j] = torch.where((current - pred).abs() <= near, pred, current)
    if colour:
        green = out[:, 0:1]
        out = torch.cat([out[:, 1:2] + green, green, out[:, 2:3] + green], 1)
    return (out.clamp(0, 255) / 255).to(pixels.dtype)


class AnalyticCoder(BitEstimator):
    """Median-edge predictor + subtract-green + locally scaled discretised Laplace, mixed with a uniform.

    No training, no weights; any image size; grayscale rated natively. About 3.7 bpd on held-out
    32x32 photo crops (see ``benchmarks/estimators.py``). Source: LOCO-I / JPEG-LS's predictor and
    context scale (Weinberger, Seroussi & Sapiro 2000), WebP lossless's subtract-green transform.

    Parameters
    ----------
    prior_scale : float
        Laplace scale (0..255 units) assumed where no neighbouring residual is known.
    prior_weight : float
        How many neighbour residuals the prior scale counts as.
    scale_gain : float
        Multiplier on the neighbours' mean absolute residual.
    min_scale : float
        Floor of the scale, so that flat regions still cost a little.
    uniform_weight : float
        Weight ``w`` in [0, 1) of a uniform distribution over the 256 values mixed into each
        value's Laplace: ``p = (1 - w) p_Laplace + w / 256``, so no value costs more than
        ``log2(256 / w)`` bits (18 at the default 2^-10). 0 is the pure Laplace used before
        (CHANGELOG), which rated few-level images (posterised, drawn, binary) above 8 bits per dimension.

    Notes
    -----
    The defaults (``prior_weight=0.1``, ``min_scale=0.15``) were chosen on held-out photo crops
    *and* on flat images: a flat 32x32 image costs about 0.10 bpd here and 0.08 bpd as WebP
    lossless. The earlier defaults (0.5, 0.35) charged at least 0.92 bpd for a perfectly flat region
    (eleven times WebP) and were also slightly worse on photos (3.719 against 3.711 bpd at 32x32),
    which capped how simple any simplified image could look to the estimator.
    """

    name = "analytic"
    native_channels = (1, 3)

    def __init__(
        self, prior_scale: float = PRIOR_SCALE, prior_weight: float = PRIOR_WEIGHT, scale_gain: float = 1.0, min_scale: float = 0.15,
        uniform_weight: float = UNIFORM_WEIGHT,
    ) -> None:
        super().__init__()
        if isinstance(uniform_weight, bool) or not isinstance(uniform_weight, numbers.Real) or not 0 <= float(uniform_weight) < 1:
            raise ValueError(f"uniform_weight: expected a number in [0, 1), got {uniform_weight!r}")
        self.uniform_weight = float(uniform_weight)
        self.prior_scale = prior_scale
        self.prior_weight = prior_weight
        self.scale_gain = scale_gain
        self.min_scale = min_scale
        self.card = {
            "name": self.name,
            "description": "Median-edge predictor, subtract-green colour transform, discretised Laplace with a locally estimated scale, "
                           "mixed with a uniform over the 256 values.",
            "training_data": "none (analytic)",
            "parameters": 0,
            "licence": "n/a",
        }

    def _bits_map(self, x: torch.Tensor, noise: bool, generator: torch.Generator | None) -> torch.Tensor:
        planes, values, start = _coder_planes(x)
        edge = edge_bins(values)
        # scale = max(gain * (S + prior_weight * prior_scale) / (count + prior_weight), min_scale), S the neighbours' |residuals|
        count = sum(_causal_neighbours(torch.ones_like(planes[:1, :1])))  # in-image neighbours: 4 inside, fewer at the border
        k = self.scale_gain / (count + self.prior_weight)
        adjoint = torch.is_grad_enabled() and planes.requires_grad
        log_p = _AnalyticBits.apply(planes, edge, start, k, self.prior_weight * self.prior_scale, self.min_scale,
                                    uniform_logs(self.uniform_weight), adjoint)
        return (-log_p / _LOG2).sum(1, keepdim=True)
