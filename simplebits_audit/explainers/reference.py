"""Trivial reference maps that look at the image only, never at the model (SPEC section 6).

A testbed on which one of these localises the ground truth as well as a real method measures
the wrong thing. They take the same arguments as the real methods and ignore ``forward_func``
and ``target``. Pixel values come from ``to_pixels(inputs)`` when given; otherwise each image is
rescaled to [0, 1] by its own min and max (monotone, so the maps' orderings are those of the raw
model-space values for un-normalised models). Every map is repeated over the input's channels.
"""

from __future__ import annotations

from typing import Any

import torch

from .._helpers import ForwardFunc, Transform, expand_map, unit_range


def _pixels(inputs: torch.Tensor, to_pixels: Transform | None) -> torch.Tensor:
    with torch.no_grad():
        return to_pixels(inputs).clamp(0, 1) if to_pixels is not None else unit_range(inputs)


def brightness(
    forward_func: ForwardFunc | None, inputs: torch.Tensor, target: Any = None, additional_forward_args: Any = None, *,
    to_pixels: Transform | None = None,
) -> torch.Tensor:
    """Mean over channels of the pixel values."""
    return expand_map(_pixels(inputs, to_pixels).mean(1, keepdim=True), inputs)


def darkness(
    forward_func: ForwardFunc | None, inputs: torch.Tensor, target: Any = None, additional_forward_args: Any = None, *,
    to_pixels: Transform | None = None,
) -> torch.Tensor:
    """One minus the mean over channels of the pixel values."""
    return expand_map(1 - _pixels(inputs, to_pixels).mean(1, keepdim=True), inputs)


def contrast(
    forward_func: ForwardFunc | None, inputs: torch.Tensor, target: Any = None, additional_forward_args: Any = None, *,
    to_pixels: Transform | None = None,
) -> torch.Tensor:
    """Largest channel difference from the image's mean colour (what stands out from the background)."""
    pixels = _pixels(inputs, to_pixels)
    return expand_map((pixels - pixels.mean((2, 3), keepdim=True)).abs().amax(1, keepdim=True), inputs)


def max_channel(
    forward_func: ForwardFunc | None, inputs: torch.Tensor, target: Any = None, additional_forward_args: Any = None, *,
    to_pixels: Transform | None = None,
) -> torch.Tensor:
    """Maximum over channels of the pixel values (saturated colours score high)."""
    return expand_map(_pixels(inputs, to_pixels).amax(1, keepdim=True), inputs)


def edges(
    forward_func: ForwardFunc | None, inputs: torch.Tensor, target: Any = None, additional_forward_args: Any = None, *,
    to_pixels: Transform | None = None,
) -> torch.Tensor:
    """Sobel gradient magnitude (scikit-image) of the grey-level image: any outline scores high."""
    from skimage.filters import sobel

    grey = _pixels(inputs, to_pixels).mean(1).detach().cpu().double().numpy()
    out = torch.stack([torch.from_numpy(sobel(g)) for g in grey]).unsqueeze(1)
    return expand_map(out.to(inputs.device), inputs)


def centre(
    forward_func: ForwardFunc | None, inputs: torch.Tensor, target: Any = None, additional_forward_args: Any = None, *,
    sigma: float = 0.25,
) -> torch.Tensor:
    """A centred Gaussian with standard deviation ``sigma`` times the image side (the centre prior)."""
    h, w = inputs.shape[-2:]
    yy = (torch.arange(h, device=inputs.device, dtype=inputs.dtype) - (h - 1) / 2) / (sigma * h)
    xx = (torch.arange(w, device=inputs.device, dtype=inputs.dtype) - (w - 1) / 2) / (sigma * w)
    g = torch.exp(-(yy[:, None] ** 2 + xx[None, :] ** 2) / 2)
    return expand_map(g.expand(inputs.shape[0], 1, h, w), inputs)


def random(
    forward_func: ForwardFunc | None, inputs: torch.Tensor, target: Any = None, additional_forward_args: Any = None, *,
    seed: int = 0,
) -> torch.Tensor:
    """Uniform noise in [0, 1), one map per image, from ``seed`` (the global RNG is left alone)."""
    gen = torch.Generator().manual_seed(seed)
    h, w = inputs.shape[-2:]
    return expand_map(torch.rand(inputs.shape[0], 1, h, w, generator=gen).to(inputs.device), inputs)
