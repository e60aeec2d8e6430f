"""The gradient engine: pixel logits (or Glow latents) optimised by Adam along one continuation run of the knob.

For images x (pixel space) and classifier f, find x' minimising

    L(x') = D_task(f(x), f(x')) + lambda * bpd(x')

with D_task the KL between the predicted distributions (``objective="kl"``) or the cross-entropy
to a target class (``objective="ce"``). lambda grows geometrically along one continuation run
(the *knob*); snapshots along the way give each image's trade-off curve (bits vs. probability
kept), and the simplest snapshot that still satisfies ``keep`` is returned.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .._helpers import ForwardFunc, Transform, as_tuple, check_target_range, model_guard, module_of, resolve_target, seeded
from .._progress import JobProgress
from .._validation import check_finite, check_pixel_images
from ..estimators import BitEstimator, Glow, resolve_estimator
from ..spaces import make_spaces
from . import factorised
from .common import Classifier, Decision, PathRecorder, RunContext, evaluate, guarded_step, round_8bit, snapshot_steps
from .config import ENGINE_DEFAULTS, SimplifyConfig, config_options, images_per_chunk, make_config, mask_grid
from .factorised import factorised_engine
from .heads import check_outputs
from .learned import Simplifier, as_simplifier, learned_engine
from .mask import mask_engine
from .result import SimplificationResult

# ENGINE_DEFAULTS is defined in .config; it is importable from here too (the CLI reads it from this module).
__all__ = ["ENGINE_DEFAULTS", "SimplifyConfig", "simplify"]

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


@config_options
def simplify(
    forward_func: ForwardFunc,
    inputs: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | None = None,
    *,
    config: SimplifyConfig | None = None,
    estimator: BitEstimator | str | Path | None = None,
    additional_forward_args: Any = None,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    transforms: tuple[Transform, Transform] | None = None,
    simplifier: Simplifier | str | Path | None = None,
    show_progress: bool = False,
    **options: Any,
) -> SimplificationResult:
    """Simplify a batch of images while keeping the classifier's answer.

    How to simplify is a :class:`SimplifyConfig` (objective, head, engine, steps, knob, seed, ...);
    give it as ``config``, as keywords (its field names), or both: keywords override the config's
    fields. ``simplify(model, x, steps=10, mask_size=8)`` is
    ``simplify(model, x, config=SimplifyConfig(steps=10, mask_size=8))``. Build a config once and
    reuse it::

        config = SimplifyConfig(objective="ce", keep=0.9, steps=60)
        first = simplify(model, x, labels, config=config)
        again = simplify(model, y, config=config, seed=1)     # the same options, another seed

    Parameters
    ----------
    forward_func : callable
        The classifier: ``forward_func(model_inputs, *additional_forward_args)`` -> logits (B, K).
        It is only called, never modified; gradients are taken with respect to the image only.
    inputs : Tensor, shape (B, C, H, W)
        Images in the model's input space (see ``normalization`` / ``transforms``); pixel values
        in [0, 1] once converted to pixel space.
    target : int, list of int or Tensor (B,), optional
        Class to keep per image (one int for all). Default: the predicted class.
    config : SimplifyConfig, optional
        The options (default: ``SimplifyConfig()``, every field's default). Per-engine defaults of
        the fields left as ``None`` (``steps``, ``lr``, ``lambda_*``) come from :data:`ENGINE_DEFAULTS`.
    estimator : BitEstimator, str or path, optional
        Bit estimator, its registered name or checkpoint (default: the package default), moved to the inputs' device (a copy: the
        caller's object stays where it is). It must be a :class:`Glow` for
        ``parameterization="latent"``.
    additional_forward_args : any, optional
        Passed to ``forward_func`` after the inputs (Captum convention).
    normalization : (mean, std), optional
        The model takes ``(pixels - mean) / std``.
    transforms : (to_pixels, to_model), optional
        Arbitrary differentiable conversions instead of ``normalization``.
    simplifier : Simplifier or path, optional
        A learned simplifier (:func:`~simplebits_audit.train_simplifier`) for this classifier: its
        one-pass mask replaces the per-image optimisation (the mask engine's options ``mask_size``,
        ``mask_init`` and ``reference`` then come from it; ``refine_steps`` adds per-image steps).
        A file is loaded weights-only; a simplifier trained against another classifier warns.
        Needs ``parameterization="mask"``.
    show_progress : bool
        Show a rich progress bar.
    **options
        Any :class:`SimplifyConfig` field (each documented there; the signature lists them with
        their defaults), overriding ``config``'s. Any other name is a ``TypeError`` naming it.

    Returns
    -------
    SimplificationResult
        ``simplified`` (B, C, H, W) in [0, 1]; ``probs_before`` / ``probs_after`` are the head's
        probabilities (B, K). Tensors are float32 whatever the model's dtype (bits and 8-bit
        rounding are computed in float32). ``settings`` records the resolved options.

    Raises
    ------
    TypeError, ValueError, RuntimeError
        Before any work: an unknown option, bad options, shapes or values, a (B, 1) output under
        the softmax head, a classifier whose logits do not reach the image through autograd
        (checked with one backward pass on the first image), ``torch.inference_mode``.
    """
    # ---- validate everything before any long work (the config checks itself when made)
    config = make_config(config, options).resolved()
    if simplifier is not None and config.parameterization != "mask":
        raise ValueError(
            f"simplifier: a learned simplifier predicts a mask; it needs parameterization='mask', got {config.parameterization!r}"
        )
    if not callable(forward_func):
        raise TypeError("forward_func: must be callable (a model or a function returning logits)")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise ValueError(f"inputs: expected a tensor of shape (B, C, H, W), got {getattr(inputs, 'shape', type(inputs).__name__)}")
    if inputs.numel() == 0:
        raise ValueError(f"inputs: an empty batch, shape {tuple(inputs.shape)}")
    check_finite(inputs, "inputs")
    spaces = make_spaces(normalization, transforms)
    # Everything outside the model runs in float32 (bits of a bf16 image differ, and bf16 cannot
    # hold the 8-bit grid); the model gets its own dtype.
    device, model_dtype = inputs.device, inputs.dtype if inputs.is_floating_point() else torch.float32
    if inputs.is_inference():  # made under torch.inference_mode: an ordinary copy can enter autograd
        inputs = inputs.clone()
    with torch.no_grad():
        pixels = check_pixel_images(spaces.to_pixels(inputs.detach().float()), "inputs (in pixel space)")
    estimator = resolve_estimator(estimator, device=device)
    if config.parameterization == "latent" and not isinstance(estimator, Glow):
        raise ValueError(f"estimator: parameterization='latent' needs a Glow estimator, got {estimator.name!r}")
    if config.parameterization == "latent":  # the latents are the Glow's own: no replicated channel, no padding
        c, h, w, m = *pixels.shape[1:], estimator.size_multiple
        if c not in estimator.native_channels or h % m or w % m:
            channels = "/".join(map(str, estimator.native_channels))
            raise ValueError(f"inputs: parameterization='latent' needs {channels} channels and a height and width that are "
                             f"multiples of {m}, got {tuple(pixels.shape[1:])}")
    chunk = images_per_chunk(config.internal_batch_size, tuple(pixels.shape[-2:]))
    if pixels.shape[0] > chunk:
        target_t = resolve_target(target, pixels.shape[0], device=device)
        # What the first chunk would check, checked for every chunk before any work: the head against the outputs,
        # and a given target's range (one forward pass of two images: a train-mode BatchNorm model takes them).
        # One guard over every chunk (the chunks' own guards nest in it: one warning, one restore).
        with model_guard(forward_func):
            with torch.no_grad():
                args = as_tuple(_rows(additional_forward_args, slice(0, 2), pixels.shape[0]))
                n_classes = Classifier(forward_func, spaces, args, model_dtype).logits(pixels[:2]).shape[1]
            check_outputs(n_classes, config.head, model=forward_func)
            if target_t is not None:
                check_target_range(target_t, n_classes)
            return _in_chunks(
                chunk, forward_func, inputs, target_t, config=config, estimator=estimator,
                additional_forward_args=additional_forward_args, normalization=normalization, transforms=transforms, simplifier=simplifier,
                show_progress=show_progress,
            )
    settings = {
        "objective": config.objective, "parameterization": config.parameterization, "latent_init": config.latent_init,
        "keep": config.keep, "head": config.head, "threshold": config.threshold, "steps": config.steps, "lr": config.lr,
        "lambda_start": config.lambda_start, "lambda_end": config.lambda_end, "temperature": list(config.temperature),
        "estimator": estimator.name, "seed": config.seed,
    }
    if simplifier is not None:
        simplifier = as_simplifier(simplifier, forward_func, pixels.shape[1], device)
        card = simplifier.card
        settings.update(
            simplifier={k: card.get(k) for k in ("model_fingerprint", "lam", "steps", "data")},
            refine_steps=config.refine_steps,
            steps=config.refine_steps,
            **{k: simplifier.config[k] for k in ("mask_size", "mask_init", "reference")},
        )
    elif config.parameterization in ("mask", "factorised"):
        settings.update(mask_size=max(mask_grid(config.mask_size, tuple(pixels.shape[-2:]))), mask_init=config.mask_init,
                        reference=config.reference)
    if simplifier is None and config.parameterization == "factorised":
        settings.update(blur_sigma=config.blur_sigma, axis_mask_size=config.axis_mask_size, composition=list(factorised.COMPOSITION))
    started = time.perf_counter()
    # The guard restores the model whatever happens (BatchNorm statistics of a train-mode model included);
    # the forked RNG, seeded, makes the model's own randomness (Dropout) part of ``seed``.
    # The inputs' device and every device the model lives on (Dropout on a model split across GPUs).
    module = module_of(forward_func)
    model_devices = [p.device for p in module.parameters()] if module is not None else []
    with model_guard(forward_func), seeded(config.seed, [device, *model_devices]):
        classifier = Classifier(forward_func, spaces, as_tuple(additional_forward_args), model_dtype)
        with torch.no_grad():
            logits_before = classifier.logits(pixels)
        check_outputs(logits_before.shape[1], config.head, model=forward_func)
        target_t = resolve_target(target, pixels.shape[0], n_classes=logits_before.shape[1], device=device)
        decision = Decision.of(logits_before, target_t, head=config.head, threshold=config.threshold, keep=config.keep)
        if simplifier is None or config.refine_steps > 0:
            classifier.check_gradient_path(pixels, decision)
        run = RunContext(classifier, estimator, pixels, decision, settings, show_progress, started)
        if simplifier is not None:
            return learned_engine(run, config, simplifier)
        if config.parameterization == "mask":
            return mask_engine(run, config)
        if config.parameterization == "factorised":
            return factorised_engine(run, config)
        params = (
            _LatentParams(estimator, round_8bit(pixels, False), config.latent_init) if config.parameterization == "latent"
            else _PixelParams(pixels)
        )
        return _continuation(run, config, params)


def _rows(extra: Any, rows: slice, batch: int) -> tuple | None:
    """``additional_forward_args`` for ``rows`` of the batch: tensors with one row per image are sliced, others go whole
    (Captum's rule for ``internal_batch_size``)."""
    if extra is None:
        return None
    return tuple(a[rows] if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == batch else a for a in as_tuple(extra))


def _in_chunks(
    chunk: int, forward_func: ForwardFunc, inputs: torch.Tensor, target: torch.Tensor | None, **kwargs: Any
) -> SimplificationResult:
    """:func:`simplify` of ``inputs`` ``chunk`` images at a time, as one result.

    ``target`` is resolved (B,) or None; tensors of ``additional_forward_args`` with one row per
    image are split with the images (Captum's rule for ``internal_batch_size``), others go whole.
    """
    started, batch = time.perf_counter(), inputs.shape[0]
    extra, config = kwargs.pop("additional_forward_args"), kwargs.pop("config")
    # A last chunk of one image joins the one before (one image over the bound): a train-mode BatchNorm model refuses it.
    starts = list(range(0, batch, chunk))
    if len(starts) > 1 and batch - starts[-1] == 1:
        starts.pop()
    parts = []
    for start, end in zip(starts, starts[1:] + [batch]):
        rows = slice(start, end)
        args = _rows(extra, rows, batch)
        # each chunk whole (its own size as the bound: the merged last chunk is not split again)
        parts.append(simplify(forward_func, inputs[rows], None if target is None else target[rows], additional_forward_args=args,
                              config=dataclasses.replace(config, internal_batch_size=end - start), **kwargs))
    result = SimplificationResult.cat(parts)
    result.seconds = time.perf_counter() - started
    return result


def _continuation(run: RunContext, config: SimplifyConfig, params: Any) -> SimplificationResult:
    """Adam on ``params`` while lambda grows geometrically; snapshots along the way; the simplest kept one returned.

    ``config`` is resolved; ``params`` is a parameterisation (``tensors()``, ``image()``).
    """
    classifier, estimator, pixels, decision = run.classifier, run.estimator, run.pixels, run.decision
    steps = config.steps
    batch, device = pixels.shape[0], pixels.device
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    # Gradients are taken of the loss in bits (bpd * dims), so ``adam_eps`` is in bits per unit
    # step whatever the image size.
    dims = math.prod(pixels.shape[1:])
    optimizer = torch.optim.Adam(params.tensors(), lr=config.lr, eps=config.adam_eps)
    lambdas = torch.logspace(math.log10(config.lambda_start), math.log10(config.lambda_end), steps).tolist()
    snapshots = snapshot_steps(steps, config.n_snapshots)
    active = torch.ones(batch, dtype=torch.bool, device=device)
    # The path starts at the original (lambda = 0), so the answer is never more complex than it.
    original_8bit = round_8bit(pixels, False)
    with torch.no_grad():
        bits_map_before = estimator.bits_map(original_8bit)
    path = PathRecorder(original_8bit, bits_map_before, decision.probs_before)

    with JobProgress(disable=not run.show_progress) as progress:
        task = progress.add_task("simplifying", total=steps)
        for step, lam in enumerate(lambdas):
            with torch.enable_grad():
                x_new = round_8bit(params.image(), config.straight_through_rounding)
                loss = decision.task_loss(classifier.logits(x_new), config.objective, config.temperature, generator)
                bpd = estimator.bpd(x_new, noise=config.dequantization_noise, generator=generator)
                per_image = loss + lam * bpd
                grads = torch.autograd.grad(per_image.sum() * dims, params.tensors())
            active = guarded_step(optimizer, params.tensors(), grads, per_image, active)
            if step in snapshots:
                with torch.no_grad():
                    snap = round_8bit(params.image(), False)
                    bits, probs = evaluate(classifier, estimator, snap, decision.head)
                path.add(snap, bits, probs, lam)
            progress.advance(task)

    return path.result(run, active=active, steps=steps)
