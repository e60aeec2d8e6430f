"""The Captum baselines and trivial reference maps: the explainer registry without the explainers that simplify.

>>> from simplebits_audit import baselines
>>> attr = baselines.attribute("ig", model, inputs, target=labels)      # (B, C, H, W), like inputs
>>> amap = baselines.to_map(attr)                                       # (B, 1, H, W), sum of |attr|
>>> attr, seconds = baselines.attribute_timed("occlusion", model, inputs)

A view of :mod:`simplebits_audit.explainers` (one registry, one call): adding a method is one
function and one entry in :data:`simplebits_audit.explainers.EXPLAINERS`. The model is never
modified: parameters' ``requires_grad`` and ``.grad``, modules' modes and (for a model in
training mode) buffers are restored after every call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._helpers import blur, superpixels, unit_range
from ..explainers import EXPLAINERS, check_options, explain, find_last_conv, to_map
from ..explainers import ExplainerSpec as BaselineSpec

#: name -> method, in registry order: real methods first, then the trivial references.
BASELINES: dict[str, BaselineSpec] = {name: s for name, s in EXPLAINERS.items() if not s.simplifies}


def list_baselines(reference: bool | None = None) -> list[str]:
    """Registered names (in registry order); ``reference=True/False`` keeps only references / real methods."""
    return [n for n, s in BASELINES.items() if reference is None or s.reference == reference]


def get_spec(name: str) -> BaselineSpec:
    """The :class:`BaselineSpec` of ``name``; ``ValueError`` naming ``name`` if unknown."""
    if not isinstance(name, str) or name not in BASELINES:
        raise ValueError(f"name: unknown baseline {name!r}; choose from {list_baselines()}")
    return BASELINES[name]


def attribute(
    name: str,
    forward_func: Callable[..., torch.Tensor] | None,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    additional_forward_args: Any = None,
    **options: Any,
) -> torch.Tensor:
    """Attribute ``forward_func``'s output for ``target`` to ``inputs`` with method ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`BASELINES` (see :func:`list_baselines`).
    forward_func : callable or None
        Model-space images (B, C, H, W) (plus ``additional_forward_args``) -> logits (B, K). Only
        reference maps accept ``None``. ``deeplift`` and ``gradcam`` hook layers: they need a plain ``nn.Module``
        (not TorchScript, not a ``torch.export`` graph; refused before any work).
    inputs : Tensor, shape (B, C, H, W)
        Images in the model's input space. Not modified.
    target : None, int, list of int or Tensor (B,)
        The class to explain per image; ``None`` explains the predicted class.
    additional_forward_args : any, optional
        Extra arguments appended after the inputs when calling ``forward_func``.
    **options
        Method options (``BASELINES[name].options``), e.g. ``n_steps`` and
        ``internal_batch_size`` for ``ig``, ``n_samples`` for ``lime``, ``layer`` for ``gradcam``.

    Returns
    -------
    Tensor, shape (B, C, H, W)
        Same shape, dtype and device as ``inputs``, contiguous. Use :func:`to_map` for (B, 1, H, W).
    """
    return attribute_timed(name, forward_func, inputs, target, additional_forward_args=additional_forward_args, **options)[0]


def attribute_timed(
    name: str,
    forward_func: Callable[..., torch.Tensor] | None,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    additional_forward_args: Any = None,
    **options: Any,
) -> tuple[torch.Tensor, float]:
    """:func:`attribute` and its wall time in seconds (whole batch; CUDA synchronised)."""
    get_spec(name)
    e = explain(name, forward_func, inputs, target, additional_forward_args=additional_forward_args, **options)
    return e.attributions, e.seconds


__all__ = [
    "BASELINES",
    "BaselineSpec",
    "attribute",
    "attribute_timed",
    "blur",
    "check_options",
    "find_last_conv",
    "get_spec",
    "list_baselines",
    "superpixels",
    "to_map",
    "unit_range",
]
