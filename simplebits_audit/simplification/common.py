"""Pieces every simplification engine shares: the keep rule, 8-bit rounding, the guarded classifier,
and turning a path of snapshots into a
:class:`~simplebits_audit.simplification.SimplificationResult`.

An engine moves some parameterisation of the image (pixel logits, latents, a mask, ...) and
records snapshots along the knob in a :class:`PathRecorder`; :meth:`PathRecorder.result` then
picks, per image, the simplest snapshot that still satisfies ``keep`` and measures it, the same
way for every engine. A :class:`RunContext` carries what the call hands its engine.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from .._helpers import ForwardFunc, check_logits, export_hint, last_line, module_of
from ..estimators import BitEstimator
from ..spaces import Spaces
from .heads import Decision, Keep, check_keep, probabilities
from .result import SimplificationResult

__all__ = [
    "Classifier",
    "Decision",
    "Keep",
    "PathRecorder",
    "RunContext",
    "Snapshot",
    "check_keep",
    "evaluate",
    "guarded_step",
    "round_8bit",
    "snapshot_steps",
]

def round_8bit(x: torch.Tensor, straight_through: bool) -> torch.Tensor:
    """Pixels (B, C, H, W) rounded to 8 bits; with ``straight_through`` the gradient passes unchanged."""
    rounded = torch.round(x * 255) / 255
    return x + (rounded - x).detach() if straight_through else rounded


class Classifier:
    """Calls the user's forward function on pixel images and checks its output; never touches its parameters.

    Work outside the model happens in float32; ``input_dtype`` is what the model takes (a bf16 or
    fp16 model gets its own dtype, its logits come back as float32).
    """

    def __init__(self, forward_func: ForwardFunc, spaces: Spaces, extra_args: tuple, input_dtype: torch.dtype = torch.float32) -> None:
        self.forward_func, self.spaces, self.extra_args, self.input_dtype = forward_func, spaces, extra_args, input_dtype
        self.answered = False  # until the first call returns, a failure is about the inputs (their shape), not the run

    def logits(self, pixels: torch.Tensor, extra_args: tuple | None = None) -> torch.Tensor:
        """Logits (B, K), float32, of pixel images (B, C, H, W) (``extra_args``: other rows' forward arguments)."""
        try:
            args = self.extra_args if extra_args is None else extra_args
            out = self.forward_func(self.spaces.to_model(pixels).to(self.input_dtype), *args)
        except ValueError as err:
            if "Expected more than 1 value per channel" in str(err):
                raise ValueError(
                    "forward_func: BatchNorm in training mode cannot take a batch of 1 image; call model.eval() before explaining"
                ) from err
            raise
        except (RuntimeError, AssertionError) as err:
            # torch's shape errors (and torch.export's batch guard) name no argument: on the first call, say whose call
            # failed, on what (a dtype too); anything else (a device, the model's own error, out of memory) goes on as it is
            text = str(err)
            model_dtype = next((p.dtype for p in module.parameters()), None) if (module := module_of(self.forward_func)) else None
            if (not self.answered and model_dtype is not None and model_dtype != self.input_dtype
                    and ("should be the same" in text or "expected scalar type" in text.lower())):  # a dtype, not a device
                dtype = str(model_dtype).replace("torch.", "")
                raise ValueError(f"forward_func: failed on model inputs of dtype {str(self.input_dtype).replace('torch.', '')}, "
                                 f"the model's weights are {dtype} ({last_line(err)}); give images of the model's dtype "
                                 f"(inputs.to(torch.{dtype}))") from err
            if self.answered or isinstance(err, torch.cuda.OutOfMemoryError) or not any(
                    k in text for k in ("shape", "size", "channels", "mat1", "Guard failed")):
                raise
            hint = export_hint(text) or "does the model take images of this size and number of channels?"
            raise ValueError(f"forward_func: failed on model inputs of shape {tuple(pixels.shape)} ({last_line(err)}); {hint}") from err
        self.answered = True
        return check_logits(out, pixels.shape[0]).float()

    def check_gradient_path(self, pixels: torch.Tensor, decision: Decision) -> None:
        """Refuse, before any work, a classifier whose answer does not reach back to the image.

        One backward pass of the batch ``pixels`` (B, C, H, W) (the whole batch, as the engine will
        call it: an exported model may have a fixed batch size) through what ``decision``'s answer
        depends on, weighted by fixed pseudo-random numbers so that no two classes cancel: under a
        softmax head the other logits against the target's (a softmax depends on logit differences
        only: a model whose target logit is a constant 0 still answers from the others, and one
        whose logits all move together answers the same whatever the image); under a sigmoid head
        the logits of every label whose side is kept.
        Each way the gradient can fail has its own one-line ``ValueError`` / ``RuntimeError``:
        autograd off (``torch.inference_mode``), no path (a ``.detach()``, numpy or
        ``torch.no_grad`` inside the forward), an autograd error inside the model, a non-finite
        gradient, a gradient that is zero everywhere on every image.
        """
        if torch.is_inference_mode_enabled():
            raise RuntimeError("forward_func: called inside torch.inference_mode(), where autograd is off; simplification needs "
                               "gradients with respect to the image: call it outside inference_mode")
        x = pixels.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            try:
                logits = self.logits(x)
            except RuntimeError as err:
                if "in-place" in str(err) or "inplace" in str(err):
                    raise ValueError(f"forward_func: changes its input in place ({last_line(err)}); simplification passes an image "
                                     "that needs gradients: write x = x - ... instead of x.sub_(...) inside forward") from err
                if "requires grad" not in str(err):
                    raise
                raise ValueError(f"forward_func: cannot run on an image that needs gradients ({last_line(err)}); simplification needs "
                                 "the logits to reach the image through autograd (no numpy, .detach() or torch.no_grad inside forward)"
                                 ) from err
            weights = torch.rand(logits.shape[1], generator=torch.Generator().manual_seed(0)).add_(0.5).to(logits.device)
            if decision.head == "softmax":
                score = ((logits - logits.gather(1, decision.target.view(-1, 1).to(logits.device))) * weights).sum()
            else:
                score = (logits * decision.labels.to(logits.device, logits.dtype) * weights).sum()
            if not score.requires_grad:
                raise ValueError("forward_func: the logits do not depend on the image through autograd (no gradient path: a .detach(), "
                                 "numpy or torch.no_grad inside forward?); simplification needs gradients with respect to the image")
            try:
                (grad,) = torch.autograd.grad(score, x, allow_unused=True)
            except RuntimeError as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise RuntimeError(f"forward_func: autograd failed through the model ({first}); simplification needs gradients "
                                   "with respect to the image") from err
        if grad is None:
            raise ValueError("forward_func: the logits do not depend on the image through autograd (no gradient path); "
                             "simplification needs gradients with respect to the image")
        if not bool(torch.isfinite(grad).all()):
            raise ValueError("forward_func: the gradient of the answer with respect to the image is not finite")
        if not bool((grad != 0).any()):
            raise ValueError("forward_func: the gradient of the answer ("
                             + ("the target's logit against the others" if decision.head == "softmax" else "the kept labels' logits")
                             + ") with respect to the image is zero everywhere "
                             "(a blocked path, e.g. a hard threshold or rounding inside forward, or a constant model)")


def snapshot_steps(steps: int, n_snapshots: int) -> set[int]:
    """The step indices (0-based) at which ``n_snapshots`` evenly spaced path snapshots are taken."""
    return {round((i + 1) * steps / n_snapshots) - 1 for i in range(n_snapshots)}


def guarded_step(
    optimizer: torch.optim.Optimizer, tensors: list[torch.Tensor], grads: tuple[torch.Tensor, ...],
    per_image_loss: torch.Tensor, active: torch.Tensor,
) -> torch.Tensor:
    """One optimiser step that leaves images with a non-finite loss or gradient where they were.

    ``tensors`` and ``grads`` have the batch first; ``active`` (B,) bool says which images are still
    optimised. Returns ``active`` with the images that turned non-finite now switched off (for good:
    the batch goes on without them).
    """
    finite = torch.isfinite(per_image_loss.detach())
    for g in grads:
        finite &= torch.isfinite(g).flatten(1).all(1)
    active = active & finite

    def per_image(t: torch.Tensor) -> torch.Tensor:
        return active.view(-1, *[1] * (t.dim() - 1))

    saved = [t.detach().clone() for t in tensors]
    for t, g in zip(tensors, grads):
        t.grad = torch.where(per_image(g), g, torch.zeros_like(g))
    optimizer.step()
    with torch.no_grad():
        for t, old in zip(tensors, saved):
            t.copy_(torch.where(per_image(t), t, old))
    return active


@torch.no_grad()
def evaluate(classifier: Classifier, estimator: BitEstimator, pixels: torch.Tensor, head: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Reported (8-bit, fixed dequantisation) bits (B,) and probabilities (B, K) under ``head`` of pixel images."""
    rounded = round_8bit(pixels, False)
    return estimator.bits(rounded), probabilities(classifier.logits(rounded), head)


@dataclass(frozen=True)
class RunContext:
    """What one :func:`~simplebits_audit.simplification.simplify` call hands its engine besides the options.

    Attributes
    ----------
    classifier : Classifier
        The guarded classifier (its ``spaces`` convert the result's images to model space).
    estimator : BitEstimator
        Rates the images.
    pixels : Tensor (B, C, H, W)
        The pixel images in [0, 1], float32.
    decision : Decision
        The original answer and the keep rule.
    settings : dict
        What the result records of the call (:attr:`SimplificationResult.settings`).
    show_progress : bool
        Show a progress bar.
    started : float
        ``time.perf_counter()`` when the call began (the result's ``seconds``).
    """

    classifier: Classifier
    estimator: BitEstimator
    pixels: torch.Tensor
    decision: Decision
    settings: dict[str, Any]
    show_progress: bool = False
    started: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Snapshot:
    """One image on an engine's path: 8-bit pixels (B, C, H, W), bits (B,), probabilities (B, K) under the head, the knob."""

    image: torch.Tensor
    bits: torch.Tensor
    probs: torch.Tensor
    knob: float
    mask: torch.Tensor | None = None
    label: str | None = None
    bits_map: torch.Tensor | None = None


class PathRecorder:
    """The snapshots along an engine's path, the 8-bit original first; :meth:`result` picks the simplest kept one.

    Every engine records its path the same way, so the choice and the measurements are the same
    for all of them::

        path = PathRecorder(original_8bit, bits_map_before, decision.probs_before, mask=ones, label="original")
        path.add(image, bits, probs, lam, mask=m, label="step 3")
        return path.result(run, active=active, steps=steps)

    The optional parts (``mask``, ``label``, ``bits_map``) are given for every snapshot or for none
    (``bits_map`` of the original is ``bits_map_before``); a path that mixes is a ``ValueError``.

    Parameters
    ----------
    original_8bit : Tensor (B, C, H, W)
        The 8-bit original, the first snapshot (knob 0).
    bits_map_before : Tensor (B, 1, H, W)
        Bits per pixel of the 8-bit original; the original's bits are its sum.
    probs_before : Tensor (B, K)
        The original's probabilities under the head.
    mask : Tensor (B, 1, H, W), optional
        The original's mask (all ones) for engines that blend towards a reference.
    label : str, optional
        The original's name on the path.
    """

    def __init__(
        self, original_8bit: torch.Tensor, bits_map_before: torch.Tensor, probs_before: torch.Tensor, *,
        mask: torch.Tensor | None = None, label: str | None = None,
    ) -> None:
        self.bits_map_before = bits_map_before
        self.snapshots: list[Snapshot] = []
        self.add(original_8bit, bits_map_before.flatten(1).sum(1), probs_before, 0.0, mask=mask, label=label, bits_map=bits_map_before)

    def __len__(self) -> int:
        return len(self.snapshots)

    def add(
        self, image: torch.Tensor, bits: torch.Tensor, probs: torch.Tensor, knob: float, *,
        mask: torch.Tensor | None = None, label: str | None = None, bits_map: torch.Tensor | None = None,
    ) -> None:
        """Record a snapshot: 8-bit ``image`` (B, C, H, W), its ``bits`` (B,) and ``probs`` (B, K), the knob (lambda) it was taken at.

        ``mask`` (B, 1, H, W): the mask that made ``image`` (the result's mask is the chosen
        snapshot's, so it always describes the returned image); ``label``: the snapshot's name;
        ``bits_map`` (B, 1, H, W): its bits map, when the engine has it (saves rating the chosen image again).
        """
        snapshot = Snapshot(image, bits, probs, float(knob), mask, label, bits_map)
        # The original's bits map is always known; the others' are compared with the first after it.
        like = {"mask": self.snapshots[:1], "label": self.snapshots[:1], "bits_map": self.snapshots[1:2]}
        for name, earlier in like.items():
            if earlier and (getattr(earlier[0], name) is None) != (getattr(snapshot, name) is None):
                raise ValueError(f"{name}: given for some snapshots of the path and not others")
        self.snapshots.append(snapshot)

    def _column(self, name: str, first: int = 0) -> list[Any] | None:
        """That part of every snapshot from ``first`` on, or None where the engine gave none."""
        values = [getattr(s, name) for s in self.snapshots[first:]]
        return None if any(v is None for v in values) else values

    @torch.no_grad()
    def result(self, run: RunContext, *, active: torch.Tensor, steps: int) -> SimplificationResult:
        """Choose, per image, the simplest snapshot that keeps the decision, and measure it.

        ``active`` (B,) bool is False for images whose loss or gradient turned non-finite;
        ``steps`` is the optimisation steps the engine ran. Images for which nothing was kept
        (not even the original, e.g. a target other than the prediction) get the original back.
        """
        original, decision, estimator = run.pixels, run.decision, run.estimator
        batch, device = original.shape[0], original.device
        dims = math.prod(original.shape[1:])
        target, probs_before = decision.target, decision.probs_before
        knobs = [s.knob for s in self.snapshots]
        masks, labels = self._column("mask"), self._column("label")
        # The original's bits map is always known: the engine's maps are used when it gave the others'.
        bits_maps = [self.bits_map_before] + maps if (maps := self._column("bits_map", 1)) is not None else None
        bits_before = self.snapshots[0].bits
        images = torch.stack([s.image for s in self.snapshots])  # (S, B, C, H, W)
        bits_path = torch.stack([s.bits for s in self.snapshots])  # (S, B)
        probs_path = torch.stack([s.probs for s in self.snapshots])  # (S, B, K)
        kept_path = torch.stack([decision.kept(p) for p in probs_path])
        snapshots_ok = torch.isfinite(bits_path) & torch.isfinite(probs_path).all(2)
        score = torch.where(kept_path & snapshots_ok, bits_path, torch.full_like(bits_path, math.inf))
        any_kept = torch.isfinite(score).any(0)
        first_simplest = score.argmin(0)
        if masks is not None:
            # Among snapshots of equal bits the one whose mask keeps least (then the first): on a flat image every
            # snapshot ties, and the original's all-ones mask would say that every pixel was needed.
            share = torch.stack([m.flatten(1).float().mean(1) for m in masks])  # (S, B)
            tied = score == score.gather(0, first_simplest[None])
            first_simplest = torch.where(tied, share, torch.full_like(share, math.inf)).argmin(0)
        # Nothing kept (not even the original, e.g. target != prediction): return the original.
        choice = torch.where(any_kept, first_simplest, torch.zeros_like(any_kept, dtype=torch.long))
        idx = torch.arange(batch, device=device)
        simplified = images[choice, idx]
        probs_after = probs_path[choice, idx]
        kept_now = kept_path[choice, idx]
        bits_map_after = torch.stack(bits_maps)[choice, idx] if bits_maps is not None else estimator.bits_map(simplified)
        mask = torch.stack(masks)[choice, idx] if masks is not None else None
        # a running sum, not a stack: at 1024 px the snapshots' masks are gigabytes
        mask_mean = sum(masks[2:], masks[1].clone()) / (len(masks) - 1) if masks is not None and len(masks) > 1 else None
        bits_after = bits_map_after.flatten(1).sum(1)
        status = ["non-finite" if not a else ("ok" if k else "not kept") for a, k in zip(active.tolist(), kept_now.tolist())]
        return SimplificationResult(
            original=original,
            simplified=simplified,
            simplified_inputs=run.classifier.spaces.to_model(simplified),
            bits_before=bits_before,
            bits_after=bits_after,
            bpd_before=bits_before / dims,
            bpd_after=bits_after / dims,
            bits_map_before=self.bits_map_before,
            bits_map_after=bits_map_after,
            probs_before=probs_before,
            probs_after=probs_after,
            pred_before=decision.predictions(probs_before),
            pred_after=decision.predictions(probs_after),
            target=target,
            target_prob_delta=probs_after.gather(1, target[:, None])[:, 0] - decision.prob_before,
            kl=decision.kl(probs_after),
            kept=kept_now,
            lambda_chosen=torch.tensor(knobs, device=device)[choice],
            path_lambdas=torch.tensor(knobs),
            path_bits=bits_path,
            path_target_prob=probs_path.gather(2, target.view(1, -1, 1).expand(len(knobs), -1, 1))[..., 0],
            path_kept=kept_path,
            path_images=(images * 255).round().to(torch.uint8),
            status=status,
            steps=steps,
            seconds=time.perf_counter() - run.started,
            settings=run.settings,
            mask=mask,
            mask_mean=mask_mean,
            kept_labels=decision.labels,
            path_labels=labels,
        )
