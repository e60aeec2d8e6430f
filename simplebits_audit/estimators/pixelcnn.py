"""Local autoregressive estimator: a PixelCNN with a tiny receptive field (in the spirit of NeLLoC).

One causally masked k x k convolution sees the pixels above and to the left, a stack of 1x1
residual layers turns that context into a discretised logistic mixture per pixel (PixelCNN++),
whose means for G and B depend linearly on the pixel's own R (and G). Because the model is fully
convolutional with a small receptive field it rates any image size, and its per-pixel negative
log-likelihood is the bits map. Grayscale images are replicated to RGB.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .analytic import med_predict
from .base import BitEstimator

_LOG2 = math.log(2.0)


class CausalConv2d(nn.Conv2d):
    """k x k convolution that sees only the rows above and the pixels to the left (mask 'A')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        mask = torch.ones(kernel_size, kernel_size)
        mask[kernel_size // 2, kernel_size // 2 :] = 0
        mask[kernel_size // 2 + 1 :] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def logistic_mixture_log_prob(x: torch.Tensor, params: torch.Tensor, n_mix: int) -> torch.Tensor:
    """Per-pixel log-likelihood (nats) of RGB ``x`` in [-1, 1] under a discretised logistic mixture.

    Parameters
    ----------
    x : Tensor, shape (B, 3, H, W)
    params : Tensor, shape (B, 10 * n_mix, H, W)
        Mixture logits, then per channel the means, log-scales and channel coefficients.

    Returns
    -------
    Tensor, shape (B, 1, H, W)
    """
    b, _, h, w = x.shape
    logits = params[:, :n_mix]
    rest = params[:, n_mix:].view(b, 3, 3, n_mix, h, w)  # (B, {mean, log_scale, coeff}, channel, K, H, W)
    means, log_scales, coeffs = rest[:, 0], rest[:, 1].clamp(min=-7.0), torch.tanh(rest[:, 2])
    xk = x.unsqueeze(2)  # (B, 3, 1, H, W)
    # Autoregression across channels inside the pixel: G depends on R, B on R and G.
    m_r = means[:, 0]
    m_g = means[:, 1] + coeffs[:, 0] * xk[:, 0]
    m_b = means[:, 2] + coeffs[:, 1] * xk[:, 0] + coeffs[:, 2] * xk[:, 1]
    centred = xk - torch.stack([m_r, m_g, m_b], 1)
    inv_s = torch.exp(-log_scales)
    plus_in = inv_s * (centred + 1.0 / 255)
    min_in = inv_s * (centred - 1.0 / 255)
    log_cdf_plus = plus_in - F.softplus(plus_in)  # bin at 0: all mass below
    log_sf_min = -F.softplus(min_in)  # bin at 255: all mass above
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    mid_in = inv_s * centred
    log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)  # density approximation in far tails
    log_delta = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid - math.log(127.5))
    log_probs = torch.where(xk < -0.999, log_cdf_plus, torch.where(xk > 0.999, log_sf_min, log_delta))
    joint = log_probs.sum(1) + F.log_softmax(logits, 1)  # (B, K, H, W)
    return torch.logsumexp(joint, 1, keepdim=True)


class LocalPixelCNN(BitEstimator):
    """Small-receptive-field PixelCNN with a discretised logistic mixture output.

    Parameters
    ----------
    hidden : int
        Width of the 1x1 layers.
    kernel_size : int
        Size of the causal first convolution; the receptive field is its upper half.
    n_blocks : int
        Number of 1x1 residual blocks.
    n_mix : int
        Logistic mixture components.
    """

    name = "pixelcnn"
    native_channels = (3,)

    def __init__(self, hidden: int = 64, kernel_size: int = 7, n_blocks: int = 2, n_mix: int = 5) -> None:
        super().__init__()
        self.config = {"hidden": hidden, "kernel_size": kernel_size, "n_blocks": n_blocks, "n_mix": n_mix}
        self.n_mix = n_mix
        self.context = CausalConv2d(3, hidden, kernel_size)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1)) for _ in range(n_blocks)
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, 10 * n_mix, 1))
        # Start near a sensible coder: narrow logistics (scale ~ 4 grey levels) whose means are
        # the median-edge prediction of the same channel; the network learns corrections to it.
        with torch.no_grad():
            self.head[1].weight.mul_(0.05)
            bias = self.head[1].bias.view(10, n_mix)
            bias.zero_()
            bias[4:7] = -3.5

    def _bits_map(self, x: torch.Tensor, noise: bool, generator: torch.Generator | None) -> torch.Tensor:
        # A discrete model: no dequantisation noise needed, ``noise`` is ignored.
        xs = x * 2 - 1
        h = self.context(xs)
        for block in self.blocks:
            h = h + block(h)
        params = self.head(h)
        b, _, height, width = params.shape
        med = med_predict(xs, start=0.0).unsqueeze(2)  # (B, 3, 1, H, W), causal
        means = params[:, self.n_mix : 4 * self.n_mix].view(b, 3, self.n_mix, height, width) + med
        params = torch.cat([params[:, : self.n_mix], means.flatten(1, 2), params[:, 4 * self.n_mix :]], 1)
        return -logistic_mixture_log_prob(xs, params, self.n_mix) / _LOG2
