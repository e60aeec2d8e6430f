"""The gradient engine: pixel logits (or Glow latents) optimised by Adam along one continuation run of the knob.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from .._helpers import ForwardFunc, Transform, as_tuple, model_guard, resolve_target
from .._validation import check_finite, check_pixel_images
from ..estimators import BitEstimator, Glow, load_estimator
from ..spaces import make_spaces
from .common import Classifier, Decision, evaluate, guarded_step, path_result, round_8bit, snapshot_steps
from .heads import Keep, check_head, check_keep, check_outputs
from .learned import Simplifier, as_simplifier, learned_engine
from .mask import REFERENCES, mask_engine
from .result import SimplificationResult

#: Per-engine defaults of the options left as ``None`` (measured choices: README, method section).
ENGINE_DEFAULTS: dict[str, dict[str, float]] = {
    "mask": {"steps": 30, "lr": 0.3, "lambda_start": 1.0, "lambda_end": 1.0},
    "pixels": {"steps": 60, "lr": 0.01, "lambda_start": 0.2, "lambda_end": 20.0},
    "latent": {"steps": 60, "lr": 0.01, "lambda_start": 0.2, "lambda_end": 20.0},
}

#: Images start half a quantisation bin inside (0, 1): rounding recovers the original exactly, and
#: saturated pixels still have a usable gradient through the sigmoid.
_EPS = 0.5 / 255


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


def simplify(
    forward_func: ForwardFunc,
    inputs: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | None = None,
    *,
    estimator: BitEstimator | str | None = None,
    additional_forward_args: Any = None,
    objective: str = "kl",
    head: str = "softmax",
    threshold: float = 0.5,
    parameterization: str = "mask",
    latent_init: str = "prior",
    keep: Keep = "top1",
    steps: int | None = None,
    lr: float | None = None,
    adam_eps: float = 1e-8,
    lambda_start: float | None = None,
    lambda_end: float | None = None,
    n_snapshots: int = 10,
    mask_size: int = 16,
    mask_init: float = 0.4,
    reference: str = "mean",
    temperature: tuple[float, float] = (1.0, 1.5),
    straight_through_rounding: bool = True,
    dequantization_noise: bool = True,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    transforms: tuple[Transform, Transform] | None = None,
    simplifier: Simplifier | str | Path | None = None,
    refine_steps: int = 0,
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
        Keep the whole predicted distribution (KL) or the target class (cross-entropy). With a
        sigmoid head: the summed per-label Bernoulli KL, or the binary cross-entropy of each kept
        label towards its original side.
    head : {"softmax", "sigmoid"}
        The classifier's output head (:mod:`~simplebits_audit.simplification.heads`): one softmax
        over K classes, or one sigmoid per label (binary with a (B, 1) output, or multi-label).
        A (B, 1) output under ``"softmax"`` is a ``ValueError`` (its softmax is always 1).
    threshold : float
        Sigmoid head: a label is on when its probability is at least this; keeping the decision
        means every kept label stays on the same side (the ``target`` label, or with no target
        every label the model switched on; if none was on, all stay off).
    parameterization : {"mask", "pixels", "latent"}
        What the optimiser moves. ``"mask"``: a smooth mask between the original and a simple
        reference image, started near the simple end (:mod:`~simplebits_audit.simplification.mask`);
        ``"pixels"``: pixel logits started at the original; ``"latent"``: Glow latents.
    latent_init : {"prior", "input"}
        For ``"latent"``: start at the prior's mode (z = 0, as the paper) or at the input's latents.
    keep : "top1" or float
        Which snapshots count as keeping the prediction: same top class as ``target`` (for a target
        the original did not rank first: at least 90% of its original probability), or target
        probability at least this fraction of the original's. Sigmoid head: ``"top1"`` means every
        kept label on the same side of ``threshold``; a fraction also asks that share of each kept
        label's probability of its side.
    steps : int, optional
        Optimisation steps (Adam). Default: see :data:`ENGINE_DEFAULTS` (30 for the mask, 60 otherwise).
    lr : float, optional
        Adam learning rate. Default: 0.3 for the mask, 0.01 otherwise.
    adam_eps : float
        Adam's epsilon, in bits per unit step of the parameters (the loss is optimised in bits):
        larger values leave pixels with tiny gradients alone.
    lambda_start, lambda_end : float, optional
        The knob: lambda grows geometrically from start to end over the run. Default: 1 throughout
        for the mask (whose bits term is charged only while the prediction holds), 0.2 to 20 otherwise.
    n_snapshots : int
        Snapshots along the path (the trade-off curve); the returned image is one of them.
    mask_size : int
        ``"mask"``: the mask is a ``mask_size`` x ``mask_size`` grid of logits, upsampled bilinearly.
    mask_init : float
        ``"mask"``: the mask's value everywhere at the start, in (0, 1); small = near the reference.
    reference : {"mean", "blur", "grey"}
        ``"mask"``: the simple image the mask blends towards (each image's flat mean colour by default).
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
    simplifier : Simplifier or path, optional
        A learned simplifier (:func:`~simplebits_audit.train_simplifier`) for this classifier: its
        one-pass mask replaces the per-image optimisation (the mask engine's options ``mask_size``,
        ``mask_init`` and ``reference`` then come from it). A file is loaded weights-only; a
        simplifier trained against another classifier warns.
    refine_steps : int
        With ``simplifier``: refine its mask per image with this many mask-engine steps
        (warm-started; ``lr`` and ``lambda_*`` apply). 0: the learned output only, choosing the
        simplest kept image among the learned mask shifted towards the original.
    seed : int
        Same seed, same result on the same machine: the engine's own random numbers and the
        model's (Dropout in a train-mode model) are drawn from generators seeded with it; the
        global RNG is forked, so the caller's random stream is left as it was.
    show_progress : bool
        Show a rich progress bar.

    Returns
    -------
    SimplificationResult
        ``probs_before`` / ``probs_after`` are the head's probabilities (B, K). Tensors are float32
        whatever the model's dtype (bits and 8-bit rounding are computed in float32).

    Raises
    ------
    ValueError, RuntimeError
        Before any work: bad options, shapes or values, a (B, 1) output under the softmax head,
        a classifier whose logits do not reach the image through autograd (checked with one
        backward pass on the first image), ``torch.inference_mode``.
    """
    # ---- validate everything before any long work
    if objective not in ("kl", "ce"):
        raise ValueError(f"objective: expected 'kl' or 'ce', got {objective!r}")
    if parameterization not in ENGINE_DEFAULTS:
        raise ValueError(f"parameterization: expected one of {tuple(ENGINE_DEFAULTS)}, got {parameterization!r}")
    defaults = ENGINE_DEFAULTS[parameterization]
    steps = defaults["steps"] if steps is None else steps
    lr = defaults["lr"] if lr is None else lr
    lambda_start = defaults["lambda_start"] if lambda_start is None else lambda_start
    lambda_end = max(lambda_start, defaults["lambda_end"]) if lambda_end is None else lambda_end
    if not 0 < mask_init < 1:
        raise ValueError(f"mask_init: expected a value in (0, 1), got {mask_init}")
    if mask_size < 1:
        raise ValueError(f"mask_size: expected a positive grid size, got {mask_size}")
    if reference not in REFERENCES:
        raise ValueError(f"reference: expected one of {REFERENCES}, got {reference!r}")
    if latent_init not in ("prior", "input"):
        raise ValueError(f"latent_init: expected 'prior' or 'input', got {latent_init!r}")
    check_keep(keep)
    check_head(head, threshold)
    if simplifier is not None and parameterization != "mask":
        raise ValueError(f"simplifier: a learned simplifier predicts a mask; it needs parameterization='mask', got {parameterization!r}")
    if not (isinstance(refine_steps, int) and refine_steps >= 0):
        raise ValueError(f"refine_steps: expected an integer >= 0, got {refine_steps!r}")
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
    # Everything outside the model runs in float32 (bits of a bf16 image differ, and bf16 cannot
    # hold the 8-bit grid); the model gets its own dtype.
    device, model_dtype = inputs.device, inputs.dtype if inputs.is_floating_point() else torch.float32
    if inputs.is_inference():  # made under torch.inference_mode: an ordinary copy can enter autograd
        inputs = inputs.clone()
    with torch.no_grad():
        pixels = check_pixel_images(spaces.to_pixels(inputs.detach().float()), "inputs (in pixel space)")
    if not isinstance(estimator, BitEstimator):
        estimator = load_estimator(estimator, device=device)
    if parameterization == "latent" and not isinstance(estimator, Glow):
        raise ValueError(f"estimator: parameterization='latent' needs a Glow estimator, got {estimator.name!r}")
    settings = {
        "objective": objective, "parameterization": parameterization, "latent_init": latent_init,
        "keep": keep, "head": head, "threshold": threshold, "steps": steps, "lr": lr, "lambda_start": lambda_start, "lambda_end": lambda_end,
        "temperature": list(temperature), "estimator": estimator.name, "seed": seed,
    }
    if simplifier is not None:
        simplifier = as_simplifier(simplifier, forward_func, pixels.shape[1], device)
        card = simplifier.card
        settings.update(simplifier={k: card.get(k) for k in ("model_fingerprint", "lam", "steps", "data")}, refine_steps=refine_steps,
                        steps=refine_steps, **{k: simplifier.config[k] for k in ("mask_size", "mask_init", "reference")})
    elif parameterization == "mask":
        settings.update(mask_size=mask_size, mask_init=mask_init, reference=reference)
    started = time.perf_counter()
    # The guard restores the model whatever happens (BatchNorm statistics of a train-mode model included);
    # the forked RNG, seeded, makes the model's own randomness (Dropout) part of ``seed``.
    devices = [device] if device.type == "cuda" else []
    with model_guard(forward_func), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        classifier = Classifier(forward_func, spaces, as_tuple(additional_forward_args), model_dtype)
        with torch.no_grad():
            logits_before = classifier.logits(pixels)
        check_outputs(logits_before.shape[1], head)
        target_t = resolve_target(target, pixels.shape[0], n_classes=logits_before.shape[1], device=device)
        decision = Decision.of(logits_before, target_t, head=head, threshold=threshold, keep=keep)
        if simplifier is None or refine_steps > 0:
            classifier.check_gradient_path(pixels, decision.target)
        if simplifier is not None:
            return learned_engine(
                classifier, estimator, simplifier, pixels, decision, refine_steps=refine_steps, settings=settings,
                started=started, objective=objective, lr=lr, lambda_start=lambda_start, lambda_end=lambda_end, n_snapshots=n_snapshots,
                temperature=temperature, seed=seed, show_progress=show_progress,
            )
        if parameterization == "mask":
            return mask_engine(
                classifier, estimator, pixels, decision, objective=objective, steps=steps, lr=lr,
                lambda_start=lambda_start, lambda_end=lambda_end, mask_size=mask_size, mask_init=mask_init, reference=reference,
                n_snapshots=n_snapshots, temperature=temperature, seed=seed, show_progress=show_progress, settings=settings, started=started,
            )
        params = (
            _LatentParams(estimator, round_8bit(pixels, False), latent_init) if parameterization == "latent" else _PixelParams(pixels)
        )
        return _continuation(
            classifier, estimator, params, pixels, decision, objective=objective, steps=steps, lr=lr,
            adam_eps=adam_eps, lambda_start=lambda_start, lambda_end=lambda_end, n_snapshots=n_snapshots, temperature=temperature,
            straight_through_rounding=straight_through_rounding, dequantization_noise=dequantization_noise, seed=seed,
            show_progress=show_progress, settings=settings, started=started,
        )


