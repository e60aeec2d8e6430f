"""Faithfulness: does changing what the map points at change the model's answer?

``deletion_auc`` / ``insertion_auc`` follow RISE (Petsiuk et al. 2018): pixels are taken in the
map's order (highest first; ties broken at random, seeded) and progressively replaced by a
reference (deletion) or revealed from it (insertion); the target's probability along the way is
the curve, and its area over the fraction of pixels changed, in [0, 1], the score. The
probability follows the model's output head: the target class's softmax probability, or for
``head="sigmoid"`` the target label's own sigmoid probability (the quantity the baselines
attribute). Lower is better for deletion, higher for insertion. All work happens in the model's
input space: the default reference, a Gaussian blur of the image, commutes with per-channel
normalisation.

``infidelity`` and ``sensitivity`` are thin wrappers over Captum's metrics with fixed, seeded
perturbations. Everything returns one value per image, a tensor (B,).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from captum.metrics import infidelity as _captum_infidelity
from captum.metrics import sensitivity_max

from .._helpers import ForwardFunc, as_tuple, blur, resolve_target, seeded, slice_args
from ..simplification.heads import check_head, probabilities


def pixel_order(maps: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Rank of every pixel by its map value, 0 = most relevant: LongTensor (B, 1, H, W).

    Ties (flat regions, superpixel maps) are broken by a seeded random permutation, so a constant
    map orders pixels at random rather than in raster order.
    """
    if not isinstance(maps, torch.Tensor) or maps.dim() != 4 or maps.shape[1] != 1:
        raise ValueError(f"maps: expected a tensor of shape (B, 1, H, W), got {getattr(maps, 'shape', type(maps).__name__)}")
    flat = maps.detach().flatten(1)
    b, n = flat.shape
    gen = torch.Generator().manual_seed(seed)
    perm = torch.rand(b, n, generator=gen).argsort(1).to(flat.device)
    order = perm.gather(1, flat.gather(1, perm).sort(dim=1, descending=True, stable=True).indices)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n, device=flat.device).expand(b, n).contiguous())
    return ranks.view_as(maps)


def make_reference(inputs: torch.Tensor, reference: str | float | torch.Tensor = "blur") -> torch.Tensor:
    """The replacement image: ``"blur"`` (Gaussian, sigma = side / 10), ``"mean"`` (each image's mean colour),
    a number (constant) or a tensor broadcastable to ``inputs`` (B, C, H, W)."""
    if isinstance(reference, torch.Tensor):
        return reference.to(inputs).expand_as(inputs)
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        return torch.full_like(inputs, float(reference))
    if reference == "blur":
        return blur(inputs)
    if reference == "mean":
        return inputs.mean((2, 3), keepdim=True).expand_as(inputs)
    raise ValueError(f"reference: expected 'blur', 'mean', a number or a tensor, got {reference!r}")


def target_probability(logits: torch.Tensor, target: torch.Tensor, head: str = "softmax") -> torch.Tensor:
    """The target's probability (B,) under the output head: softmax over classes, or the target label's sigmoid."""
    return probabilities(logits, head).gather(1, target[:, None])[:, 0]


def _probs(forward_func: ForwardFunc, x: torch.Tensor, target: torch.Tensor, args: Any, batch_size: int,
           head: str) -> torch.Tensor:
    out = []
    batch = x.shape[0]
    for start in range(0, batch, batch_size):
        sl = slice(start, start + batch_size)
        logits = forward_func(x[sl], *as_tuple(slice_args(args, sl, batch)))
        out.append(target_probability(logits, target[sl], head))
    return torch.cat(out)


