"""The registry: every explainer -- SimpleBits, the Captum baselines, the trivial reference maps -- behind one call.

An explainer is a function

    fn(forward_func, inputs, target, additional_forward_args=None, *, <options>) -> Tensor

taking a detached model-space batch ``inputs`` (B, C, H, W) and ``target`` a LongTensor (B,) (or
None for reference maps), returning attributions shaped like ``inputs``. An explainer that
simplifies returns ``(attributions, SimplificationResult)``. Its keyword-only parameters are the
options :func:`explain` accepts for it; unknown options are refused. What a job knows that an
explainer may need (the pixel/model spaces, the bit estimator, the seed, the output head) comes
in a :class:`Context` and fills the options of that name the function takes. What an explainer
needs of the model (``requires``, e.g. forward hooks on its layers) is checked in
:func:`explain`, before any work, from its :class:`ExplainerSpec`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from .._helpers import ForwardFunc, as_tuple, check_inputs, check_target_range, model_guard, resolve_target, slice_args
from ..estimators import BitEstimator
from ..simplification import SimplificationResult, simplify
from ..simplification.heads import check_head
from ..spaces import Spaces
from . import captum as _captum
from . import reference as _reference
from .simple_bits import simplebits, simplebits_learned

#: the name of the SimpleBits entry (the default explainer of the explain and audit jobs)
SIMPLEBITS = "simplebits"
#: SimpleBits with a learned simplifier (needs the ``simplifier`` option)
SIMPLEBITS_LEARNED = "simplebits_learned"
#: how :func:`to_map` collapses channels
MAP_REDUCTIONS = ("abs", "sum", "first")
# Options of a forwarded-to function that the entry itself provides.
_NOT_FORWARDED = ("additional_forward_args", "normalization", "transforms")
#: what an explainer may need of the model (:attr:`ExplainerSpec.requires`): ``"hooks"``, forward
#: hooks on its layers (an ``nn.Module`` whose layers run as modules: no TorchScript, no torch.export graph)
REQUIREMENTS = ("hooks",)


@dataclass(frozen=True)
class ExplainerSpec:
    """One registered explainer.

    Attributes
    ----------
    name : str
        Short name used by :func:`explain` (and on the command line).
    fn : callable
        ``fn(forward_func, inputs, target, additional_forward_args, **options)`` -> Tensor like
        ``inputs``, or ``(Tensor, SimplificationResult)`` when ``simplifies``.
    captum : str or None
        The Captum class it wraps.
    reference : bool
        A trivial map that ignores the model (brightness, centre prior, ...): comparison tables
        label these; a testbed on which one wins is flawed (SPEC section 6).
    simplifies : bool
        The explainer simplifies the images and returns a :class:`SimplificationResult` too.
    map_reduce : {"abs", "sum", "first"}
        How :func:`to_map` collapses the channels into a relevance map: ``"abs"`` for per-pixel
        gradient methods (their sign flips from pixel to pixel), ``"sum"`` for region methods
        whose sign means "supports / opposes the target" (occlusion, ablation, LIME, Kernel SHAP,
        Grad-CAM) and for the references, ``"first"`` for a map already repeated over channels.
    description : str
        One line for tables and help texts.
    defaults : mapping
        Options preset for this entry (a variant of a function is another entry with other defaults).
    forwards_to : callable or None
        A function ``fn`` passes its ``**options`` on to: its keyword-only parameters are options too.
    requires : tuple of str
        What the explainer needs of the model, from :data:`REQUIREMENTS`, checked by :func:`explain`
        before any work: ``"hooks"`` (DeepLift, Grad-CAM, any layer method) refuses, in one line
        naming the method, the reason and the fix, a model whose layers forward hooks cannot see
        (not an ``nn.Module``, TorchScript, a torch.export graph).
    """

    name: str
    fn: Callable[..., Any]
    captum: str | None = None
    reference: bool = False
    simplifies: bool = False
    map_reduce: str = "abs"
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    forwards_to: Callable[..., Any] | None = None
    requires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [r for r in self.requires if r not in REQUIREMENTS]
        if unknown:
            raise ValueError(f"requires: unknown requirement {unknown[0]!r} of {self.name!r}; choose from {REQUIREMENTS}")

    @property
    def options(self) -> dict[str, Any]:
        """The options this explainer accepts, with their defaults (this entry's presets applied)."""
        out = _keyword_only(self.fn)
        if self.forwards_to is not None:
            extra = _keyword_only(self.forwards_to)
            out.update({k: v for k, v in extra.items() if k not in _NOT_FORWARDED and k not in out})
        return {**out, **self.defaults}

    @property
    def needs_model(self) -> bool:
        return not self.reference

    @property
    def needs_hooks(self) -> bool:
        """The explainer hooks the model's layers (``"hooks"`` in :attr:`requires`)."""
        return "hooks" in self.requires

    def check_model(self, forward_func: object) -> None:
        """Refuse, in one line naming ``forward_func``, a model this explainer cannot run on (:attr:`requires`)."""
        if self.needs_hooks:
            without = [n for n, s in EXPLAINERS.items() if s.needs_model and not s.simplifies and not s.needs_hooks]
            _captum.check_hooks(forward_func, self.name, without)


def _keyword_only(fn: Callable[..., Any]) -> dict[str, Any]:
    params = inspect.signature(fn).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def spec(name: str, fn: Callable[..., Any], **fields: Any) -> ExplainerSpec:
    """An :class:`ExplainerSpec` whose description is the first line of ``fn``'s docstring
    (reference maps are summed over channels: their values carry no sign to lose)."""
    if fields.get("reference"):
        fields.setdefault("map_reduce", "sum")
    fields.setdefault("description", (inspect.getdoc(fn) or "").split("\n")[0])
    if "defaults" in fields:
        fields["defaults"] = MappingProxyType(dict(fields["defaults"]))
    return ExplainerSpec(name, fn, **fields)


#: name -> explainer: SimpleBits first, then the Captum methods, then the trivial references.
EXPLAINERS: dict[str, ExplainerSpec] = {
    s.name: s
    for s in (
        spec(SIMPLEBITS, simplebits, simplifies=True, map_reduce="first", forwards_to=simplify),
        spec(SIMPLEBITS_LEARNED, simplebits_learned, simplifies=True, map_reduce="first", forwards_to=simplify),
        spec("ig", _captum.integrated_gradients, captum="IntegratedGradients"),
        spec("saliency", _captum.saliency, captum="Saliency"),
        spec("input_x_gradient", _captum.input_x_gradient, captum="InputXGradient"),
        spec("gradient_shap", _captum.gradient_shap, captum="GradientShap"),
        spec("deeplift", _captum.deeplift, captum="DeepLift", requires=("hooks",)),
        spec("occlusion", _captum.occlusion, captum="Occlusion", map_reduce="sum"),
        spec("feature_ablation", _captum.feature_ablation, captum="FeatureAblation", map_reduce="sum"),
        spec("gradcam", _captum.gradcam, captum="LayerGradCam", map_reduce="sum", requires=("hooks",)),
        spec("lime", _captum.lime, captum="Lime", map_reduce="sum"),
        spec("kernel_shap", _captum.kernel_shap, captum="KernelShap", map_reduce="sum"),
        spec("brightness", _reference.brightness, reference=True),
        spec("darkness", _reference.darkness, reference=True),
        spec("max_channel", _reference.max_channel, reference=True),
        spec("contrast", _reference.contrast, reference=True),
        spec("edges", _reference.edges, reference=True),
        spec("centre", _reference.centre, reference=True),
        spec("random", _reference.random, reference=True),
    )
}


def list_explainers(*, reference: bool | None = None, simplifies: bool | None = None) -> list[str]:
    """Registered names in registry order, optionally only (non-)references / (non-)simplifying ones."""
    return [
        n for n, s in EXPLAINERS.items()
        if (reference is None or s.reference == reference) and (simplifies is None or s.simplifies == simplifies)
    ]


def get_spec(name: str) -> ExplainerSpec:
    """The :class:`ExplainerSpec` of ``name``; ``ValueError`` naming ``name`` if unknown."""
    if not isinstance(name, str) or name not in EXPLAINERS:
        raise ValueError(f"name: unknown explainer {name!r}; choose from {list_explainers()}")
    return EXPLAINERS[name]


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """``TypeError`` naming any option that explainer ``name`` does not take."""
    allowed = get_spec(name).options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"options: {name!r} does not take {unknown}; it takes {sorted(allowed)}")


