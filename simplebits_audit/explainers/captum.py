"""Captum attribution methods behind one call signature.

Every function here takes ``(forward_func, inputs, target, additional_forward_args, **options)``
with ``inputs`` a detached model-space batch (B, C, H, W), ``target`` a LongTensor (B,) and returns
a tensor shaped like ``inputs``. Validation, the prediction-as-target default and the model guard
live in :func:`simplebits_audit.explainers.explain`.

Methods that hook the model's layers (DeepLift, Grad-CAM) need an ``nn.Module`` whose layers run
as modules: :func:`check_hooks` says why not in one line (the registry calls it for every entry
with ``requires=("hooks",)`` before any work). Grad-CAM's layer is the ``layer`` option (a module
or a dotted name); see :func:`gradcam` for how it is chosen and which layers are refused.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum.attr import (
    DeepLift,
    FeatureAblation,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    LayerAttribution,
    LayerGradCam,
    Lime,
    Occlusion,
    Saliency,
)
from torch import nn
from torch.fx import GraphModule

from .._helpers import ForwardFunc, Transform, as_tuple, blur, expand_map, segment_means, slice_args, superpixels, unit_range

# ---------------------------------------------------------------------------------------------
# gradients


def integrated_gradients(
    forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any = None, *,
    n_steps: int = 50, method: str = "gausslegendre", internal_batch_size: int | None = None, baselines: Any = None,
) -> torch.Tensor:
    """Integrated Gradients from ``baselines`` (default zeros in model space), ``n_steps`` points."""
    return IntegratedGradients(forward_func).attribute(
        inputs, baselines=baselines, target=target, additional_forward_args=additional_forward_args,
        n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
    )


def saliency(
    forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any = None, *, abs: bool = True,
) -> torch.Tensor:
    """The gradient of the target's logit (its absolute value unless ``abs=False``)."""
    return Saliency(forward_func).attribute(_leaf(inputs), target=target, abs=abs, additional_forward_args=additional_forward_args)


def input_x_gradient(
    forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any = None,
) -> torch.Tensor:
    """Input times the gradient of the target's logit."""
    return InputXGradient(forward_func).attribute(_leaf(inputs), target=target, additional_forward_args=additional_forward_args)


def gradient_shap(
    forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any = None, *,
    n_samples: int = 20, stdevs: float = 0.0, blur_sigma: float | None = None, seed: int = 0,
) -> torch.Tensor:
    """GradientShap with two baselines per image: all zeros and the image's own blurred copy.

    Captum draws baselines from one shared pool, so images are attributed one at a time to keep
    each image's blurred copy its own. ``seed`` fixes the draws (torch's and numpy's global RNGs
    are left alone: Captum draws the points on the path with numpy).
    """
    method = GradientShap(forward_func)
    out = []
    with _seeded(seed, inputs.device):
        for i in range(inputs.shape[0]):
            x = inputs[i : i + 1]
            pool = torch.cat([torch.zeros_like(x), blur(x, blur_sigma)])
            args = slice_args(additional_forward_args, slice(i, i + 1), inputs.shape[0])
            out.append(
                method.attribute(
                    x, baselines=pool, n_samples=n_samples, stdevs=stdevs, target=target[i : i + 1], additional_forward_args=args
                )
            )
    return torch.cat(out)