@torch.no_grad()
def perturbation_curve(
    forward_func: ForwardFunc,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    target: Any = None,
    *,
    mode: str = "deletion",
    steps: int = 16,
    reference: str | float | torch.Tensor = "blur",
    additional_forward_args: Any = None,
    batch_size: int = 256,
    seed: int = 0,
    head: str = "softmax",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The RISE deletion or insertion curve.

    Parameters
    ----------
    forward_func : callable
        Model-space images -> logits (B, K).
    inputs : Tensor (B, C, H, W)
        Model-space images.
    maps : Tensor (B, 1, H, W)
        Relevance; pixels are changed highest first.
    target : None, int, list or Tensor (B,)
        Class whose probability is tracked; ``None`` = the prediction on ``inputs``.
    mode : {"deletion", "insertion"}
        Replace the top pixels by the reference / reveal them on top of the reference.
    steps : int
        The curve has ``steps + 1`` points, at fractions 0, 1/steps, ..., 1 of the pixels.
    reference : "blur", "mean", number or Tensor
        See :func:`make_reference`.
    head : {"softmax", "sigmoid"}
        The model's output head: the tracked probability is the target class's softmax
        probability, or the target label's sigmoid probability (one logit per label).

    Returns
    -------
    fractions : Tensor (steps + 1,)
    probs : Tensor (steps + 1, B)
        Target probability at each fraction.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode: expected 'deletion' or 'insertion', got {mode!r}")
    if steps < 1:
        raise ValueError(f"steps: need at least 1, got {steps}")
    check_head(head)
    if maps.shape[0] != inputs.shape[0] or maps.shape[-2:] != inputs.shape[-2:]:
        raise ValueError(f"maps: shape {tuple(maps.shape)} does not match inputs {tuple(inputs.shape)}")
    inputs = inputs.detach()
    ranks = pixel_order(maps, seed)
    ref = make_reference(inputs, reference)
    t = resolve_target(
        target, inputs.shape[0], predict=lambda: forward_func(inputs, *as_tuple(additional_forward_args)), device=inputs.device
    )
    n_pixels = ranks[0].numel()
    fractions = torch.linspace(0, 1, steps + 1)
    curve = []
    for f in fractions.tolist():
        changed = ranks < round(f * n_pixels)  # (B, 1, H, W)
        x = torch.where(changed, ref, inputs) if mode == "deletion" else torch.where(changed, inputs, ref)
        curve.append(_probs(forward_func, x, t, additional_forward_args, batch_size, head))
    return fractions, torch.stack(curve)


def deletion_auc(forward_func: ForwardFunc, inputs: torch.Tensor, maps: torch.Tensor, target: Any = None, **kwargs: Any) -> torch.Tensor:
    """Area under the deletion curve, (B,), in [0, 1]: lower = the map found what the model uses.

    Keyword arguments as :func:`perturbation_curve` (``steps``, ``reference``, ...).
    """
    fractions, probs = perturbation_curve(forward_func, inputs, maps, target, mode="deletion", **kwargs)
    return torch.trapezoid(probs.double(), fractions.double().to(probs.device), dim=0)


def insertion_auc(forward_func: ForwardFunc, inputs: torch.Tensor, maps: torch.Tensor, target: Any = None, **kwargs: Any) -> torch.Tensor:
    """Area under the insertion curve, (B,), in [0, 1]: higher = the map found what the model uses.

    Keyword arguments as :func:`perturbation_curve` (``steps``, ``reference``, ...).
    """
    fractions, probs = perturbation_curve(forward_func, inputs, maps, target, mode="insertion", **kwargs)
    return torch.trapezoid(probs.double(), fractions.double().to(probs.device), dim=0)


def infidelity(
    forward_func: ForwardFunc,
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    target: Any = None,
    *,
    noise_scale: float = 0.02,
    n_perturb_samples: int = 10,
    normalize: bool = True,
    additional_forward_args: Any = None,
    max_examples_per_batch: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Captum's infidelity under Gaussian input noise (std ``noise_scale`` in model space), (B,).

    E[(I . attr - (f(x) - f(x - I)))^2] for the target's logit; ``normalize=True`` rescales the
    attributions optimally first, so only their direction counts. Lower is better.

    Parameters
    ----------
    inputs, attributions : Tensor (B, C, H, W)
        Attributions shaped like the inputs (not a (B, 1, H, W) map).
    """
    if attributions.shape != inputs.shape:
        raise ValueError(f"attributions: expected shape {tuple(inputs.shape)} like inputs, got {tuple(attributions.shape)}")
    x = inputs.detach()
    t = resolve_target(target, x.shape[0], predict=lambda: forward_func(x, *as_tuple(additional_forward_args)), device=x.device)

    def perturb(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn_like(x) * noise_scale
        return noise, x - noise

    with seeded(seed, [inputs.device]):
        return _captum_infidelity(
            forward_func, perturb, inputs.detach(), attributions.detach(), additional_forward_args=additional_forward_args,
            target=t, n_perturb_samples=n_perturb_samples, max_examples_per_batch=max_examples_per_batch, normalize=normalize,
        ).detach()


def sensitivity(
    explanation_func: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    target: Any = None,
    *,
    perturb_radius: float = 0.02,
    n_perturb_samples: int = 5,
    max_examples_per_batch: int | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> torch.Tensor:
    """Captum's ``sensitivity_max``: the largest relative change of the explanation under uniform
    input noise within ``perturb_radius`` (model space, L-infinity), (B,). Lower is better.

    ``explanation_func(inputs, target=..., **kwargs)`` gets a plain tensor (B, C, H, W) and must
    return attributions of that shape. ``target`` is passed through (repeated per perturbation by
    Captum), so resolve ``None`` to classes first if the explanation depends on it.
    """

    def explain(x: Any, **kw: Any) -> Any:
        # Captum calls with a tuple first (and then expects a tuple back), then with plain tensors.
        if isinstance(x, tuple):
            return (explanation_func(x[0], **kw).contiguous(),)
        return explanation_func(x, **kw).contiguous()

    with seeded(seed, [inputs.device]):
        return sensitivity_max(
            explain, inputs.detach(), perturb_radius=perturb_radius, n_perturb_samples=n_perturb_samples,
            max_examples_per_batch=max_examples_per_batch, target=target, **kwargs,
        ).detach()
