"""Learned context model on top of the analytic coder: a small per-pixel network that corrects the
median-edge prediction and the local scale from hand-made causal context features.

Design (issue 24, "a learned context model on top of the analytic predictor"; trials in
docs/design-log.md): the planes (G, R - G, B - G, or the grey plane), the median-edge (MED)
prediction and the neighbour scale are those of
:class:`~simplebits_audit.estimators.analytic.AnalyticCoder`. For each plane a 1x1 network (two
hidden layers) reads, at every pixel, only causal context: local gradients of the plane, the
residuals of eight causal neighbours relative to the local scale, the mean absolute and mean
signed residual over causal windows of radius 2 and 6 (``area``; the image's own noise level and
bias around the pixel), and for R - G and B - G the residuals already coded at the same pixel (G,
then R - G). It outputs

* a correction to the mean: weights on the neighbours' offsets from the MED prediction and on the
  same pixel's residuals coded before;
* a discretised mixture of ``n_mix`` logistics, each with its own offset (in local scales), scale
  (a multiple of the analytic scale, floored at ``min_scale``) and weight; the edge values 0 and
  255 hold the tails.

Outputs are bounded (``4 tanh(./4)``); the last layer starts at zero but for spread scale biases,
so training starts from a scale mixture around the MED prediction. Grayscale is rated natively by
the G plane's network. Like the analytic coder the model is causal (each value's distribution
depends on pixels before it in raster order and on the same pixel's planes coded before), so it
is an exact lossless coding model. Inputs are rated in float32 whatever their dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .analytic import _coder_planes, edge_bins, local_scale, med_predict
from .base import BitEstimator

_LOG2 = math.log(2.0)

#: causal neighbours (dy, dx) = (rows up, columns left): W, N, NW, NE, then WW, NN, NNE, NWW
_NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1), (0, 2), (2, 0), (2, -1), (1, 2))


def _shift(p: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``q[..., y, x] = p[..., y - dy, x - dx]`` (zero outside the image), for ``|dy|, |dx| <= 2``."""
    h, w = p.shape[-2:]
    return F.pad(p, (2, 2, 2, 2))[..., 2 - dy : 2 - dy + h, 2 - dx : 2 - dx + w]


#: half-widths of the causal windows whose residual statistics are features (``area`` picks the first ones)
_AREAS = (2, 6)


def _causal_mean(p: torch.Tensor, r: int) -> torch.Tensor:
    """Mean of ``p`` over the causal window of each pixel: rows y - r .. y - 1 at columns x - r .. x + r,
    and row y at columns x - r .. x - 1 (in-image pixels only; 0 where there are none)."""
    h, w = p.shape[-2:]
    def window_sum(q: torch.Tensor) -> torch.Tensor:
        above = F.avg_pool2d(F.pad(q, (r, r, r, 0)), (r, 2 * r + 1), stride=1, divisor_override=1)[..., :h, :]
        left = F.avg_pool2d(F.pad(q, (r, 0, 0, 0)), (1, r), stride=1, divisor_override=1)[..., :, :w]
        return above + left
    return window_sum(p) / window_sum(torch.ones_like(p[:1, :1])).clamp(min=1)


def _squash(t: torch.Tensor) -> torch.Tensor:
    """Signed log compression of a difference in grey levels (features stay O(1))."""
    return t.sign() * torch.log1p(t.abs()) / 3