def deeplift(
    forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any = None, *, baselines: Any = None,
) -> torch.Tensor:
    """Captum's DeepLift (rescale rule) from ``baselines`` (default zeros in model space).

    Needs an ``nn.Module`` whose layers run as modules (:func:`check_hooks`, checked by the
    registry) and whose non-linear modules (ReLU, MaxPool, ...) are each used once per forward
    pass: Captum stores per-module state in hooks, so a reused module (for example the shared
    ``relu`` of torchvision's ResNet blocks) is refused here with a clear error.
    """
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    names = {m: name or type(m).__name__ for name, m in forward_func.named_modules() if isinstance(m, tuple(SUPPORTED_NON_LINEAR))}
    seen = _probe(forward_func, inputs[:1], slice_args(additional_forward_args, slice(0, 1), inputs.shape[0]), list(names))
    calls = Counter(names[m] for m in seen.calls)
    reused = [name for name, n in calls.items() if n > 1]
    if reused:
        raise ValueError(
            f"forward_func: 'deeplift' needs each non-linear module used once per forward pass; reused: {reused}. "
            "Give every activation its own module (or use 'ig' / 'gradient_shap')."
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Setting forward, backward hooks.*")
        return DeepLift(forward_func).attribute(
            _leaf(inputs), baselines=baselines, target=target, additional_forward_args=additional_forward_args
        )


# ---------------------------------------------------------------------------------------------
# perturbations


def occlusion(
    forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any = None, *,
    window: int | None = None, stride: int | None = None, baselines: Any = 0.0, perturbations_per_eval: int = 16,
    show_progress: bool = False,
) -> torch.Tensor:
    """Occlusion with a square window over all channels.

    ``window`` defaults to a quarter of the shorter side and ``stride`` to an eighth (at least 1).
    ``baselines`` is the fill value in model space (default 0).
    """
    c, h, w = inputs.shape[1:]
    side = min(h, w)
    window = max(1, round(side / 4)) if window is None else int(window)
    stride = max(1, round(side / 8)) if stride is None else int(stride)
    if not (1 <= window <= side) or stride < 1:
        raise ValueError(f"window, stride: need 1 <= window <= {side} and stride >= 1, got {window}, {stride}")
    return Occlusion(forward_func).attribute(
        inputs, sliding_window_shapes=(c, window, window), strides=(c, stride, stride), baselines=baselines, target=target,
        additional_forward_args=additional_forward_args, perturbations_per_eval=perturbations_per_eval, show_progress=show_progress,
    )


def _segments_and_means(inputs: torch.Tensor, to_pixels: Transform | None, n_segments: int, compactness: float):
    with torch.no_grad():
        pixels = to_pixels(inputs).clamp(0, 1) if to_pixels is not None else unit_range(inputs)
    segments = superpixels(pixels, n_segments, compactness)
    return segments, segment_means(inputs, segments)


def feature_ablation(
    forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any = None, *,
    n_segments: int = 40, compactness: float = 10.0, to_pixels: Transform | None = None, perturbations_per_eval: int = 16,
    show_progress: bool = False,
) -> torch.Tensor:
    """FeatureAblation over SLIC superpixels, each segment replaced by its mean colour.

    SLIC runs on ``to_pixels(inputs)`` when given, otherwise on each image rescaled to [0, 1].
    """
    segments, means = _segments_and_means(inputs, to_pixels, n_segments, compactness)
    return FeatureAblation(forward_func).attribute(
        inputs, baselines=means, target=target, additional_forward_args=additional_forward_args,
        feature_mask=segments.expand_as(inputs), perturbations_per_eval=perturbations_per_eval, show_progress=show_progress,
    )


def _surrogate(
    cls: type, forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any,
    n_samples: int, n_segments: int, compactness: float, to_pixels: Transform | None, perturbations_per_eval: int, seed: int,
    show_progress: bool,
) -> torch.Tensor:
    segments, means = _segments_and_means(inputs, to_pixels, n_segments, compactness)
    single = [i for i in range(len(segments)) if int(segments[i].max()) == 0]
    if single and cls is KernelShap:  # Captum's Kernel SHAP samples coalitions of 1..n-1 segments: none exist
        raise ValueError(
            f"compactness: SLIC found a single segment in image {single[0]} (n_segments={n_segments}, compactness={compactness}); "
            "'kernel_shap' needs two or more: raise compactness (towards a regular grid, e.g. 100) or use 'feature_ablation'"
        )
    method = cls(forward_func)
    with warnings.catch_warnings(), _seeded(seed, inputs.device):
        warnings.filterwarnings("ignore", message=".*multiple inputs for Lime.*")
        return method.attribute(
            inputs, baselines=means, target=target, additional_forward_args=additional_forward_args,
            feature_mask=segments.expand_as(inputs), n_samples=n_samples, perturbations_per_eval=perturbations_per_eval,
            show_progress=show_progress,
        )


def lime(
    forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any = None, *,
    n_samples: int = 200, n_segments: int = 40, compactness: float = 10.0, to_pixels: Transform | None = None,
    perturbations_per_eval: int = 50, seed: int = 0, show_progress: bool = False,
) -> torch.Tensor:
    """LIME over SLIC superpixels (segments switched off to their mean colour), Captum's default Lasso surrogate."""
    return _surrogate(Lime, forward_func, inputs, target, additional_forward_args, n_samples, n_segments, compactness, to_pixels,
                      perturbations_per_eval, seed, show_progress)


def kernel_shap(
    forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any = None, *,
    n_samples: int = 200, n_segments: int = 40, compactness: float = 10.0, to_pixels: Transform | None = None,
    perturbations_per_eval: int = 50, seed: int = 0, show_progress: bool = False,
) -> torch.Tensor:
    """Kernel SHAP over SLIC superpixels (segments switched off to their mean colour)."""
    return _surrogate(KernelShap, forward_func, inputs, target, additional_forward_args, n_samples, n_segments, compactness, to_pixels,
                      perturbations_per_eval, seed, show_progress)


# ---------------------------------------------------------------------------------------------
# hooks and layers


def check_hooks(model: object, name: str, alternatives: Sequence[str] = ()) -> None:
    """Refuse, in one line naming ``forward_func`` and method ``name``, a model whose layers hooks cannot see.

    Methods that hook the model's layers (DeepLift, Grad-CAM, any Captum layer method) need an
    ``nn.Module`` (``TypeError`` otherwise) whose layers run as modules. Refused with a
    ``TypeError`` giving the reason and the fix: TorchScript anywhere in the model
    (``torch.jit.script`` / ``trace`` / ``load``: hooks cannot be registered on a scripted
    module and do not run inside a traced one) and ``torch.export`` graphs
    (``torch.export.load(...).module()`` uses its layers' weights without calling the layers,
    so hooks on them never run). ``alternatives``, methods without hooks, are named in the message.
    """
    instead = f", or use a method without hooks: {', '.join(alternatives)}" if alternatives else ""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"forward_func: {name!r} needs a torch.nn.Module (it hooks the model's layers), got {type(model).__name__}{instead}"
        )
    reason = _hooks_blocked(model)
    if reason is not None:
        raise TypeError(
            f"forward_func: {name!r} hooks the model's layers, but {reason}; load the model as a plain nn.Module "
            f"(its class, e.g. 'package.module:factory' with --weights holding a state dict){instead}"
        )


