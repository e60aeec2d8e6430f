"""The mask engine (the default): start at the simplest image and let the classifier pull back what it needs.

The simplified image is a blend of the original x and a simple reference r (the image's flat mean
colour, which costs almost no bits):

    x' = m * x + (1 - m) * r,    m = upsample(sigmoid(z)),  z a coarse grid of logits

Optimisation starts near the simple end (m = ``mask_init`` everywhere) and minimises
``D_task + lambda * bpd(x')`` with Adam, charging the bits term only while an image still keeps
its prediction: an image that lost it is pulled back by the task term alone, so each image settles
just on the simple side of what the classifier needs. Every step's forward pass already rates the
current 8-bit image, so the simplest image that kept the prediction at any step is remembered for
free. Finally the last mask's ranking gives a path from the reference to the original (the top
1 %, 2 %, ... of pixels by mask value restored to the original, the rest flat): crisp images that
are often cheaper still, and always a kept image to fall back on before the original.

Why this parameterisation (measured, see the README's method section): pixel logits started at
the original kept about 0.9 of the bits after 60-300 steps, and pixel logits started from a flat
or blurred image added high-frequency detail that cost more bits than it saved; a smooth mask
towards a flat colour removes whole regions at once, which is what a real codec values too.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from .._progress import JobProgress
from .common import PathRecorder, RunContext, guarded_step, round_8bit, snapshot_steps
from .config import REFERENCES, SimplifyConfig, mask_grid
from .heads import probabilities
from .result import SimplificationResult

#: Shares of pixels (ranked by the mask) restored to the original on the mask's path, simplest first.
INSERTION_FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75)

__all__ = [
    "INSERTION_FRACTIONS", "REFERENCES", "MaskParameterisation", "MaskParams", "blend", "insertion_mask", "mask_continuation",
    "mask_engine", "mask_order", "reference_image", "resolve_reference",
]


#: The ``"mosaic"`` reference's grid: each of MOSAIC_CELLS x MOSAIC_CELLS cells takes its mean colour.
MOSAIC_CELLS = 16
#: ``"auto"`` takes the mosaic once its cells are at least this many pixels a side (images of at
#: least MOSAIC_CELLS * this = 128 px), else the mean: chosen on the design testbed ``faint-regions``,
#: where the mosaic holds 0.09 of the bits at 128 px (8 px cells) but 0.28 at 64 px and 0.96 at 32 px,
#: and the rule is that it hold at most a third of the default budget (docs/design-log.md)
AUTO_MOSAIC_CELL_PIXELS = 8


def resolve_reference(kind: str, shape: tuple[int, ...]) -> str:
    """The reference ``kind`` means for images of ``shape`` (..., H, W): ``"auto"`` is ``"mosaic"`` when both
    sides are at least ``MOSAIC_CELLS * AUTO_MOSAIC_CELL_PIXELS`` pixels, else ``"mean"``; any other kind is itself."""
    if kind != "auto":
        return kind
    return "mosaic" if min(shape[-2:]) >= MOSAIC_CELLS * AUTO_MOSAIC_CELL_PIXELS else "mean"


def reference_image(pixels: torch.Tensor, kind: str = "mean") -> torch.Tensor:
    """The simple end of the mask engine, 8-bit, shaped like ``pixels`` (B, C, H, W).

    ``"mean"``: each image's mean colour (flat: the fewest bits); ``"blur"``: a strong Gaussian
    blur (a quarter of the longer side as sigma; looks natural, costs more); ``"grey"``: mid-grey;
    ``"mosaic"``: each cell of a :data:`MOSAIC_CELLS` x :data:`MOSAIC_CELLS` grid its mean colour (row
    ``y`` of an image of height H lies in cell ``y * MOSAIC_CELLS // H``, columns alike; a
    ``ValueError`` for an image no larger than the grid, which would be its own mosaic and leave
    nothing to remove). A removed cell then keeps its coarse
    brightness, so a mask that removes cells does not paint a flat patch into the image: on a
    radiograph a flat patch in a dark lung looks like the opacity a classifier looks for
    (``benchmarks/training_reference.py``). Cheap on large images (0.09 of a 128 px radiograph's
    bits), not on small ones (0.92-0.96 of a 32 px photo's). ``"auto"``: the mosaic on images of at
    least 128 px a side, the mean on smaller ones (:func:`resolve_reference`).
    """
    kind = resolve_reference(kind, pixels.shape)
    if kind == "mean":
        ref = pixels.mean((2, 3), keepdim=True).expand_as(pixels)
    elif kind == "blur":
        from .._helpers import blur

        ref = blur(pixels, max(pixels.shape[-2:]) / 4)
    elif kind == "grey":
        ref = torch.full_like(pixels, 0.5)
    elif kind == "mosaic":
        h, w = pixels.shape[-2:]
        if h <= MOSAIC_CELLS and w <= MOSAIC_CELLS:
            raise ValueError(f"reference: 'mosaic' needs images larger than its {MOSAIC_CELLS} x {MOSAIC_CELLS} grid, got {h} x {w} "
                             "(each pixel would be its own cell and nothing could be removed)")
        from .._helpers import segment_means

        # cell ids of a disjoint partition (adaptive pooling's windows overlap where a side does not divide)
        rows, cols = (torch.arange(n, device=pixels.device) * min(MOSAIC_CELLS, n) // n for n in (h, w))
        cells = (rows[:, None] * MOSAIC_CELLS + cols[None, :]).expand(len(pixels), 1, h, w)
        ref = segment_means(pixels, cells)
    else:
        raise ValueError(f"reference: expected one of {REFERENCES}, got {kind!r}")
    return round_8bit(ref.contiguous(), False)


class MaskParams:
    """x' = m * x + (1 - m) * r with m a bilinearly upsampled grid of sigmoids (:func:`~.config.mask_grid` of ``size``)."""

    def __init__(
        self, pixels: torch.Tensor, reference: torch.Tensor, size: int | None, init: float, init_logits: torch.Tensor | None = None
    ) -> None:
        b, _, h, w = pixels.shape
        self.pixels, self.reference, self.shape = pixels, reference, (h, w)
        if init_logits is not None:  # warm start (a learned simplifier's mask): its own grid
            self.z = init_logits.detach().to(pixels.dtype).clone().requires_grad_(True)
            return
        grid = mask_grid(size, (h, w))
        self.z = torch.full((b, 1, *grid), math.log(init / (1 - init)), device=pixels.device, dtype=pixels.dtype, requires_grad=True)

    def tensors(self) -> list[torch.Tensor]:
        return [self.z]

    def mask(self) -> torch.Tensor:
        """The current mask (B, 1, H, W) in (0, 1)."""
        m = torch.sigmoid(self.z)
        if m.shape[-2:] != self.shape:
            m = F.interpolate(m, size=self.shape, mode="bilinear", align_corners=False)
        return m

    def image(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        m = self.mask() if mask is None else mask
        return m * self.pixels + (1 - m) * self.reference

    # The rest is :class:`MaskParameterisation` (what :func:`mask_continuation` reads): one mask is its own stack.
    masks = mask

    def full(self) -> torch.Tensor:
        return torch.ones(self.pixels.shape[0], 1, *self.shape, device=self.pixels.device, dtype=self.pixels.dtype)

    def stack(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.detach()

    def ranked(self, mask: torch.Tensor) -> torch.Tensor:
        return mask

    def insertion(self, last: torch.Tensor, keep: torch.Tensor, fraction: float) -> torch.Tensor:
        return keep


class MaskParameterisation(Protocol):
    """What :func:`mask_continuation` optimises: masks (any structure ``M``) that describe an image.

    :class:`MaskParams` is one (``M`` a tensor); the factorised engine's axis grids are another
    (``M`` a dict of axis masks). Every mask is (B, 1, H, W) in [0, 1], 1 = the original kept.
    """

    def tensors(self) -> list[torch.Tensor]:
        """The leaf tensors Adam moves."""
        ...

    def masks(self) -> Any:
        """The current masks ``M`` (differentiable in :meth:`tensors`)."""
        ...

    def image(self, masks: Any) -> torch.Tensor:
        """The image (B, C, H, W) in [0, 1] that ``masks`` describe, not rounded (differentiable)."""
        ...

    def full(self) -> Any:
        """The masks of the original (all ones)."""
        ...

    def stack(self, masks: Any) -> torch.Tensor:
        """``masks`` detached as one tensor (B, k, H, W): what a path snapshot carries."""
        ...

    def ranked(self, masks: Any) -> torch.Tensor:
        """The mask (B, 1, H, W) whose ranking (:func:`mask_order`) gives the insertion path."""
        ...

    def insertion(self, last: Any, keep: torch.Tensor, fraction: float) -> Any:
        """The masks of one insertion step: the last masks ``last`` with the ranked one replaced by ``keep``
        (:func:`insertion_mask` of ``fraction``, binary (B, 1, H, W))."""
        ...


def mask_order(mask: torch.Tensor) -> torch.Tensor:
    """Pixel indices (B, H*W) of ``mask`` (B, 1, H, W) from the highest value down."""
    h, w = mask.shape[-2:]
    # A tiny position-dependent offset breaks ties deterministically (flat masks at the start).
    tie = torch.linspace(0, 1e-6, h * w, device=mask.device, dtype=mask.dtype)
    return (mask.flatten(1) + tie).argsort(1, descending=True)


def insertion_mask(order: torch.Tensor, fraction: float, shape: tuple[int, int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The binary mask (B, 1, H, W) of the top ``fraction`` of pixels by ``order`` (:func:`mask_order`): 1 = the original's pixel."""
    b, (h, w) = order.shape[0], shape
    n = round(fraction * h * w)
    keep = torch.zeros(b, h * w, dtype=dtype, device=order.device)
    if n > 0:
        keep.scatter_(1, order[:, :n], 1.0)
    return keep.view(b, 1, h, w)


def blend(pixels: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mask * pixels + (1 - mask) * reference``, rounded to 8 bits: the image a mask (B, 1, H, W) describes."""
    return round_8bit(mask * pixels + (1 - mask) * reference, False)


def mask_engine(run: RunContext, config: SimplifyConfig, *, init_logits: torch.Tensor | None = None) -> SimplificationResult:
    """Optimise the mask (see the module docstring) and return the simplest kept snapshot.

    ``config`` is resolved (:meth:`SimplifyConfig.resolved`); the mask engine reads ``objective``,
    ``steps``, ``lr``, ``lambda_start``, ``lambda_end``, ``n_snapshots``, ``mask_size``,
    ``mask_init``, ``reference``, ``temperature`` and ``seed``. ``init_logits`` (B, 1, h, w)
    warm-starts the mask's logit grid (a learned simplifier's prediction) instead of ``mask_init``
    everywhere. Every snapshot on the path carries its own mask, and the result's mask is the
    returned image's: ``simplified == blend(x, r, mask)``.
    """
    original_8bit = round_8bit(run.pixels, False)
    ref = reference_image(original_8bit, config.reference)
    params = MaskParams(original_8bit, ref, config.mask_size, config.mask_init, init_logits)
    return mask_continuation(run, config, params)


def mask_continuation(
    run: RunContext, config: SimplifyConfig, params: MaskParameterisation, *,
    description: str = "simplifying", ranked: str = "the mask",
) -> SimplificationResult:
    """The mask engines' one optimisation loop: Adam on ``params`` along the bits-weight continuation.

    Minimises ``D_task + lambda * bpd`` of ``round8(params.image(params.masks()))`` with lambda
    growing geometrically from ``lambda_start`` to ``lambda_end`` over ``steps``, the bits charged
    only while the prediction holds (see the module docstring). The path records the original
    (all masks ones), ``n_snapshots`` steps, the simplest kept image seen at any step, and the
    insertion path of the last ranked mask (:data:`INSERTION_FRACTIONS`, labelled ``"top 5 % of
    {ranked}"``); every snapshot carries ``params.stack`` of its masks. ``config`` is resolved;
    ``description`` names the progress bar. Used by :func:`mask_engine` and the factorised engine.
    """
    classifier, estimator, pixels, decision = run.classifier, run.estimator, run.pixels, run.decision
    steps, lambda_end = config.steps, config.lambda_end
    batch, device = pixels.shape[0], pixels.device
    dims = math.prod(pixels.shape[1:])
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    original_8bit = round_8bit(pixels, False)
    optimizer = torch.optim.Adam(params.tensors(), lr=config.lr)
    lambdas = torch.logspace(math.log10(config.lambda_start), math.log10(lambda_end), steps).tolist()
    with torch.no_grad():
        bits_map_before = estimator.bits_map(original_8bit)
    snapshots = snapshot_steps(steps, config.n_snapshots)
    full = params.stack(params.full())
    path = PathRecorder(original_8bit, bits_map_before, decision.probs_before, mask=full, label="original")
    bits_before = path.snapshots[0].bits
    # The simplest kept image seen at any step (the forward pass rates it anyway).
    best_bits = torch.full((batch,), math.inf, device=device)
    best_image, best_probs, best_masks = original_8bit.clone(), decision.probs_before.clone(), full.clone()
    active = torch.ones(batch, dtype=torch.bool, device=device)

    with JobProgress(disable=not run.show_progress) as progress:
        task = progress.add_task(description, total=steps)
        for step, lam in enumerate(lambdas):
            with torch.enable_grad():
                masks = params.masks()
                x_new = round_8bit(params.image(masks), True)
                logits = classifier.logits(x_new)
                loss = decision.task_loss(logits, config.objective, config.temperature, generator)
                bpd = estimator.bpd(x_new)
                with torch.no_grad():
                    probs_now = probabilities(logits, decision.head)
                    kept_now = decision.kept(probs_now)
                    # The gate is the same rule whatever ``keep`` asks, so runs with a looser ``keep``
                    # see the same path and can only choose a simpler image from it.
                    holds = decision.kept(probs_now, "top1")
                # Bits are charged only while the prediction holds: the path stays just on the kept side.
                per_image = loss + lam * holds.to(bpd.dtype) * bpd
                grads = torch.autograd.grad(per_image.sum() * dims, params.tensors())
            with torch.no_grad():
                # The forward pass already rated this 8-bit image: remember it if it is the simplest kept so far.
                # (Rounding again gives the straight-through image's own values: it sits on the 8-bit grid.)
                bits_now, image_now, stacked = bpd.detach() * dims, round_8bit(x_new.detach(), False), params.stack(masks)
                better = kept_now & torch.isfinite(bits_now) & (bits_now < best_bits) & active
                best_bits = torch.where(better, bits_now, best_bits)
                best_image[better] = image_now[better]
                best_probs[better] = probs_now[better]
                best_masks[better] = stacked[better]
                if step in snapshots:
                    path.add(image_now, bits_now, probs_now, lam, mask=stacked, label=f"step {step + 1}")
            active = guarded_step(optimizer, params.tensors(), grads, per_image, active)
            progress.advance(task)

    with torch.no_grad():
        found = torch.isfinite(best_bits)
        best_bits = torch.where(found, best_bits, bits_before)
        path.add(best_image, best_bits, best_probs, lambda_end, mask=best_masks, label="simplest kept step")
        last = params.masks()
        order = mask_order(params.ranked(last).detach())
        for fraction in reversed(INSERTION_FRACTIONS):
            masks = params.insertion(last, insertion_mask(order, fraction, pixels.shape[-2:], pixels.dtype), fraction)
            image = round_8bit(params.image(masks), False)
            path.add(
                image, estimator.bits(image), probabilities(classifier.logits(image), decision.head), lambda_end,
                mask=params.stack(masks), label="reference" if fraction == 0 else f"top {fraction:.0%} of {ranked}",
            )

    return path.result(run, active=active, steps=steps)
