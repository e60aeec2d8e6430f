"""Captum attribution methods behind one call signature.

Every function here takes ``(forward_func, inputs, target, additional_forward_args, **options)``
with ``inputs`` a detached model-space batch (B, C, H, W), ``target`` a LongTensor (B,) and returns
a tensor shaped like ``inputs``. Validation, the prediction-as-target default and the model guard
live in :func:`simplebits_audit.explainers.explain`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

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
    each image's blurred copy its own. ``seed`` fixes the draws (the global RNG is left alone).
    """
    method = GradientShap(forward_func)
    out = []
    with torch.random.fork_rng(devices=[inputs.device] if inputs.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(inputs.shape[0]):
            x = inputs[i : i + 1]
            pool = torch.cat([torch.zeros_like(x), blur(x, blur_sigma)])
            args = slice_args(additional_forward_args, slice(i, i + 1), inputs.shape[0])
            out.append(method.attribute(x, baselines=pool, n_samples=n_samples, stdevs=stdevs, target=target[i : i + 1], additional_forward_args=args))
    return torch.cat(out)


def deeplift(
    forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any = None, *, baselines: Any = None,
) -> torch.Tensor:
    """Captum's DeepLift (rescale rule) from ``baselines`` (default zeros in model space).

    Needs an ``nn.Module`` whose non-linear modules (ReLU, MaxPool, ...) are each used once per
    forward pass: Captum stores per-module state in hooks, so a reused module (for example the
    shared ``relu`` of torchvision's ResNet blocks) is refused here with a clear error.
    """
    if not isinstance(forward_func, nn.Module):
        raise TypeError("forward_func: 'deeplift' needs a torch.nn.Module (Captum's DeepLift hooks its layers)")
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    calls = _count_calls(forward_func, inputs[:1], slice_args(additional_forward_args, slice(0, 1), inputs.shape[0]), tuple(SUPPORTED_NON_LINEAR))
    reused = [name for name, n in calls.items() if n > 1]
    if reused:
        raise ValueError(
            f"forward_func: 'deeplift' needs each non-linear module used once per forward pass; reused: {reused}. "
            "Give every activation its own module (or use 'ig' / 'gradient_shap')."
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Setting forward, backward hooks.*")
        return DeepLift(forward_func).attribute(_leaf(inputs), baselines=baselines, target=target, additional_forward_args=additional_forward_args)


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
    method = cls(forward_func)
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[inputs.device] if inputs.device.type == "cuda" else []):
        warnings.filterwarnings("ignore", message=".*multiple inputs for Lime.*")
        torch.manual_seed(seed)
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
# layers


def find_last_conv(model: object, example: torch.Tensor | None = None, additional_forward_args: Any = None) -> nn.Conv2d:
    """The last ``nn.Conv2d`` of ``model``: the last one *executed* on ``example`` when given, else the last registered.

    Raises ``TypeError`` (not a module) or ``ValueError`` (no Conv2d), naming ``forward_func``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError("forward_func: 'gradcam' needs a torch.nn.Module to find its last Conv2d; or pass layer=<module>")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"forward_func: 'gradcam' needs a model with a torch.nn.Conv2d layer; {type(model).__name__} has none")
    if example is None:
        return convs[-1]
    order: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda mod, inp, out: order.append(mod)) for m in convs]
    try:
        with torch.no_grad():
            model(example, *as_tuple(additional_forward_args))
    finally:
        for h in handles:
            h.remove()
    return order[-1] if order else convs[-1]  # type: ignore[return-value]


def gradcam(
    forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor, additional_forward_args: Any = None, *,
    layer: nn.Module | None = None, relu_attributions: bool = True, interpolate_mode: str = "bilinear",
) -> torch.Tensor:
    """Grad-CAM on ``layer`` (default: the last Conv2d the model runs), upsampled to the input and repeated over channels."""
    if layer is None:
        layer = find_last_conv(forward_func, inputs[:1], slice_args(additional_forward_args, slice(0, 1), inputs.shape[0]))
    cam = LayerGradCam(forward_func, layer).attribute(
        inputs, target=target, additional_forward_args=additional_forward_args, relu_attributions=relu_attributions,
    )
    up = LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]), interpolate_mode)
    return expand_map(up, inputs)


# ---------------------------------------------------------------------------------------------


def _leaf(inputs: torch.Tensor) -> torch.Tensor:
    """A fresh leaf sharing the inputs' storage that requires grad (the caller's tensor is untouched)."""
    return inputs.detach().requires_grad_(True)


def _count_calls(model: nn.Module, example: torch.Tensor, additional_forward_args: Any, types: tuple[type, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    named = [(name or type(m).__name__, m) for name, m in model.named_modules() if isinstance(m, types)]

    def hook(name: str) -> Callable:
        def count(*_: Any) -> None:
            counts[name] = counts.get(name, 0) + 1
        return count

    handles = [m.register_forward_hook(hook(name)) for name, m in named]
    try:
        with torch.no_grad():
            model(example, *as_tuple(additional_forward_args))
    finally:
        for h in handles:
            h.remove()
    return counts