def _hooks_blocked(model: nn.Module) -> str | None:
    """Why forward hooks on ``model``'s layers would not run, or None."""
    for qual, m in model.named_modules():
        where = "the model" if not qual else f"its submodule {qual!r}"
        if isinstance(m, torch.jit.ScriptModule):
            return f"{where} is TorchScript ({type(m).__name__}) and forward hooks do not run on TorchScript modules"
        if isinstance(m, GraphModule):
            hidden = _uncalled_layers(m)
            if hidden:
                more = ", ..." if len(hidden) > 1 else ""
                return (f"{where} is a torch.export / torch.fx graph that uses the weights of its layers ({hidden[0]!r}{more}) "
                        "without calling them, so hooks on them never run")
    return None


def _uncalled_layers(graph_module: GraphModule) -> list[str]:
    """torch.nn submodules holding weights that the graph never calls (neither them nor a module above them).

    torch.export keeps a layer's weights in a bare ``torch.nn.Module`` and inlines its operation;
    torch.fx's symbolic trace calls every torch.nn layer (only user modules are traced through).
    """
    called = [n.target for n in graph_module.graph.nodes if n.op == "call_module"]
    return [
        qual for qual, m in graph_module.named_modules()
        if qual and type(m).__module__.startswith("torch.nn.") and any(True for _ in m.parameters(recurse=False))
        and not any(qual == t or qual.startswith(f"{t}.") for t in called)
    ]


@dataclass
class _Probe:
    """What one forward pass showed of the hooked modules."""

    calls: list[nn.Module] = field(default_factory=list)  # every call, in order
    outputs: dict[int, tuple[int, ...] | str] = field(default_factory=dict)  # id(module) -> first output's shape, or its type's name


