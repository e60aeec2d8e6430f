"""The simplification engine: the simplest image the frozen classifier still answers the same way for.

For images x (pixel space) and classifier f, find x' minimising

    L(x') = D_task(f(x), f(x')) + lambda * bpd(x')

with D_task the KL between the predicted distributions (``objective="kl"``) or the cross-entropy
to a target class (``objective="ce"``). lambda grows geometrically along one continuation run
(the *knob*); snapshots along the way give each image's trade-off curve (bits vs. probability
kept), and the simplest snapshot that still satisfies ``keep`` is returned.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from rich.progress import Progress

from ._io import save_torch
from ._validation import check_finite, check_pixel_images
from .estimators import BitEstimator, Glow, load_estimator
from .spaces import Spaces, Transform, make_spaces

ForwardFunc = Callable[..., torch.Tensor]
Keep = str | float

#: Images start half a quantisation bin inside (0, 1): rounding recovers the original exactly, and
#: saturated pixels still have a usable gradient through the sigmoid.
_EPS = 0.5 / 255


@dataclass
class SimplificationResult:
    """Per-image results of :func:`simplify` (batch dimension first everywhere).

    Attributes
    ----------
    original, simplified : Tensor (B, C, H, W)
        Pixel space, [0, 1]; ``simplified`` is rounded to 8 bits.
    simplified_inputs : Tensor (B, C, H, W)
        ``simplified`` in the model's input space.
    bits_before, bits_after, bpd_before, bpd_after : Tensor (B,)
        Under the estimator, after rounding to 8 bits.
    bits_map_before, bits_map_after : Tensor (B, 1, H, W)
        Per-pixel bits; ``bit_reduction_map`` is their difference (positive = bits removed).
    probs_before, probs_after : Tensor (B, K)
        Softmax of the classifier's output.
    pred_before, pred_after, target : Tensor (B,)
    target_prob_delta, kl : Tensor (B,)
        Change of the target's probability and KL(p_before || p_after).
    kept : Tensor (B,) bool
        Whether the returned image satisfies ``keep``.
    lambda_chosen : Tensor (B,)
        lambda of the returned snapshot.
    path_lambdas : Tensor (S,)
    path_bits, path_target_prob : Tensor (S, B)
    path_kept : Tensor (S, B) bool
    path_images : Tensor (S, B, C, H, W) uint8
        The trade-off path: the original (lambda = 0) and every snapshot along the knob.
    status : list[str]
        ``"ok"``, ``"not kept"`` or ``"non-finite"`` per image.
    steps : int
    seconds : float
        Wall time of the whole batch.
    settings : dict
        The options used (objective, parameterization, keep, ...).
    """

    original: torch.Tensor
    simplified: torch.Tensor
    simplified_inputs: torch.Tensor
    bits_before: torch.Tensor
    bits_after: torch.Tensor
    bpd_before: torch.Tensor
    bpd_after: torch.Tensor
    bits_map_before: torch.Tensor
    bits_map_after: torch.Tensor
    probs_before: torch.Tensor
    probs_after: torch.Tensor
    pred_before: torch.Tensor
    pred_after: torch.Tensor
    target: torch.Tensor
    target_prob_delta: torch.Tensor
    kl: torch.Tensor
    kept: torch.Tensor
    lambda_chosen: torch.Tensor
    path_lambdas: torch.Tensor
    path_bits: torch.Tensor
    path_target_prob: torch.Tensor
    path_kept: torch.Tensor
    path_images: torch.Tensor
    status: list[str]
    steps: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def bit_reduction_map(self) -> torch.Tensor:
        """Bits removed per pixel, (B, 1, H, W): ``bits_map_before - bits_map_after``."""
        return self.bits_map_before - self.bits_map_after

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / max(1, len(self.status))

    def __len__(self) -> int:
        return len(self.status)

    def to(self, device: str | torch.device) -> "SimplificationResult":
        """A copy with every tensor on ``device``."""
        return SimplificationResult(**{f.name: _move(getattr(self, f.name), device) for f in fields(self)})

    def save(self, path: str | Path) -> Path:
        """Write the result atomically (tensors, strings and numbers only: loads with ``weights_only``)."""
        return save_torch({f.name: _move(getattr(self, f.name), "cpu") for f in fields(self)}, path)

    @classmethod
    def load(cls, path: str | Path) -> "SimplificationResult":
        """Read a result written by :meth:`save`."""
        return cls(**torch.load(path, map_location="cpu", weights_only=True))


def _move(value: Any, device: str | torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


# --------------------------------------------------------------------------------------------
# argument handling


def normalize_target(target: Any, batch: int, n_classes: int | None, name: str = "target") -> torch.Tensor | None:
    """Captum-style target (None, int, list, tensor) as a LongTensor (B,) or None."""
    if target is None:
        return None
    if isinstance(target, torch.Tensor):
        t = target.detach().flatten().long().cpu()
    elif isinstance(target, int) and not isinstance(target, bool):
        t = torch.tensor([target])
    elif isinstance(target, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in target):
        t = torch.tensor(list(target), dtype=torch.long)
    else:
        raise ValueError(f"{name}: expected an int, a list of ints or a tensor of class indices, got {type(target).__name__}")
    if t.numel() == 1:
        t = t.expand(batch).clone()
    if t.numel() != batch:
        raise ValueError(f"{name}: {t.numel()} targets for a batch of {batch}")
    if n_classes is not None and (bool((t < 0).any()) or bool((t >= n_classes).any())):
        raise ValueError(f"{name}: class indices must be in [0, {n_classes - 1}], got {t.tolist()}")
    return t


def _check_keep(keep: Keep) -> None:
    if isinstance(keep, str):
        if keep != "top1":
            raise ValueError(f"keep: expected 'top1' or a fraction in (0, 1], got {keep!r}")
    elif not (isinstance(keep, (int, float)) and 0 < float(keep) <= 1):
        raise ValueError(f"keep: expected 'top1' or a fraction in (0, 1], got {keep!r}")


#: With ``keep="top1"`` a target that was not the original's top class must keep this share of its probability.
NON_TOP_TARGET_FRACTION = 0.9


def _kept(keep: Keep, probs: torch.Tensor, target: torch.Tensor, prob_before: torch.Tensor, top_before: torch.Tensor) -> torch.Tensor:
    target_prob = probs.gather(1, target[:, None])[:, 0]
    if keep == "top1":
        # A class the model did not predict cannot "stay top-1": keep most of its probability instead.
        relative = target_prob >= NON_TOP_TARGET_FRACTION * prob_before
        return torch.where(top_before == target, probs.argmax(1) == target, relative)
    return target_prob >= float(keep) * prob_before


def _as_tuple(args: Any) -> tuple:
    if args is None:
        return ()
    return args if isinstance(args, tuple) else (args,)


class _Classifier:
    """Calls the user's forward function, checks its output, never touches its parameters."""

    def __init__(self, forward_func: ForwardFunc, spaces: Spaces, extra_args: tuple) -> None:
        self.forward_func, self.spaces, self.extra_args = forward_func, spaces, extra_args

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.forward_func(self.spaces.to_model(pixels), *self.extra_args)
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != pixels.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"forward_func: must return logits of shape (B, classes) = ({pixels.shape[0]}, K), got {shape}")
        return out


