"""Helpers shared by the baseline methods (and the metrics): targets, model guard, blur, superpixels."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from .._validation import check_finite
from ..simplification import _as_tuple, normalize_target

ForwardFunc = Callable[..., torch.Tensor]
Transform = Callable[[torch.Tensor], torch.Tensor]


def check_inputs(inputs: object, name: str = "inputs") -> torch.Tensor:
    """Check an image batch (B, C, H, W), floating point and finite; return it detached."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, C, H, W), got {type(inputs).__name__}")
    if inputs.dim() != 4 or 0 in inputs.shape:
        raise ValueError(f"{name}: expected a non-empty tensor of shape (B, C, H, W), got {tuple(inputs.shape)}")
    if not torch.is_floating_point(inputs):
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {inputs.dtype}")
    check_finite(inputs, name)
    return inputs.detach()


def resolve_target(
    forward_func: ForwardFunc | None, inputs: torch.Tensor, target: Any, additional_forward_args: Any = None
) -> torch.Tensor | None:
    """Captum-style ``target`` as a LongTensor (B,) on the inputs' device; ``None`` -> the prediction.

    Without a ``forward_func`` (reference maps) a ``None`` target stays ``None``.
    """
    if isinstance(target, tuple):
        target = list(target)
    if forward_func is None:
        t = normalize_target(target, inputs.shape[0], None)
        return None if t is None else t.to(inputs.device)
    with torch.no_grad():
        logits = forward_func(inputs, *_as_tuple(additional_forward_args))
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != inputs.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"forward_func: must return logits of shape (B, K) = ({inputs.shape[0]}, K), got {shape}")
    t = normalize_target(target, inputs.shape[0], logits.shape[1])
    return (logits.argmax(1) if t is None else t).to(inputs.device)


@contextlib.contextmanager
def model_guard(forward_func: object) -> Iterator[None]:
    """Restore every parameter's ``requires_grad`` and ``.grad`` and every module's mode on exit.

    Captum's gradient methods take gradients with respect to the inputs only, but hooks and
    ``requires_grad`` juggling must never leak into the user's model (SPEC section 4). A model
    with modules in training mode gets a warning, and its buffers (BatchNorm running statistics,
    which every forward pass in training mode updates) are restored too.
    """
    if not isinstance(forward_func, nn.Module):
        yield
        return
    if any(m.training for m in forward_func.modules()):
        warnings.warn("forward_func is in training mode; explanations of eval-mode behaviour need model.eval()", stacklevel=3)
    params = list(forward_func.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    modes = [(m, m.training) for m in forward_func.modules()]
    training = any(mode for _, mode in modes)
    buffers = [(b, b.detach().clone()) for b in forward_func.buffers()] if training else []
    try:
        yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for p, flag, grad in zip(params, flags, grads):
            p.requires_grad_(flag)
            p.grad = grad
        for m, mode in modes:
            m.train(mode)


def blur(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Gaussian blur of an image batch (B, C, H, W) with reflect padding; same shape.

    ``sigma`` defaults to a tenth of the longer side. The kernel sums to one, so blurring commutes
    with a per-channel affine normalisation: blurring model-space inputs equals normalising the
    blurred pixels.
    """
    from torchvision.transforms.functional import gaussian_blur

    h, w = x.shape[-2:]
    sigma = max(h, w) / 10 if sigma is None else float(sigma)
    if sigma <= 0:
        return x.clone()
    # reflect padding needs the half-width below the image side
    half = min(math.ceil(2 * sigma), h - 1, w - 1)
    if half < 1:
        return x.clone()
    return gaussian_blur(x, [2 * half + 1, 2 * half + 1], [sigma, sigma])


def unit_range(x: torch.Tensor) -> torch.Tensor:
    """Each image rescaled to [0, 1] by its own min and max (a monotone stand-in for pixel space)."""
    lo = x.flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = x.flatten(1).amax(1).view(-1, 1, 1, 1)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def superpixels(pixels: torch.Tensor, n_segments: int = 40, compactness: float = 10.0) -> torch.Tensor:
    """SLIC superpixels (scikit-image) of pixel images (B, C, H, W) in [0, 1]: LongTensor (B, 1, H, W).

    Labels start at 0 and are contiguous per image.
    """
    from skimage.segmentation import slic

    out = []
    for img in pixels.detach().cpu().double():
        channel_axis = -1
        arr = img.permute(1, 2, 0).numpy()
        if arr.shape[-1] == 1:
            arr, channel_axis = arr[..., 0], None
        seg = slic(arr, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=channel_axis)
        seg = torch.from_numpy(seg).long()
        out.append(torch.unique(seg, return_inverse=True)[1])  # contiguous labels
    return torch.stack(out).unsqueeze(1).to(pixels.device)


def segment_means(x: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Every segment of ``x`` (B, C, H, W) replaced by its mean colour; ``segments`` (B, 1, H, W)."""
    out = torch.empty_like(x)
    for b in range(len(x)):
        flat = segments[b, 0].flatten()
        n = int(flat.max()) + 1
        sums = torch.zeros(x.shape[1], n, dtype=x.dtype, device=x.device).index_add_(1, flat, x[b].flatten(1))
        counts = torch.bincount(flat, minlength=n).clamp_min(1).to(x.dtype)
        out[b] = (sums / counts)[:, flat].view_as(x[b])
    return out


def expand_map(amap: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A map (B, 1, H, W) repeated over the channels of ``like`` (B, C, H, W), contiguous."""
    return amap.to(like.dtype).expand_as(like).contiguous()