def _probe(model: nn.Module, example: torch.Tensor, additional_forward_args: Any, modules: Sequence[nn.Module]) -> _Probe:
    seen = _Probe()

    def record(mod: nn.Module, _: Any, out: Any) -> None:
        seen.calls.append(mod)
        seen.outputs.setdefault(id(mod), tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__)

    handles = [m.register_forward_hook(record) for m in dict.fromkeys(modules)]
    try:
        with torch.no_grad():
            model(example, *as_tuple(additional_forward_args))
    finally:
        for h in handles:
            h.remove()
    return seen


def find_last_conv(model: object, example: torch.Tensor | None = None, additional_forward_args: Any = None) -> nn.Conv2d:
    """The last ``nn.Conv2d`` of ``model``: the last one *executed* on ``example`` when given, else the last registered.

    Raises ``TypeError`` (not a module whose layers hooks can see: :func:`check_hooks`) or
    ``ValueError`` (no Conv2d), naming ``forward_func``.
    """
    check_hooks(model, "gradcam")
    convs = _convs(model)  # type: ignore[arg-type]
    if example is None:
        return convs[-1]
    return _last_conv(convs, _probe(model, example, additional_forward_args, convs))  # type: ignore[arg-type]


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    """The model's Conv2d layers in registration order; ``ValueError`` naming ``forward_func`` and ``layer`` if none."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(
            f"forward_func: 'gradcam' needs a model with a torch.nn.Conv2d layer; {type(model).__name__} has none: "
            "give layer=<a module or its dotted name> whose output is a spatial map (B, C, h, w) or ViT tokens (B, 1+h*w, D)"
        )
    return convs


def _last_conv(convs: list[nn.Conv2d], seen: _Probe) -> nn.Conv2d:
    ran = [m for m in seen.calls if isinstance(m, nn.Conv2d)]
    return ran[-1] if ran else convs[-1]


#: module names of patch embeddings: torchvision's ``conv_proj``, timm's ``patch_embed``, Hugging Face's ``patch_embeddings``
PATCH_EMBEDDING_NAMES = re.compile(r"(^|\.)(conv_proj|patch_?embed(ding)?s?)(\.|$)", re.IGNORECASE)
#: the LayerNorm pytorch-grad-cam recommends for vision transformers (the last block's first norm), by library
_TOKEN_LAYER_SUFFIXES = (".ln_1", ".norm1", ".layernorm_before")


def gradcam(
    forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any = None, *,
    layer: nn.Module | str | None = None, relu_attributions: bool = True, interpolate_mode: str = "bilinear",
) -> torch.Tensor:
    """Grad-CAM on ``layer`` (default: the last Conv2d the model runs), upsampled to the input and repeated over channels.

    ``layer`` is a submodule of the model or its dotted name (``"layer4"``, ``"features.7"``,
    resolved with ``model.get_submodule``). Its output must be a feature map (B, C, h, w)
    (Captum's ``LayerGradCam``) or vision-transformer tokens (B, N, D) with N = 1 + h*w (a class
    token first, dropped) or h*w, on a grid with the image's aspect ratio: the tokens are
    reshaped to (B, D, h, w) and the same Grad-CAM formula is applied (pytorch-grad-cam's
    ``reshape_transform``). For torchvision's ViT take the last block's first LayerNorm,
    ``"encoder.layers.encoder_layer_11.ln_1"`` in ``vit_b_16`` (timm: ``"blocks.11.norm1"``).

    Refused with a ``ValueError`` naming ``layer``: a layer that is not a submodule or does not
    run; an output that is neither of the above; the model's patch embedding (a module named
    like ``conv_proj`` / ``patch_embed``, or a first Conv2d whose stride equals its kernel) and
    its input stem (the first Conv2d the image reaches, when Conv2d layers follow), whose maps
    show the image rather than what the model decides on; tokens the target's gradient never
    reaches while it reaches the class token (after a ViT's final norm only the class token
    feeds the head). A target whose gradient is zero everywhere gives a zero map, as for CNNs.

    Without ``layer`` the last Conv2d the model runs is taken (unchanged for CNNs), unless it
    is the patch embedding: a vision transformer has no spatial feature map of its own, so it
    is refused, naming ``layer``.
    """
    model: nn.Module = forward_func  # type: ignore[assignment]  # an nn.Module hooks can see: the registry checks ``requires``
    example = inputs[:1]
    first_args = slice_args(additional_forward_args, slice(0, 1), inputs.shape[0])
    names = {m: n for n, m in model.named_modules()}
    if layer is None:
        convs = _convs(model)
        seen = _probe(model, example, first_args, convs)
        module = _last_conv(convs, seen)
        name = names.get(module, "")
        if _role(model, module, name, seen, names) == "patch embedding":
            raise ValueError(
                f"layer: 'gradcam' found no spatial feature map: the model's last Conv2d {name!r} is its patch embedding "
                f"(a vision transformer?); give layer=<a module or its dotted name>, e.g. {_suggest(model, example, first_args, names)}"
            )
    else:
        name, module = _resolve_layer(model, layer)
        seen = _probe(model, example, first_args, [*(m for m in model.modules() if isinstance(m, nn.Conv2d)), module])
        out = seen.outputs.get(id(module))
        if out is None:
            raise ValueError(f"layer: {name!r} does not run when the model is called; give a module of its forward pass")
        if isinstance(out, str):
            raise ValueError(f"layer: {name!r} returns a {out}, not a tensor; give a module whose output is a feature map (B, C, h, w)")
        grid = _token_grid(out[1], tuple(inputs.shape[-2:])) if len(out) == 3 else None
        if len(out) != 4 and grid is None:
            raise ValueError(
                f"layer: {name!r} outputs shape {out}; Grad-CAM needs a spatial map (B, C, h, w) or transformer tokens "
                "(B, 1+h*w, D) on a grid shaped like the image"
            )
        role = _role(model, module, name, seen, names)
        if role is not None:
            raise ValueError(
                f"layer: {name!r} is the model's {role} (the first layer the image reaches): its map shows the image, "
                f"not what the model decides on; give a later layer, e.g. {_suggest(model, example, first_args, names, seen)}"
            )
        if grid is not None:
            return _token_gradcam(model, module, name, inputs, target, additional_forward_args, grid, relu_attributions, interpolate_mode)
    cam = LayerGradCam(forward_func, module).attribute(
        inputs, target=target, additional_forward_args=additional_forward_args, relu_attributions=relu_attributions,
    )
    up = LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]), interpolate_mode)
    return expand_map(up, inputs)


def _resolve_layer(model: nn.Module, layer: object) -> tuple[str, nn.Module]:
    """``(dotted name, module)`` of the ``layer`` option: a submodule of ``model`` or its dotted name."""
    if isinstance(layer, str):
        try:
            return layer, model.get_submodule(layer)
        except AttributeError:
            convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][-3:]
            hint = f"; its last Conv2d layers are {convs}" if convs else ""
            raise ValueError(
                f"layer: {layer!r} is not a submodule of {type(model).__name__} (dotted names as in model.named_modules()){hint}"
            ) from None
    if isinstance(layer, nn.Module):
        for qual, m in model.named_modules():
            if m is layer:
                return qual, m
        raise ValueError(f"layer: the given {type(layer).__name__} is not a submodule of the model (forward_func)")
    raise TypeError(f"layer: expected a submodule of the model or its dotted name (str), got {type(layer).__name__}")


def _role(model: nn.Module, module: nn.Module, name: str, seen: _Probe, names: dict[nn.Module, str]) -> str | None:
    """``"patch embedding"``, ``"input stem"`` or None: what ``module`` is to the image (see :func:`gradcam`).

    ``seen`` must hold the calls of every Conv2d and of ``module`` (forward hooks: a container
    is recorded after the layers inside it).
    """
    if module is model:
        return None
    order = list(dict.fromkeys(seen.calls))  # first calls, in order
    ran = [m for m in order if isinstance(m, nn.Conv2d)]
    if not ran or module not in order:
        return None
    stem, later = ran[0], ran[1:]
    prefix = f"{name}."
    inside = [m for m in ran if m is module or names.get(m, "").startswith(prefix)]
    at_stem = bool(inside) and all(m is stem for m in inside)
    early = all(order.index(m) > order.index(module) for m in later)  # no later feature map has run before it ends
    if early and (PATCH_EMBEDDING_NAMES.search(name) or (at_stem and _patchifies(stem))):
        return "patch embedding"
    if at_stem and later:
        return "input stem"
    return None


def _patchifies(conv: nn.Module) -> bool:
    """A Conv2d that cuts its input into non-overlapping patches: stride equal to a kernel larger than one pixel."""
    return isinstance(conv, nn.Conv2d) and tuple(conv.stride) == tuple(conv.kernel_size) and max(conv.kernel_size) > 1


def _token_grid(n_tokens: int, size: tuple[int, ...]) -> tuple[int, int, int] | None:
    """``(prefix, h, w)`` with ``n_tokens = prefix + h*w``, prefix 1 (a class token) or 0, h:w the image's aspect ratio."""
    height, width = size
    for prefix in (1, 0):
        n = n_tokens - prefix
        if n < 1:
            continue
        h = max(1, round(math.sqrt(n * height / width)))
        w = n // h
        if h * w == n and h * width == w * height:
            return prefix, h, w
    return None