def _continuation(
    classifier: Classifier, estimator: BitEstimator, params: Any, pixels: torch.Tensor, decision: Decision, *,
    objective: str, steps: int, lr: float, adam_eps: float, lambda_start: float, lambda_end: float, n_snapshots: int,
    temperature: tuple[float, float], straight_through_rounding: bool, dequantization_noise: bool, seed: int, show_progress: bool,
    settings: dict[str, Any], started: float,
) -> SimplificationResult:
    """Adam on ``params`` while lambda grows geometrically; snapshots along the way; the simplest kept one returned."""
    batch, device = pixels.shape[0], pixels.device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    probs_before = decision.probs_before
    # Gradients are taken of the loss in bits (bpd * dims), so ``adam_eps`` is in bits per unit
    # step whatever the image size.
    dims = math.prod(pixels.shape[1:])
    optimizer = torch.optim.Adam(params.tensors(), lr=lr, eps=adam_eps)
    lambdas = torch.logspace(math.log10(lambda_start), math.log10(lambda_end), steps).tolist()
    snapshots = snapshot_steps(steps, n_snapshots)
    active = torch.ones(batch, dtype=torch.bool, device=device)
    # The path starts at the original (lambda = 0), so the answer is never more complex than it.
    original_8bit = round_8bit(pixels, False)
    with torch.no_grad():
        bits_map_before = estimator.bits_map(original_8bit)
    bits_before = bits_map_before.flatten(1).sum(1)
    path_images, path_bits, path_probs, path_lambdas = [original_8bit], [bits_before], [probs_before], [0.0]

    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("simplifying", total=steps)
        for step, lam in enumerate(lambdas):
            with torch.enable_grad():
                x_new = round_8bit(params.image(), straight_through_rounding)
                loss = decision.task_loss(classifier.logits(x_new), objective, temperature, generator)
                bpd = estimator.bpd(x_new, noise=dequantization_noise, generator=generator)
                per_image = loss + lam * bpd
                grads = torch.autograd.grad(per_image.sum() * dims, params.tensors())
            active = guarded_step(optimizer, params.tensors(), grads, per_image, active)
            if step in snapshots:
                with torch.no_grad():
                    snap = round_8bit(params.image(), False)
                    bits, probs = evaluate(classifier, estimator, snap, decision.head)
                path_images.append(snap)
                path_bits.append(bits)
                path_probs.append(probs)
                path_lambdas.append(lam)
            progress.advance(task)

    return path_result(
        original=pixels, spaces=classifier.spaces, estimator=estimator, decision=decision, bits_map_before=bits_map_before,
        path_images=path_images, path_bits=path_bits, path_probs=path_probs, path_lambdas=path_lambdas, active=active, steps=steps,
        started=started, settings=settings,
    )
