"""Glow (Kingma & Dhariwal 2018), the paper's bit estimator, with an exact per-pixel bits map.

Multi-scale flow: at each level the image is squeezed (2x2 space-to-depth), passed through
``depth`` steps of actnorm -> LU-decomposed invertible 1x1 convolution -> affine coupling (sigmoid
scale), and half the channels are factored out under a Gaussian conditioned on the other half.

Latents are returned *standardised* (``eps = (z - mean) / std`` under each level's prior), so the
all-zeros latent is the prior's mode at every level: the "very simple image" the paper starts
latent-space simplification from.

Bits map: every log-determinant and log-prior term of a level lives on that level's grid; each
position's term is spread evenly over the 2^l x 2^l pixels it covers, plus the 8 bits per channel
of the dequantisation bin, so the map sums exactly to the total. Heights and widths must be
multiples of 2^levels (other sizes are replicate-padded and the padding's bits dropped).
Grayscale is replicated to RGB.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import BitEstimator, dequantize

_LOG2 = math.log(2.0)
_LOG_2PI = math.log(2 * math.pi)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    return F.pixel_unshuffle(x, 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    return F.pixel_shuffle(x, 2)


class ActNorm(nn.Module):
    """Per-channel affine map, initialised from the first batch to zero mean and unit variance."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            with torch.no_grad():
                self.loc.copy_(-x.mean((0, 2, 3), keepdim=True))
                self.log_scale.copy_(-torch.log(x.std((0, 2, 3), keepdim=True) + 1e-6))
                self.initialized.fill_(1)
        logdet = self.log_scale.sum().expand(x.shape[0], *x.shape[2:])
        return (x + self.loc) * torch.exp(self.log_scale), logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.loc


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution with an LU-decomposed weight (cheap log-determinant)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight(self) -> torch.Tensor:
        eye = torch.eye(self.perm.shape[0], device=self.perm.device, dtype=self.lower.dtype)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight()
        logdet = self.log_s.sum().expand(x.shape[0], *x.shape[2:])
        return F.conv2d(x, w[:, :, None, None]), logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv2d(y, torch.inverse(self.weight())[:, :, None, None])


class ZeroConv2d(nn.Conv2d):
    """3x3 convolution initialised to zero, so every flow step starts as the identity."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)


class AffineCoupling(nn.Module):
    """Half the channels are shifted and scaled by a network of the other half."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels // 2, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            ZeroConv2d(hidden, channels),
        )

    def _shift_scale(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = self.net(xa).chunk(2, 1)
        return shift, torch.sigmoid(raw + 2.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x.chunk(2, 1)
        shift, scale = self._shift_scale(xa)
        return torch.cat([xa, (xb + shift) * scale], 1), torch.log(scale).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        ya, yb = y.chunk(2, 1)
        shift, scale = self._shift_scale(ya)
        return torch.cat([ya, yb / scale - shift], 1)


class FlowStep(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([ActNorm(channels), InvConv1x1(channels), AffineCoupling(channels, hidden)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(x.shape[0], *x.shape[2:])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


def _gaussian_log_prob(eps: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(z) per position (channels summed) with z = mean + exp(log_std) * eps."""
    return (-0.5 * (eps**2 + _LOG_2PI) - log_std).sum(1)


class Glow(BitEstimator):
    """Multi-scale Glow with exact bits maps and ``encode``/``decode`` of standardised latents.

    Parameters
    ----------
    levels : int
        Number of scales; inputs must be multiples of 2**levels (others are padded).
    depth : int
        Flow steps per level.
    hidden : int
        Width of the coupling networks.
    """

    name = "glow"
    native_channels = (3,)

    def __init__(self, levels: int = 3, depth: int = 8, hidden: int = 96) -> None:
        super().__init__()
        self.config = {"levels": levels, "depth": depth, "hidden": hidden}
        self.size_multiple = 2**levels
        self.levels = nn.ModuleList()
        self.priors = nn.ModuleList()
        channels = 3
        for level in range(levels):
            channels *= 4
            self.levels.append(nn.ModuleList(FlowStep(channels, hidden) for _ in range(depth)))
            last = level == levels - 1
            # Split levels: Gaussian for the factored-out half conditioned on the kept half.
            # Last level: a learned per-channel Gaussian (zero conv of a constant).
            self.priors.append(ZeroConv2d(channels // 2, channels) if not last else ZeroConv2d(1, 2 * channels))
            if not last:
                channels //= 2

    def _prior(self, level: int, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.priors[level](cond).chunk(2, 1)
        return mean, log_std

    def _flow(self, x: torch.Tensor, noise: bool, generator: torch.Generator | None):
        """Forward pass: standardised latents and per-level maps of log-density terms (nats)."""
        h = dequantize(x, noise, generator) - 0.5
        latents, level_maps = [], []
        n_levels = len(self.levels)
        for level, steps in enumerate(self.levels):
            h = squeeze(h)
            logdet = h.new_zeros(h.shape[0], *h.shape[2:])
            for step in steps:
                h, ld = step(h)
                logdet = logdet + ld
            if level < n_levels - 1:
                z, h = h[:, : h.shape[1] // 2], h[:, h.shape[1] // 2 :]
                mean, log_std = self._prior(level, h)
            else:
                z = h
                mean, log_std = self._prior(level, h.new_ones(h.shape[0], 1, *h.shape[2:]))
            eps = (z - mean) * torch.exp(-log_std)
            latents.append(eps)
            level_maps.append(logdet + _gaussian_log_prob(eps, log_std))
        return latents, level_maps

    def _bits_map(self, x: torch.Tensor, noise: bool, generator: torch.Generator | None) -> torch.Tensor:
        _, level_maps = self._flow(x, noise, generator)
        bits = torch.full_like(x[:, :1], 8.0 * x.shape[1])  # the 1/256-wide dequantisation bins
        for level, log_p in enumerate(level_maps):
            factor = 2 ** (level + 1)
            spread = F.interpolate(log_p.unsqueeze(1), scale_factor=factor, mode="nearest") / factor**2
            bits = bits - spread / _LOG2
        return bits

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Standardised latents of pixel images ``x`` (B, 3, H, W), H and W multiples of 2**levels.

        Returns one tensor per level, shapes (B, 6, H/2, W/2), (B, 12, H/4, W/4), ... and the top.
        """
        return self._flow(x, False, None)[0]

    def decode(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """Pixel images in [0, 1] from standardised latents (the inverse of :meth:`encode`)."""
        n_levels = len(self.levels)
        h = None
        for level in reversed(range(n_levels)):
            eps = latents[level]
            if level == n_levels - 1:
                mean, log_std = self._prior(level, eps.new_ones(eps.shape[0], 1, *eps.shape[2:]))
                h = mean + torch.exp(log_std) * eps
            else:
                mean, log_std = self._prior(level, h)
                h = torch.cat([mean + torch.exp(log_std) * eps, h], 1)
            for step in reversed(self.levels[level]):
                h = step.inverse(h)
            h = unsqueeze(h)
        x_cont = h + 0.5
        return ((x_cont * 256 - 0.5) / 255).clamp(0, 1)