def _token_gradcam(
    model: nn.Module, layer: nn.Module, name: str, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any,
    grid: tuple[int, int, int], relu_attributions: bool, interpolate_mode: str,
) -> torch.Tensor:
    """Grad-CAM on transformer tokens (B, prefix + h*w, D): LayerGradCam's formula on the tokens reshaped to (B, D, h, w)."""
    from captum._utils.gradient import compute_layer_gradients_and_eval

    prefix, h, w = grid
    args = None if additional_forward_args is None else as_tuple(additional_forward_args)
    (grads,), (acts,) = compute_layer_gradients_and_eval(model, layer, (inputs,), target, args)

    def to_grid(tokens: torch.Tensor) -> torch.Tensor:  # drop the class token, (B, h*w, D) -> (B, D, h, w)
        return tokens[:, prefix:].reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)

    if grads[:, :prefix].any() and not grads[:, prefix:].any():
        raise ValueError(
            f"layer: the target's gradient never reaches the patch tokens of {name!r} (after it only the class token "
            f"feeds the head, as after a ViT's final norm); give an earlier layer, e.g. a block's first LayerNorm"
        )
    grads, acts = to_grid(grads), to_grid(acts)
    cam = (grads.mean((2, 3), keepdim=True) * acts).sum(1, keepdim=True)
    if relu_attributions:
        cam = torch.relu(cam)
    up = LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]), interpolate_mode)
    return expand_map(up, inputs)