def _logistic_bin_log_prob(t: torch.Tensor, scale: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
    """log P of the unit bin at offset ``t`` from the mean under a logistic of ``scale`` (edge bins hold their tail)."""
    inv = scale.reciprocal()
    hi, lo = (t + 0.5) * inv, (t - 0.5) * inv
    # by symmetry use the side where both ends are <= the mode's side: stable differences of sigmoids
    flip = t > 0
    a, b = torch.where(flip, -lo, hi), torch.where(flip, -hi, lo)  # a > b
    la, lb = F.logsigmoid(a), F.logsigmoid(b)
    interior = la + torch.log(-torch.expm1((lb - la).clamp(max=-1e-12)))
    lower, upper = F.logsigmoid(hi), F.logsigmoid(-lo)  # bin at 0 holds (-inf, t + 1/2], at 255 [t - 1/2, inf)
    return torch.where(edge < 0, lower, torch.where(edge > 0, upper, interior))


class ContextCoder(BitEstimator):
    """Analytic coder with a learned per-pixel context model (mean correction, logistic mixture).

    Parameters
    ----------
    hidden : int
        Width of each plane's 1x1 network.
    n_mix : int
        Logistic components per pixel; each has its own offset from the mean (in local scales) and
        its own scale (a multiple of the analytic scale).
    wide : bool
        Context of eight causal neighbours (W, N, NW, NE, WW, NN, NNE, NWW) instead of four.
    area : int
        How many causal windows (radius 2, then 6) give residual statistics as features (0-2).
    min_scale : float
        Floor of every logistic scale (grey levels), so a flat region costs a little, not nothing.
    """

    name = "context"
    native_channels = (1, 3)

    def __init__(self, hidden: int = 32, n_mix: int = 3, wide: bool = True, area: int = 2, min_scale: float = 0.08) -> None:
        super().__init__()
        self.config = {"hidden": hidden, "n_mix": n_mix, "wide": wide, "area": area, "min_scale": min_scale}
        self.n_mix, self.min_scale, self.area = n_mix, min_scale, area
        self.offsets = _NEIGHBOURS[: 8 if wide else 4]
        k = len(self.offsets)
        n_in, n_out = 6 + k + 1 + 2 * len(_AREAS[:area]), k + 3 * n_mix
        self.nets = nn.ModuleList(
            nn.Sequential(nn.Conv2d(n_in + 2 * c, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, hidden, 1), nn.SiLU(),
                          nn.Conv2d(hidden, n_out + c, 1))
            for c in range(3)
        )
        for net in self.nets:  # start as a scale mixture of logistics around the MED prediction
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)
            with torch.no_grad():
                net[-1].bias[k + n_mix : k + 2 * n_mix] = torch.linspace(-1.0, 0.7, n_mix) if n_mix > 1 else 0.0

    def _bits_map(self, x: torch.Tensor, noise: bool, generator: torch.Generator | None) -> torch.Tensor:
        return self.plane_bits_map(x).sum(1, keepdim=True)

    def plane_bits_map(self, x: torch.Tensor) -> torch.Tensor:
        """Bits of each coded plane at each pixel, (B, C, H, W): G, R - G, B - G (or the grey plane).

        ``x`` (B, C, H, W) pixel images in [0, 1], C = 1 or 3, already validated (use
        :meth:`bits_map` for the checked, summed map).
        """
        planes, values, start = _coder_planes(x.float())  # bf16 / fp16 would round bin differences to zero
        edge = edge_bins(values)
        pred = med_predict(planes, start)
        e = planes - pred
        scale = local_scale(e)  # the analytic coder's rule at its default prior
        log_scale = scale.log()
        nb = [_shift(planes, dy, dx) for dy, dx in self.offsets]
        nb_e = [_shift(e, dy, dx) for dy, dx in self.offsets]
        w, n, nw, ne = nb[:4]
        ww, nn_, nne = _shift(planes, 0, 2), _shift(planes, 2, 0), _shift(planes, 2, -1)
        grads = [n - nw, nw - w, ne - n, w - ww, n - nn_, ne - nne]
        # the image's own statistics around the pixel (what adaptive codecs learn as they go): mean |e| and mean e
        # over causal windows of growing size
        areas = [(_causal_mean(e.abs(), r), _causal_mean(e, r)) for r in _AREAS[: self.area]]
        k, m = len(self.offsets), self.n_mix
        per_plane = []
        for c, net in enumerate(self.nets[: planes.shape[1]]):
            sl = slice(c, c + 1)
            s, p = scale[:, sl], pred[:, sl]
            feats = [_squash(g[:, sl]) for g in grads] + [_squash(r[:, sl] / s) for r in nb_e] + [log_scale[:, sl] / 3]
            for act, bias in areas:
                feats += [(act[:, sl] + 0.3).log() / 3, _squash(bias[:, sl] / s)]
            for j in range(c):  # the planes coded before at this pixel: their residual and scale
                feats += [_squash(e[:, j : j + 1] / scale[:, j : j + 1]), log_scale[:, j : j + 1] / 3]
            # bounded outputs (|.| < 4): unbounded, a few large features sent the scales to overflow in training
            out = torch.tanh(net(torch.cat(feats, 1)) / 4) * 4
            # mean: MED + weighted neighbour offsets from it + the same-pixel residuals of the planes coded before
            mean = p + sum(out[:, i : i + 1] * (v[:, sl] - p) for i, v in enumerate(nb))
            for j in range(c):
                mean = mean + out[:, k + 3 * m + j : k + 3 * m + j + 1] * e[:, j : j + 1] * (s / scale[:, j : j + 1])
            shift, log_mult, logits = out[:, k : k + m], out[:, k + m : k + 2 * m], out[:, k + 2 * m : k + 3 * m]
            t = planes[:, sl] - mean - shift * s
            comp = _logistic_bin_log_prob(t, (s * log_mult.exp()).clamp(min=self.min_scale), edge[:, sl])
            per_plane.append(-torch.logsumexp(F.log_softmax(logits, 1) + comp, 1, keepdim=True) / _LOG2)
        return torch.cat(per_plane, 1)
