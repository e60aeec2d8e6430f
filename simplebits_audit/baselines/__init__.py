"""Captum baselines (and trivial reference maps) behind one registry and one call signature.

>>> from simplebits_audit import baselines
>>> attr = baselines.attribute("ig", model, inputs, target=labels)      # (B, C, H, W), like inputs
>>> amap = baselines.to_map(attr)                                       # (B, 1, H, W), sum of |attr|
>>> attr, seconds = baselines.attribute_timed("occlusion", model, inputs)

``inputs`` are in the model's space (Captum convention) and ``forward_func`` returns logits (B, K).
``target`` is Captum-style: ``None`` (the predicted class), an int, a list or a 1-D tensor.
The model is never modified: parameters' ``requires_grad`` and ``.grad`` and modules' modes are
restored after every call.

Adding a method is one entry in :data:`BASELINES`: a function
``fn(forward_func, inputs, target, additional_forward_args, *, <options>) -> Tensor`` shaped like
``inputs``; its keyword-only parameters are the options :func:`attribute` accepts for it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import _captum, _reference
from ._captum import find_last_conv
from ._utils import blur, check_inputs, model_guard, resolve_target, superpixels, unit_range


@dataclass(frozen=True)
class BaselineSpec:
    """One registered attribution method.

    Attributes
    ----------
    name : str
        Short name used by :func:`attribute`.
    fn : callable
        ``fn(forward_func, inputs, target, additional_forward_args, **options)`` -> Tensor like ``inputs``.
    captum : str or None
        The Captum class it wraps (``None`` for reference maps).
    reference : bool
        A trivial map that ignores the model (brightness, centre prior, ...): comparison tables
        label these; a testbed on which one wins is flawed (SPEC section 6).
    map_reduce : {"abs", "sum"}
        How :func:`to_map` should collapse this method's channels for a relevance map: ``"abs"``
        for per-pixel gradient methods (their sign flips from pixel to pixel), ``"sum"`` for
        region methods whose sign means "supports / opposes the target" (occlusion, ablation,
        LIME, Kernel SHAP, Grad-CAM) and for the references.
    description : str
        One line for tables and help texts.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    captum: str | None = None
    reference: bool = False
    map_reduce: str = "abs"
    description: str = ""

    @property
    def options(self) -> dict[str, Any]:
        """The options this method accepts, with their defaults."""
        params = inspect.signature(self.fn).parameters.values()
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}

    @property
    def needs_model(self) -> bool:
        return not self.reference


def _spec(name: str, fn: Callable[..., torch.Tensor], captum: str | None = None, reference: bool = False, map_reduce: str = "abs") -> BaselineSpec:
    return BaselineSpec(name, fn, captum, reference, "sum" if reference else map_reduce, (inspect.getdoc(fn) or "").split("\n")[0])


#: name -> method. Real methods first, then the trivial references.
BASELINES: dict[str, BaselineSpec] = {
    s.name: s
    for s in (
        _spec("ig", _captum.integrated_gradients, "IntegratedGradients"),
        _spec("saliency", _captum.saliency, "Saliency"),
        _spec("input_x_gradient", _captum.input_x_gradient, "InputXGradient"),
        _spec("gradient_shap", _captum.gradient_shap, "GradientShap"),
        _spec("deeplift", _captum.deeplift, "DeepLift"),
        _spec("occlusion", _captum.occlusion, "Occlusion", map_reduce="sum"),
        _spec("feature_ablation", _captum.feature_ablation, "FeatureAblation", map_reduce="sum"),
        _spec("gradcam", _captum.gradcam, "LayerGradCam", map_reduce="sum"),
        _spec("lime", _captum.lime, "Lime", map_reduce="sum"),
        _spec("kernel_shap", _captum.kernel_shap, "KernelShap", map_reduce="sum"),
        _spec("brightness", _reference.brightness, reference=True),
        _spec("darkness", _reference.darkness, reference=True),
        _spec("max_channel", _reference.max_channel, reference=True),
        _spec("edges", _reference.edges, reference=True),
        _spec("centre", _reference.centre, reference=True),
        _spec("random", _reference.random, reference=True),
    )
}


def list_baselines(reference: bool | None = None) -> list[str]:
    """Registered names (in registry order); ``reference=True/False`` keeps only references / real methods."""
    return [n for n, s in BASELINES.items() if reference is None or s.reference == reference]


def get_spec(name: str) -> BaselineSpec:
    """The :class:`BaselineSpec` of ``name``; ``ValueError`` naming ``name`` if unknown."""
    if not isinstance(name, str) or name not in BASELINES:
        raise ValueError(f"name: unknown baseline {name!r}; choose from {list_baselines()}")
    return BASELINES[name]


def check_options(name: str, options: dict[str, Any]) -> None:
    """``TypeError`` naming any option that method ``name`` does not take."""
    allowed = get_spec(name).options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"options: {name!r} does not take {unknown}; it takes {sorted(allowed)}")


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
        reference maps accept ``None``. ``deeplift`` and ``gradcam`` need an ``nn.Module``.
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
    spec = get_spec(name)
    check_options(name, options)
    x = check_inputs(inputs, "inputs")
    if spec.needs_model and not callable(forward_func):
        raise TypeError(f"forward_func: {name!r} needs a callable model returning logits (B, K), got {type(forward_func).__name__}")
    with model_guard(forward_func):
        t = resolve_target(forward_func if spec.needs_model else None, x, target, additional_forward_args)
        out = spec.fn(forward_func, x, t, additional_forward_args, **options)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise RuntimeError(f"baseline {name!r} returned shape {getattr(out, 'shape', None)}, expected {tuple(x.shape)}")
    return out.detach().to(x.dtype).contiguous()


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
    sync = inputs.is_cuda if isinstance(inputs, torch.Tensor) else False
    if sync:
        torch.cuda.synchronize(inputs.device)
    t0 = time.perf_counter()
    out = attribute(name, forward_func, inputs, target, additional_forward_args=additional_forward_args, **options)
    if sync:
        torch.cuda.synchronize(inputs.device)
    return out, time.perf_counter() - t0


def to_map(attributions: torch.Tensor, reduce: str = "abs") -> torch.Tensor:
    """Collapse channels for display and metrics: (B, C, H, W) -> (B, 1, H, W).

    Parameters
    ----------
    attributions : Tensor, shape (B, C, H, W)
    reduce : {"abs", "sum"}
        ``"abs"``: sum of absolute values over channels (magnitude of relevance, the default for
        localisation metrics); ``"sum"``: plain sum over channels (keeps signs).
    """
    if not isinstance(attributions, torch.Tensor) or attributions.dim() != 4:
        raise ValueError(f"attributions: expected a tensor of shape (B, C, H, W), got {getattr(attributions, 'shape', type(attributions).__name__)}")
    if reduce == "abs":
        return attributions.abs().sum(1, keepdim=True)
    if reduce == "sum":
        return attributions.sum(1, keepdim=True)
    raise ValueError(f"reduce: expected 'abs' or 'sum', got {reduce!r}")


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
