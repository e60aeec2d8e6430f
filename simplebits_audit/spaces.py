"""Pixel space vs. model space (SPEC section 4).

Users' models take normalised tensors ("model space"); estimators rate pixels in [0, 1] ("pixel
space"). A :class:`Spaces` object converts between the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._helpers import Transform


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass(frozen=True)
class Spaces:
    """Conversions ``to_pixels`` (model -> [0, 1]) and ``to_model`` ([0, 1] -> model), differentiable."""

    to_pixels: Transform = _identity
    to_model: Transform = _identity

    @classmethod
    def from_normalization(cls, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor) -> Spaces:
        """Spaces for a model that takes ``(pixels - mean) / std`` per channel."""
        mean_t = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        if mean_t.numel() != std_t.numel():
            raise ValueError(f"normalization: mean has {mean_t.numel()} values but std has {std_t.numel()}")
        if bool((std_t <= 0).any()):
            raise ValueError("normalization: every std must be positive")

        def fits(x: torch.Tensor) -> None:
            # else broadcasting fails deep inside torch, or (one image channel) silently spreads it over the values
            # (a tensor of another shape is the inputs' check's to refuse, by their name)
            if mean_t.numel() != 1 and x.dim() == 4 and x.shape[1] != mean_t.numel():
                raise ValueError(f"normalization: {mean_t.numel()} values per mean and std, but the images have "
                                 f"{x.shape[1]} channels (expected (B, {mean_t.numel()}, H, W))")

        def to_pixels(x: torch.Tensor) -> torch.Tensor:
            fits(x)
            return x * std_t.to(x) + mean_t.to(x)

        def to_model(x: torch.Tensor) -> torch.Tensor:
            fits(x)
            return (x - mean_t.to(x)) / std_t.to(x)

        return cls(to_pixels, to_model)


def make_spaces(
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    transforms: tuple[Transform, Transform] | None = None,
) -> Spaces:
    """Build :class:`Spaces` from ``normalization=(mean, std)`` or ``transforms=(to_pixels, to_model)``."""
    if normalization is not None and transforms is not None:
        raise ValueError("normalization and transforms: give at most one of them")
    if normalization is not None:
        if len(normalization) != 2:
            raise ValueError("normalization: expected a pair (mean, std)")
        return Spaces.from_normalization(*normalization)
    if transforms is not None:
        if len(transforms) != 2 or not all(callable(t) for t in transforms):
            raise ValueError("transforms: expected a pair of callables (to_pixels, to_model)")
        return Spaces(*transforms)
    return Spaces()