# --------------------------------------------------------------------------------------------
# parameterisations: what the optimiser moves


class _PixelParams:
    """x' = sigmoid(z), z starting at logit of the (slightly clipped) original."""

    def __init__(self, pixels: torch.Tensor) -> None:
        self.z = torch.logit(pixels.clamp(_EPS, 1 - _EPS)).detach().requires_grad_(True)

    def tensors(self) -> list[torch.Tensor]:
        return [self.z]

    def image(self) -> torch.Tensor:
        return torch.sigmoid(self.z)


class _LatentParams:
    """x' = Glow.decode(eps), eps starting at zero (the prior's mode) or at the input's latents."""

    def __init__(self, glow: Glow, pixels: torch.Tensor, init: str) -> None:
        self.glow = glow
        with torch.no_grad():
            latents = glow.encode(pixels)
        self.eps = [(torch.zeros_like(z) if init == "prior" else z).detach().requires_grad_(True) for z in latents]

    def tensors(self) -> list[torch.Tensor]:
        return self.eps

    def image(self) -> torch.Tensor:
        return self.glow.decode(self.eps)


def _round_8bit(x: torch.Tensor, straight_through: bool) -> torch.Tensor:
    rounded = torch.round(x * 255) / 255
    return x + (rounded - x).detach() if straight_through else rounded


