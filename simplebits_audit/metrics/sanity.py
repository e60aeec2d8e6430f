"""Sanity check of a saliency method: does its map change when the model is destroyed?

The model-parameter randomisation test of Adebayo et al. (2018), "Sanity checks for saliency
maps": a map that stays the same when the classifier's weights are replaced by random ones
describes the image (edges, brightness), not the model. :func:`model_randomisation` re-initialises
*every* weight of a deep copy of the classifier (the full re-initialisation; the paper's main
variant cascades from the top layer down, one layer more at a time), explains the same images for
the same targets with the same method and seed, and returns per image the Spearman rank
correlation between the absolute maps of the trained and of the randomised model. **Lower is
better**: near 1, the method ignores the model; near 0, its map depends on what the model learned.

Details that matter:

- The user's model is never modified: only the copy is re-initialised, seeded without touching
  the caller's random state. The generator is seeded with a number derived from ``seed``
  (:func:`randomisation_seed`), not ``seed`` itself: a model built right after
  ``torch.manual_seed(seed)`` would otherwise be "re-initialised" to exactly its own weights.
- Re-initialisation calls ``reset_parameters()`` of every module that has one (PyTorch's own
  initialisers: Linear, Conv, BatchNorm, which also resets its running statistics, ...).
  Parameters no such module owns (custom layers, TorchScript modules, which do not export
  ``reset_parameters``) have their entries shuffled instead (a seeded permutation per tensor:
  the same values, none where it was), so no weight keeps its trained place.
- Both explanations use the same target: the trained model's (its prediction when ``target`` is
  None), so the randomised model is asked about the same class.
- The rank correlation is :func:`scipy.stats.spearmanr` (ties get average ranks). It is undefined
  when either map is constant (e.g. all zeros) or not finite: that image gets NaN (``null`` in
  JSON) rather than a number; callers average with ``nanmean`` and report how many were undefined
  (:func:`undefined`).
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .._helpers import as_tuple, model_guard, resolve_target, seeded


def randomisation_seed(seed: int) -> int:
    """The torch seed the re-initialisation draws from for ``seed`` (derived, so it never equals a seed a user built the model with)."""
    return int.from_bytes(hashlib.sha256(f"simplebits-randomisation:{seed}".encode()).digest()[:6], "big")


def randomised_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with every weight re-initialised (see the module docstring); ``model`` is untouched.

    ``TypeError`` naming ``model`` for anything but a ``torch.nn.Module`` (a plain function has no
    weights to re-initialise) or a module that cannot be copied.
    """
    if not isinstance(model, nn.Module):
        raise TypeError("model: the randomisation test re-initialises the model's weights and needs a torch.nn.Module, "
                        f"got {type(model).__name__}")
    try:
        clone = copy.deepcopy(model)
    except Exception as err:  # noqa: BLE001 -- whatever deepcopy raises, the user needs to know which argument
        raise TypeError(f"model: cannot be copied for the randomisation test ({type(err).__name__}: {err})") from err
    with seeded(randomisation_seed(seed), [p.device for p in clone.parameters()]), torch.no_grad():
        reset: set[int] = set()
        for module in clone.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
                reset.update(id(p) for p in module.parameters(recurse=False))
        for p in clone.parameters():
            if id(p) not in reset and p.numel() > 1:
                perm = torch.randperm(p.numel(), device=p.device)
                p.copy_(p.detach().flatten()[perm].view_as(p))
    return clone


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per image between maps ``a`` and ``b`` (B, ...), a double tensor (B,).

    NaN for an image whose map is constant or holds a non-finite value in either tensor.
    """
    from scipy.stats import spearmanr

    if a.shape != b.shape:
        raise ValueError(f"maps: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
    x = a.detach().double().flatten(1).cpu().numpy()
    y = b.detach().double().flatten(1).cpu().numpy()
    out = np.full(len(x), np.nan)
    for i, (u, v) in enumerate(zip(x, y)):
        if np.isfinite(u).all() and np.isfinite(v).all() and np.ptp(u) > 0 and np.ptp(v) > 0:
            out[i] = spearmanr(u, v).statistic
    return torch.from_numpy(out)


def model_randomisation(
    explain_fn: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor],
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    maps: torch.Tensor | None = None,
    additional_forward_args: Any = None,
    seed: int = 0,
) -> torch.Tensor:
    """Spearman correlation (B,) between the absolute maps of ``model`` and of a randomised copy of it; lower is better.

    Parameters
    ----------
    explain_fn : callable
        ``explain_fn(model, inputs, target)`` -> a map per image, (B, 1, H, W) or (B, C, H, W)
        (absolute values are compared). Called with the randomised copy (and with ``model`` unless
        ``maps`` is given); it must seed itself the same way for both (pass a fixed seed).
    model : torch.nn.Module
        The trained classifier (model-space images -> logits). Never modified.
    inputs : Tensor (B, C, H, W)
        Model-space images.
    target : None, int, list or Tensor (B,)
        The class explained for both models; ``None``: ``model``'s prediction.
    maps : Tensor, optional
        ``model``'s maps if already computed (saves one explanation).
    additional_forward_args : any, optional
        Only used to predict the target when ``target`` is None.
    seed : int
        Seeds the re-initialisation.

    Returns
    -------
    Tensor (B,), float64
        NaN where the correlation is undefined (a constant or non-finite map): see :func:`undefined`.
    """
    clone = randomised_copy(model, seed)
    with model_guard(model), torch.no_grad():
        t = resolve_target(target, inputs.shape[0], predict=lambda: model(inputs, *as_tuple(additional_forward_args)), device=inputs.device)
    if maps is None:
        maps = explain_fn(model, inputs, t)
    with warnings.catch_warnings():
        # e.g. "a learned simplifier trained against another classifier": the copy is another classifier by design
        warnings.simplefilter("ignore", UserWarning)
        random_maps = explain_fn(clone, inputs, t)
    return rank_correlation(maps.abs(), random_maps.abs())


def undefined(correlations: torch.Tensor) -> torch.Tensor:
    """1.0 where :func:`model_randomisation` could not define a correlation (NaN), else 0.0: (B,) double."""
    return torch.isnan(correlations).double()


__all__ = ["model_randomisation", "randomisation_seed", "randomised_copy", "rank_correlation", "undefined"]
