"""Localisation: how well a map (B, 1, H, W) points at a ground-truth mask (B, 1, H, W).

Every function returns one value per image, a float64 tensor (B,); images whose mask is empty (or
full, for AUROC) get NaN, so callers average with ``nanmean``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(maps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten maps and masks to (B, H*W) float64 / bool after checking their shapes."""
    if not isinstance(maps, torch.Tensor) or maps.dim() != 4 or maps.shape[1] != 1:
        raise ValueError(f"maps: expected a tensor of shape (B, 1, H, W), got {getattr(maps, 'shape', type(maps).__name__)}")
    if not isinstance(masks, torch.Tensor) or masks.shape != maps.shape:
        raise ValueError(f"masks: expected shape {tuple(maps.shape)} like maps, got {getattr(masks, 'shape', type(masks).__name__)}")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps: contains NaN or infinite values")
    return maps.detach().flatten(1).double(), masks.detach().flatten(1).bool()


def average_ranks(scores: torch.Tensor) -> torch.Tensor:
    """1-based ranks along dim 1 of (B, N) scores, ties sharing their average rank."""
    ordered = scores.sort(1).values
    below = torch.searchsorted(ordered, scores.contiguous(), right=False)
    up_to = torch.searchsorted(ordered, scores.contiguous(), right=True)
    return (below + up_to + 1).double() / 2


def auroc(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Probability that a random mask pixel scores above a random background pixel (ties count 1/2).

    Parameters
    ----------
    maps : Tensor (B, 1, H, W)
    masks : Tensor (B, 1, H, W), bool

    Returns
    -------
    Tensor (B,)
        1 = perfect, 0.5 = chance, 0 = inverted; NaN where the mask is empty or full.
    """
    s, m = _check(maps, masks)
    pos = m.sum(1).double()
    neg = (~m).sum(1).double()
    rank_sum = (average_ranks(s) * m).sum(1)
    out = (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
    return torch.where((pos > 0) & (neg > 0), out, torch.full_like(out, float("nan")))


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Does the map's maximum fall inside the mask (grown by ``tolerance`` pixels)?

    With several tied maxima the score is the share of them inside the mask (a constant map scores
    the mask's area share, not a lucky 1).

    Returns
    -------
    Tensor (B,)
        1 (hit) or 0 (miss) without ties; NaN where the mask is empty.
    """
    s, m = _check(maps, masks)
    if tolerance > 0:
        grown = F.max_pool2d(masks.detach().double(), 2 * tolerance + 1, stride=1, padding=tolerance)
        m = grown.flatten(1) > 0
    top = s == s.amax(1, keepdim=True)
    out = (top & m).sum(1).double() / top.sum(1).double()
    return torch.where(m.any(1), out, torch.full_like(out, float("nan")))


def relevance_mass(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the positive relevance that lies inside the mask (Arras et al. 2022).

    Returns
    -------
    Tensor (B,)
        In [0, 1]; NaN where the mask is empty or the map has no positive value.
    """
    s, m = _check(maps, masks)
    pos = s.clamp_min(0)
    total = pos.sum(1)
    out = (pos * m).sum(1) / total
    return torch.where((total > 0) & m.any(1), out, torch.full_like(out, float("nan")))


def relevance_rank(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the map's top-K pixels inside the mask, K = the mask's size (Arras et al. 2022).

    Ties at the K-th value are shared in proportion (the expected score under random tie-breaking).

    Returns
    -------
    Tensor (B,)
        In [0, 1], 1 = the K highest pixels are exactly the mask; NaN where the mask is empty.
    """
    s, m = _check(maps, masks)
    k = m.sum(1)
    ordered = s.sort(1, descending=True).values
    threshold = ordered.gather(1, (k - 1).clamp_min(0)[:, None])
    above = s > threshold
    equal = s == threshold
    slots = (k - above.sum(1)).double()
    inside = (above & m).sum(1).double() + slots * (equal & m).sum(1).double() / equal.sum(1).clamp_min(1).double()
    out = inside / k.double()
    return torch.where(k > 0, out, torch.full_like(out, float("nan")))


def top_share_hit(maps: torch.Tensor, masks: torch.Tensor, share: float = 0.05) -> torch.Tensor:
    """Whether at least half of each mask lies in the map's top ``share`` of pixels (a shortcut "found").

    Ties at the cut count as inside only when the map is not constant: a random map puts about
    ``share`` of a small marker there, so "any marker pixel" would be met by chance.

    Parameters
    ----------
    maps : Tensor (B, 1, H, W)
    masks : Tensor (B, 1, H, W) bool
    share : float in (0, 1)

    Returns
    -------
    Tensor (B,) bool
    """
    s, m = _check(maps, masks)
    flat = s.double()
    cut = torch.quantile(flat, 1 - share, dim=1, keepdim=True)
    top = (flat >= cut) & (flat > flat.amin(1, keepdim=True))
    return (top & m).sum(1) >= 0.5 * m.sum(1).clamp_min(1)