def check_methods(
    methods: Sequence[str], method_options: Mapping[str, Mapping[str, Any]] | None = None, *, name: str = "methods"
) -> list[str]:
    """Validate a list of explainer names (known, each once) and their options; the names as a list.

    Errors name ``name`` (``methods``, ``baselines``) or ``method_options``.
    """
    if isinstance(methods, str) or not isinstance(methods, Sequence) or len(methods) == 0:
        raise ValueError(f"{name}: expected a non-empty sequence of names from {list_explainers()}")
    unknown = [m for m in methods if m not in EXPLAINERS]
    if unknown:
        raise ValueError(f"{name}: unknown method {unknown[0]!r}; choose from {list_explainers()}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"{name}: listed twice: {sorted({m for m in methods if list(methods).count(m) > 1})}")
    for method, opts in (method_options or {}).items():
        if method not in methods:
            raise ValueError(f"method_options: {method!r} is not among the {name} {list(methods)}")
        check_options(method, opts)
    return list(methods)


@dataclass(frozen=True)
class Context:
    """What a job knows that explainers may need; it fills the options of these names an explainer takes.

    Attributes
    ----------
    spaces : Spaces, optional
        Pixel <-> model space: fills ``spaces`` and ``to_pixels``.
    estimator : BitEstimator or str, optional
        Fills ``estimator``.
    seed : int, optional
        Fills ``seed``.
    head : {"softmax", "sigmoid"}
        How the model's logits become probabilities: a softmax over K classes, or one sigmoid per
        logit (a single-logit binary or a multi-label classifier; a softmax over one logit is
        always 1). Fills ``head`` of the explainers that take it (SimpleBits through
        ``simplify``); the Captum baselines attribute the target's logit and need none.
    """

    spaces: Spaces | None = None
    estimator: BitEstimator | str | None = None
    seed: int | None = None
    head: str = "softmax"

    def __post_init__(self) -> None:
        check_head(self.head)

    def options_for(self, spec: ExplainerSpec, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` over the entry's presets over what this context supplies that the entry takes."""
        supplied = {
            "spaces": self.spaces,
            "to_pixels": None if self.spaces is None else self.spaces.to_pixels,
            "estimator": self.estimator,
            "seed": self.seed,
            "head": self.head,
        }
        allowed = spec.options
        return {**{k: v for k, v in supplied.items() if v is not None and k in allowed}, **spec.defaults, **options}


@dataclass
class Explanation:
    """One explainer's answer for a batch.

    Attributes
    ----------
    name : str
        The explainer.
    attributions : Tensor (B, C, H, W)
        Shaped like the inputs (model space), detached.
    map : Tensor (B, 1, H, W)
        The relevance map every metric and report sees (:func:`to_map` with the entry's ``map_reduce``).
    seconds : float
        Wall time of the whole batch (CUDA synchronised).
    target : Tensor (B,) or None
        The class explained per image (None for a reference map given no target).
    result : SimplificationResult or None
        The simplification, for explainers that simplify.
    """

    name: str
    attributions: torch.Tensor
    map: torch.Tensor
    seconds: float
    target: torch.Tensor | None = None
    result: SimplificationResult | None = None


def explain(
    name: str,
    forward_func: ForwardFunc | None,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    additional_forward_args: Any = None,
    context: Context | None = None,
    n_classes: int | None = None,
    **options: Any,
) -> Explanation:
    """Explain ``forward_func``'s output for ``target`` on ``inputs`` with explainer ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`EXPLAINERS` (see :func:`list_explainers`).
    forward_func : callable or None
        Model-space images (B, C, H, W) (plus ``additional_forward_args``) -> logits (B, K). Only
        reference maps accept ``None``. Explainers that hook the model's layers (``deeplift``,
        ``gradcam``: ``spec.needs_hooks``) need an ``nn.Module`` whose layers run as modules (no
        TorchScript, no torch.export graph): refused before any work. It is run inside the model
        guard: never modified.
    inputs : Tensor, shape (B, C, H, W)
        Images in the model's input space. Not modified.
    target : None, int, list of int or Tensor (B,)
        The class to explain per image; ``None`` explains the predicted class (one forward pass).
    additional_forward_args : any, optional
        Extra arguments appended after the inputs when calling ``forward_func``.
    context : Context, optional
        Spaces, estimator, seed and head, for the explainers that take them.
    n_classes : int, optional
        The model's number of classes, when the caller knows it: a given target is then checked
        without running the model.
    **options
        The explainer's options (``EXPLAINERS[name].options``), e.g. ``n_steps`` for ``ig``,
        ``steps`` and ``attribution`` for ``simplebits``, ``layer`` for ``gradcam`` (a submodule
        or its dotted name, e.g. ``layer="layer4"``).

    Returns
    -------
    Explanation
    """
    spec = get_spec(name)
    check_options(name, options)
    x = check_inputs(inputs, "inputs")
    if spec.needs_model and not callable(forward_func):
        raise TypeError(f"forward_func: {name!r} needs a callable model returning logits (B, K), got {type(forward_func).__name__}")
    spec.check_model(forward_func)
    kwargs = (context or Context()).options_for(spec, options)
    sync = x.is_cuda
    if sync:
        torch.cuda.synchronize(x.device)
    started = time.perf_counter()
    with model_guard(forward_func):
        # An explainer that simplifies finds the prediction itself; the others need it first (one forward pass).
        predict = (lambda: _logits(forward_func, x, additional_forward_args)) if spec.needs_model and not spec.simplifies else None
        t = resolve_target(target, x.shape[0], n_classes=n_classes, predict=predict, device=x.device)
        try:
            out = spec.fn(forward_func, x, t, additional_forward_args, **kwargs)
        except Exception:
            if t is not None and spec.needs_model and n_classes is None:
                # A given target was not checked up front (that costs a forward pass): name it if it is the cause.
                first_args = slice_args(additional_forward_args, slice(0, 1), x.shape[0])
                try:
                    check_target_range(t, _logits(forward_func, x[:1], first_args).shape[1])
                except ValueError as bad_target:
                    raise bad_target from None
            raise
    result = None
    if spec.simplifies:
        out, result = out
        t = result.target
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise RuntimeError(f"explainer {name!r} returned shape {getattr(out, 'shape', None)}, expected {tuple(x.shape)}")
    attributions = out.detach().to(x.dtype).contiguous()
    amap = to_map(attributions, spec.map_reduce)
    if sync:
        torch.cuda.synchronize(x.device)
    return Explanation(name, attributions, amap, time.perf_counter() - started, t, result)


def attribute(
    name: str,
    forward_func: ForwardFunc | None,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    additional_forward_args: Any = None,
    **options: Any,
) -> torch.Tensor:
    """Attribute ``forward_func``'s output for ``target`` to ``inputs`` with explainer ``name``: :func:`explain`'s attributions only.

    Parameters
    ----------
    name : str
        A key of :data:`EXPLAINERS` (see :func:`list_explainers`; ``list_explainers(simplifies=False)``
        gives the Captum baselines and the reference maps); ``ValueError`` naming ``name`` if unknown.
    forward_func : callable or None
        Model-space images (B, C, H, W) (plus ``additional_forward_args``) -> logits (B, K). Only
        reference maps accept ``None``. ``deeplift`` and ``gradcam`` hook layers: they need a plain
        ``nn.Module`` (not TorchScript, not a ``torch.export`` graph; refused before any work).
        Never modified.
    inputs : Tensor, shape (B, C, H, W)
        Images in the model's input space. Not modified.
    target : None, int, list of int or Tensor (B,)
        The class to explain per image; ``None`` explains the predicted class.
    additional_forward_args : any, optional
        Extra arguments appended after the inputs when calling ``forward_func``.
    **options
        :func:`explain`'s keywords (``context``, ``n_classes``) and the explainer's options
        (``EXPLAINERS[name].options``; unknown ones raise ``TypeError`` naming them), e.g. ``n_steps``
        and ``internal_batch_size`` for ``ig``, ``n_samples`` for ``lime``, ``layer`` for ``gradcam``.

    Returns
    -------
    Tensor, shape (B, C, H, W)
        Same shape, dtype and device as ``inputs``, detached and contiguous. :func:`to_map` with the
        entry's ``map_reduce`` gives the (B, 1, H, W) map; :func:`explain` gives it, the wall time and the target too.
    """
    return explain(name, forward_func, inputs, target, additional_forward_args=additional_forward_args, **options).attributions


def to_map(attributions: torch.Tensor, reduce: str = "abs") -> torch.Tensor:
    """Collapse channels for display and metrics: (B, C, H, W) -> (B, 1, H, W).

    Parameters
    ----------
    attributions : Tensor, shape (B, C, H, W)
    reduce : {"abs", "sum", "first"}
        ``"abs"``: sum of absolute values over channels (magnitude of relevance); ``"sum"``: plain
        sum over channels (keeps signs); ``"first"``: channel 0, for maps repeated over channels.
    """
    if not isinstance(attributions, torch.Tensor) or attributions.dim() != 4:
        raise ValueError(
            f"attributions: expected a tensor of shape (B, C, H, W), got {getattr(attributions, 'shape', type(attributions).__name__)}"
        )
    if reduce == "abs":
        return attributions.abs().sum(1, keepdim=True)
    if reduce == "sum":
        return attributions.sum(1, keepdim=True)
    if reduce == "first":
        return attributions[:, :1].contiguous()
    raise ValueError(f"reduce: expected one of {MAP_REDUCTIONS}, got {reduce!r}")


def _logits(forward_func: ForwardFunc, x: torch.Tensor, additional_forward_args: Any) -> torch.Tensor:
    with torch.no_grad():
        return forward_func(x, *as_tuple(additional_forward_args))

