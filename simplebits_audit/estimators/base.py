"""The bit-estimator contract shared by every estimator (SPEC section 3).

A bit estimator is a frozen ``torch.nn.Module`` that says how many bits an 8-bit image costs under
a generative model. Subclasses implement one method, :meth:`BitEstimator._bits_map`; this base
class validates the input, adapts the channel count, pads to supported sizes and crops the map
back, so that ``bits_map`` always sums to ``bits``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_pixel_images


class BitEstimator(nn.Module):
    """Base class: ``bits(x)``, ``bpd(x)`` and ``bits_map(x)`` for pixel images in [0, 1].

    Subclasses set :attr:`native_channels` (channel counts the model rates directly; a grayscale
    image given to an RGB-only model is replicated to three channels) and :attr:`size_multiple`
    (inputs are replicate-padded up to a multiple of it; the padded pixels' bits are dropped).
    """

    #: registry name, filled in by subclasses
    name: ClassVar[str] = "base"
    #: channel counts the model rates natively
    native_channels: ClassVar[tuple[int, ...]] = (3,)
    #: height and width must be multiples of this (handled by padding)
    size_multiple: ClassVar[int] = 1

    def __init__(self) -> None:
        super().__init__()
        #: model card (training data, steps, held-out bpd, parameters, licence), filled by loaders
        self.card: dict[str, Any] = {}

    # -- the one method subclasses implement ---------------------------------------------------
    def _bits_map(self, x: torch.Tensor, noise: bool, generator: torch.Generator | None) -> torch.Tensor:
        """Per-pixel bits (B, 1, H, W) for ``x`` (B, C, H, W) in [0, 1], C in native_channels."""
        raise NotImplementedError

    # -- public contract ----------------------------------------------------------------------
    def bits_map(
        self, x: torch.Tensor, *, noise: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Bits spent on each pixel.

        Parameters
        ----------
        x : Tensor, shape (B, C, H, W)
            Pixel images in [0, 1], C = 1 or 3.
        noise : bool
            Use random dequantisation noise (for optimisation) instead of the fixed offset used
            for reporting. Estimators without dequantisation ignore it.
        generator : torch.Generator, optional
            Source of the dequantisation noise.

        Returns
        -------
        Tensor, shape (B, 1, H, W)
            Bits per pixel (summed over channels); ``bits_map(x).sum((1, 2, 3)) == bits(x)``.
        """
        x = check_pixel_images(x, "x")
        if x.shape[1] not in self.native_channels:
            x = x.expand(-1, 3, -1, -1)  # grayscale into an RGB-only model: replicate
        h, w = x.shape[-2:]
        m = self.size_multiple
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        bmap = self._bits_map(x, noise, generator)
        return bmap[..., :h, :w]

    def bits(self, x: torch.Tensor, *, noise: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Total bits per image, shape (B,)."""
        return self.bits_map(x, noise=noise, generator=generator).flatten(1).sum(1)

    def bpd(self, x: torch.Tensor, *, noise: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Bits per dimension, shape (B,): bits divided by the input's C * H * W."""
        return self.bits(x, noise=noise, generator=generator) / math.prod(x.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`bits`."""
        return self.bits(x)

    def freeze(self) -> BitEstimator:
        """Evaluation mode, no parameter gradients: how every loaded estimator is handed out."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"name={self.name!r}, parameters={self.num_parameters}"


def dequantize(x: torch.Tensor, noise: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Map [0, 1] pixels to the continuous bin position ``(255 x + u) / 256``.

    ``u`` is uniform in [0, 1) when ``noise`` is set and 0.5 (the bin centre) otherwise, so
    reported numbers are reproducible.
    """
    if noise:
        device = generator.device if generator is not None else x.device
        u = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    else:
        u = torch.full_like(x, 0.5)
    return (x * 255 + u) / 256