# --------------------------------------------------------------------------------------------


@torch.no_grad()
def _evaluate(classifier: _Classifier, estimator: BitEstimator, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reported (8-bit, fixed dequantisation) bits and probabilities of pixel images."""
    rounded = _round_8bit(pixels, False)
    return estimator.bits(rounded), F.softmax(classifier.logits(rounded).float(), 1)


def simplify(
    forward_func: ForwardFunc,
    inputs: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | None = None,
    *,
    estimator: BitEstimator | str | None = None,
    additional_forward_args: Any = None,
    objective: str = "kl",
    parameterization: str = "pixels",
    latent_init: str = "prior",
    keep: Keep = "top1",
    steps: int = 60,
    lr: float = 0.01,
    adam_eps: float = 1e-8,
    lambda_start: float = 0.2,
    lambda_end: float = 20.0,
    n_snapshots: int = 10,
    temperature: tuple[float, float] = (1.0, 1.5),
    straight_through_rounding: bool = True,
    dequantization_noise: bool = True,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    transforms: tuple[Transform, Transform] | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> SimplificationResult:
    """Simplify a batch of images while keeping the classifier's answer.

    Parameters
    ----------
    forward_func : callable
        The classifier: ``forward_func(model_inputs, *additional_forward_args)`` -> logits (B, K).
        It is only called, never modified; gradients are taken with respect to the image only.
    inputs : Tensor, shape (B, C, H, W)
        Images in the model's input space (see ``normalization`` / ``transforms``).
    target : int, list of int or Tensor (B,), optional
        Class to keep per image (one int for all). Default: the predicted class.
    estimator : BitEstimator or str, optional
        Bit estimator (default: the package default). It must be a :class:`Glow` for
        ``parameterization="latent"``.
    additional_forward_args : any, optional
        Passed to ``forward_func`` after the inputs (Captum convention).
    objective : {"kl", "ce"}
        Keep the whole predicted distribution (KL) or the target class (cross-entropy).
    parameterization : {"pixels", "latent"}
        Optimise pixel logits starting from the original, or Glow latents.
    latent_init : {"prior", "input"}
        For ``"latent"``: start at the prior's mode (z = 0, as the paper) or at the input's latents.
    keep : "top1" or float
        Which snapshots count as keeping the prediction: same top class as ``target`` (for a target
        the original did not rank first: at least 90% of its original probability), or target
        probability at least this fraction of the original's.
    steps : int
        Optimisation steps (Adam).
    lr : float
        Adam learning rate.
    adam_eps : float
        Adam's epsilon, in bits per unit step of the parameters (the loss is optimised in bits):
        larger values leave pixels with tiny gradients alone.
    lambda_start, lambda_end : float
        The knob: lambda grows geometrically from start to end over the run.
    n_snapshots : int
        Snapshots along the path (the trade-off curve); the returned image is one of them.
    temperature : (float, float)
        The classifier's logits are divided by a temperature drawn uniformly from this range at
        every step (the paper's softening), so saturated outputs still give gradients.
    straight_through_rounding : bool
        Round x' to 8 bits in the forward pass, identity gradient backward.
    dequantization_noise : bool
        Random dequantisation while optimising (continuous estimators such as Glow).
    normalization : (mean, std), optional
        The model takes ``(pixels - mean) / std``.
    transforms : (to_pixels, to_model), optional
        Arbitrary differentiable conversions instead of ``normalization``.
    seed : int
        Same seed, same result on the same machine.
    show_progress : bool
        Show a rich progress bar.

    Returns
    -------
    SimplificationResult
    """
    # ---- validate everything before any long work
    if objective not in ("kl", "ce"):
        raise ValueError(f"objective: expected 'kl' or 'ce', got {objective!r}")
    if parameterization not in ("pixels", "latent"):
        raise ValueError(f"parameterization: expected 'pixels' or 'latent', got {parameterization!r}")
    if latent_init not in ("prior", "input"):
        raise ValueError(f"latent_init: expected 'prior' or 'input', got {latent_init!r}")
    _check_keep(keep)
    if steps < 1 or n_snapshots < 1:
        raise ValueError("steps and n_snapshots must be at least 1")
    if not (0 < lambda_start <= lambda_end):
        raise ValueError(f"lambda_start, lambda_end: need 0 < lambda_start <= lambda_end, got {lambda_start}, {lambda_end}")
    if not (0 < temperature[0] <= temperature[1]):
        raise ValueError(f"temperature: need 0 < low <= high, got {temperature}")
    if not callable(forward_func):
        raise TypeError("forward_func: must be callable (a model or a function returning logits)")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise ValueError(f"inputs: expected a tensor of shape (B, C, H, W), got {getattr(inputs, 'shape', type(inputs).__name__)}")
    check_finite(inputs, "inputs")
    spaces = make_spaces(normalization, transforms)
    device, dtype = inputs.device, inputs.dtype if inputs.is_floating_point() else torch.float32
    with torch.no_grad():
        pixels = check_pixel_images(spaces.to_pixels(inputs.detach().to(dtype)), "inputs (in pixel space)")
    if not isinstance(estimator, BitEstimator):
        estimator = load_estimator(estimator, device=device)
    if parameterization == "latent" and not isinstance(estimator, Glow):
        raise ValueError(f"estimator: parameterization='latent' needs a Glow estimator, got {estimator.name!r}")
    if isinstance(forward_func, torch.nn.Module) and forward_func.training:
        warnings.warn("forward_func is in training mode; explanations of eval-mode behaviour need model.eval()", stacklevel=2)

    t_start = time.perf_counter()
    batch = pixels.shape[0]
    classifier = _Classifier(forward_func, spaces, _as_tuple(additional_forward_args))
    generator = torch.Generator(device="cpu").manual_seed(seed)

    with torch.no_grad():
        logits_before = classifier.logits(pixels).float()
    probs_before = F.softmax(logits_before, 1)
    target_t = normalize_target(target, batch, logits_before.shape[1])
    target_t = logits_before.argmax(1) if target_t is None else target_t.to(device)
    prob_before = probs_before.gather(1, target_t[:, None])[:, 0]

    params = (
        _LatentParams(estimator, _round_8bit(pixels, False), latent_init) if parameterization == "latent" else _PixelParams(pixels)
    )
    # Gradients are taken of the loss in bits (bpd * dims), so ``adam_eps`` is in bits per unit
    # step whatever the image size.
    dims = math.prod(pixels.shape[1:])
    optimizer = torch.optim.Adam(params.tensors(), lr=lr, eps=adam_eps)
    lambdas = torch.logspace(math.log10(lambda_start), math.log10(lambda_end), steps).tolist()
    snapshot_steps = sorted({round((i + 1) * steps / n_snapshots) - 1 for i in range(n_snapshots)})
    active = torch.ones(batch, dtype=torch.bool, device=device)
    # The path starts at the original (lambda = 0), so the answer is never more complex than it.
    original_8bit = _round_8bit(pixels, False)
    with torch.no_grad():
        bits_map_before = estimator.bits_map(original_8bit)
    bits_before = bits_map_before.flatten(1).sum(1)
    path_images, path_bits, path_probs, path_lambdas = [original_8bit], [bits_before], [probs_before], [0.0]

    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("simplifying", total=steps)
        for step, lam in enumerate(lambdas):
            with torch.enable_grad():
                x_new = _round_8bit(params.image(), straight_through_rounding)
                t_lo, t_hi = temperature
                temp = t_lo + (t_hi - t_lo) * float(torch.rand((), generator=generator))
                log_q = F.log_softmax(classifier.logits(x_new).float() / temp, 1)
                if objective == "kl":
                    log_p = F.log_softmax(logits_before / temp, 1)
                    task_loss = (log_p.exp() * (log_p - log_q)).sum(1)
                else:
                    task_loss = -log_q.gather(1, target_t[:, None])[:, 0]
                bpd = estimator.bpd(x_new, noise=dequantization_noise, generator=generator)
                per_image = task_loss + lam * bpd
                grads = torch.autograd.grad(per_image.sum() * dims, params.tensors())
            # A non-finite loss or gradient stops that image; the batch goes on.
            finite = torch.isfinite(per_image.detach())
            for g in grads:
                finite &= torch.isfinite(g).flatten(1).all(1)
            active &= finite
            saved = [t.detach().clone() for t in params.tensors()]
            for t, g in zip(params.tensors(), grads):
                t.grad = torch.where(active.view(-1, *[1] * (g.dim() - 1)), g, torch.zeros_like(g))
            optimizer.step()
            with torch.no_grad():
                for t, old in zip(params.tensors(), saved):
                    t.copy_(torch.where(active.view(-1, *[1] * (t.dim() - 1)), t, old))
            if step in snapshot_steps:
                with torch.no_grad():
                    snap = _round_8bit(params.image(), False)
                    bits, probs = _evaluate(classifier, estimator, snap)
                path_images.append(snap)
                path_bits.append(bits)
                path_probs.append(probs)
                path_lambdas.append(lam)
            progress.advance(task)

    # ---- choose, per image, the simplest snapshot that keeps the prediction
    with torch.no_grad():
        images = torch.stack(path_images)  # (S, B, C, H, W)
        bits_path = torch.stack(path_bits)  # (S, B)
        probs_path = torch.stack(path_probs)  # (S, B, K)
        top_before = probs_before.argmax(1)
        kept_path = torch.stack([_kept(keep, p, target_t, prob_before, top_before) for p in probs_path])
        snapshots_ok = torch.isfinite(bits_path) & torch.isfinite(probs_path).all(2)
        score = torch.where(kept_path & snapshots_ok, bits_path, torch.full_like(bits_path, math.inf))
        any_kept = torch.isfinite(score).any(0)
        # Nothing kept (not even the original, e.g. target != prediction): return the original.
        choice = torch.where(any_kept, score.argmin(0), torch.zeros_like(any_kept, dtype=torch.long))
        idx = torch.arange(batch, device=device)
        simplified = images[choice, idx]
        probs_after = probs_path[choice, idx]
        kept = kept_path[choice, idx]
        bits_map_after = estimator.bits_map(simplified)
        bits_after = bits_map_after.flatten(1).sum(1)
        log_after = torch.log(probs_after.clamp_min(1e-30))
        kl = (probs_before * (torch.log(probs_before.clamp_min(1e-30)) - log_after)).sum(1)
        status = ["non-finite" if not a else ("ok" if k else "not kept") for a, k in zip(active.tolist(), kept.tolist())]
        result = SimplificationResult(
            original=pixels,
            simplified=simplified,
            simplified_inputs=spaces.to_model(simplified),
            bits_before=bits_before,
            bits_after=bits_after,
            bpd_before=bits_before / dims,
            bpd_after=bits_after / dims,
            bits_map_before=bits_map_before,
            bits_map_after=bits_map_after,
            probs_before=probs_before,
            probs_after=probs_after,
            pred_before=probs_before.argmax(1),
            pred_after=probs_after.argmax(1),
            target=target_t,
            target_prob_delta=probs_after.gather(1, target_t[:, None])[:, 0] - prob_before,
            kl=kl,
            kept=kept,
            lambda_chosen=torch.tensor(path_lambdas, device=device)[choice],
            path_lambdas=torch.tensor(path_lambdas),
            path_bits=bits_path,
            path_target_prob=probs_path.gather(2, target_t.view(1, -1, 1).expand(len(path_lambdas), -1, 1))[..., 0],
            path_kept=kept_path,
            path_images=(images * 255).round().to(torch.uint8),
            status=status,
            steps=steps,
            seconds=time.perf_counter() - t_start,
            settings={
                "objective": objective, "parameterization": parameterization, "latent_init": latent_init,
                "keep": keep, "steps": steps, "lr": lr, "lambda_start": lambda_start, "lambda_end": lambda_end,
                "temperature": list(temperature), "estimator": estimator.name, "seed": seed,
            },
        )
    return result
