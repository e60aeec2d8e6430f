"""Input checks shared by every public entry point.

Each check raises ``ValueError`` (or ``TypeError``) naming the offending argument, so that bad
input fails before any long computation starts.
"""

from __future__ import annotations

import math

import torch

# Pixel images may carry float round-off from a normalisation round trip.
RANGE_TOLERANCE = 1e-4


def check_pixel_images(x: object, name: str = "x", channels: tuple[int, ...] = (1, 3)) -> torch.Tensor:
    """Check that ``x`` is a float image batch (B, C, H, W) with values in [0, 1].

    Returns ``x`` unchanged (clamped into [0, 1] where it only exceeds it by round-off).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W); got {x.dim()} dimensions {tuple(x.shape)}")
    if x.shape[1] not in channels:
        raise ValueError(f"{name} must have {' or '.join(map(str, channels))} channels; got {x.shape[1]} (shape {tuple(x.shape)})")
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor with values in [0, 1]; got dtype {x.dtype}")
    with torch.no_grad():
        # One pass for both checks (NaN propagates into min and max, an infinity shows in one of them):
        # every engine step and every estimator call passes through here.
        lo, hi = (float(v) for v in torch.aminmax(x))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise ValueError(f"{name} must hold pixel values in [0, 1]; got range [{lo:.4g}, {hi:.4g}]")
    if lo < 0 or hi > 1:
        x = x.clamp(0, 1)
    return x


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or infinite values."""
    with torch.no_grad():
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