def _suggest(
    model: nn.Module, example: torch.Tensor, additional_forward_args: Any, names: dict[nn.Module, str], seen: _Probe | None = None,
) -> str:
    """A layer to offer in a refusal: the last Conv2d run when it is no stem, else a ViT block's first LayerNorm."""
    if seen is not None:
        ran = [m for m in seen.calls if isinstance(m, nn.Conv2d)]
        if ran and _role(model, ran[-1], names.get(ran[-1], ""), seen, names) is None:
            return repr(names.get(ran[-1], ""))
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    if norms:
        run = _probe(model, example, additional_forward_args, norms)
        shapes = [(m, run.outputs[id(m)]) for m in dict.fromkeys(run.calls)]  # in order of first call
        tokens = [
            names.get(m, "") for m, shape in shapes
            if isinstance(shape, tuple) and len(shape) == 3 and _token_grid(shape[1], tuple(example.shape[-2:])) is not None
        ]
        firsts = [n for n in tokens if n.endswith(_TOKEN_LAYER_SUFFIXES)]
        if firsts or tokens:
            return f"{(firsts or tokens)[-1]!r} (the last transformer block's first LayerNorm; its tokens are reshaped to the patch grid)"
    return "'encoder.layers.encoder_layer_11.ln_1' for torchvision's vit_b_16 (tokens are reshaped to the patch grid)"


# ---------------------------------------------------------------------------------------------


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """torch's (CPU and ``device``) and numpy's global RNGs seeded with ``seed`` inside, as they were after."""
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            np.random.set_state(state)


def _leaf(inputs: torch.Tensor) -> torch.Tensor:
    """A fresh leaf sharing the inputs' storage that requires grad (the caller's tensor is untouched)."""
    return inputs.detach().requires_grad_(True)


