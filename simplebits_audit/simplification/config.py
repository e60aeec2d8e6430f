"""The options of :func:`~simplebits_audit.simplification.simplify`, declared once: :class:`SimplifyConfig`.

Every option of the engines that is not data or model plumbing (the classifier, the images, the
estimator, the spaces, a learned simplifier) is a field here, with its default. The config checks
itself when it is made, so a bad option fails in one line naming the field before any work, and
:meth:`SimplifyConfig.resolved` fills the per-engine defaults (:data:`ENGINE_DEFAULTS`) of the
options left as ``None``. ``simplify(model, x, steps=10)`` and
``simplify(model, x, config=SimplifyConfig(steps=10))`` are the same call.
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .heads import Keep, check_head, check_keep

#: Per-engine defaults of the options left as ``None`` (measured choices: README, method section).
ENGINE_DEFAULTS: dict[str, dict[str, float]] = {
    "mask": {"steps": 30, "lr": 0.3, "lambda_start": 1.0, "lambda_end": 1.0},
    "pixels": {"steps": 60, "lr": 0.01, "lambda_start": 0.2, "lambda_end": 20.0},
    "latent": {"steps": 60, "lr": 0.01, "lambda_start": 0.2, "lambda_end": 20.0},
    # the factorised engine's own options too (docs/design-log.md, "Factorised engine")
    "factorised": {"steps": 30, "lr": 0.3, "lambda_start": 1.0, "lambda_end": 1.0, "blur_sigma": 2.0, "axis_mask_size": 8},
}
#: The options :meth:`SimplifyConfig.resolved` fills from :data:`ENGINE_DEFAULTS` beyond the four every engine has.
_ENGINE_ONLY = ("blur_sigma", "axis_mask_size")

#: ``mask_size=None``: one mask cell per this many pixels of the image's longer side ...
MASK_CELL_PIXELS = 16
#: ... and never fewer cells than this (the grid every 32-256 px testbed was tuned with)
MIN_MASK_GRID = 16
#: ``internal_batch_size=None``: at most this many pixels (images x height x width) are simplified
#: together; about 3 GB of extra memory with a small CNN at one megapixel per image (docs/benchmarks.md, "Scale")
MAX_BATCH_PIXELS = 4 * 1024 * 1024

OBJECTIVES = ("kl", "ce")
LATENT_INITS = ("prior", "input")
#: the mask engine's simple end (:func:`~simplebits_audit.simplification.mask.reference_image`)
REFERENCES = ("mean", "blur", "grey", "mosaic", "auto")


@dataclass(frozen=True)
class SimplifyConfig:
    """How :func:`~simplebits_audit.simplification.simplify` simplifies: every engine option, checked when made.

    Build one, reuse it, vary it with :func:`dataclasses.replace` (which checks again)::

        config = SimplifyConfig(steps=60, objective="ce", keep=0.9)
        a = simplify(model, x, config=config)
        b = simplify(model, y, config=config, seed=1)   # keywords override fields of config

    Errors: a one-line ``ValueError`` (``TypeError`` for a non-integer count) naming the field.

    Attributes
    ----------
    objective : {"kl", "ce"}
        Keep the whole predicted distribution (KL) or the target class (cross-entropy). With a
        sigmoid head: the summed per-label Bernoulli KL, or the binary cross-entropy of each kept
        label towards its original side.
    head : {"softmax", "sigmoid"}
        The classifier's output head (:mod:`~simplebits_audit.simplification.heads`): one softmax
        over K classes, or one sigmoid per label (binary with a (B, 1) output, or multi-label).
        A (B, 1) output under ``"softmax"`` is a ``ValueError`` (its softmax is always 1).
    threshold : float in (0, 1)
        Sigmoid head: a label is on when its probability is at least this; keeping the decision
        means every kept label stays on the same side (the ``target`` label, or with no target
        every label the model switched on; if none was on, all stay off).
    parameterization : {"mask", "pixels", "latent", "factorised"}
        What the optimiser moves (the engine). ``"mask"``: a smooth mask between the original and a
        simple reference image, started near the simple end (:mod:`~simplebits_audit.simplification.mask`);
        ``"pixels"``: pixel logits started at the original; ``"latent"``: Glow latents;
        ``"factorised"``: one mask per kind of information (colour, detail, region;
        :mod:`~simplebits_audit.simplification.factorised`).
    latent_init : {"prior", "input"}
        For ``"latent"``: start at the prior's mode (z = 0, as the paper) or at the input's latents.
    keep : "top1" or float in (0, 1]
        Which snapshots count as keeping the prediction: same top class as ``target`` (for a target
        the original did not rank first: at least 90% of its original probability), or target
        probability at least this fraction of the original's. Sigmoid head: ``"top1"`` means every
        kept label on the same side of ``threshold``; a fraction also asks that share of each kept
        label's probability of its side.
    steps : int >= 1, optional
        Optimisation steps (Adam). ``None``: the engine's default (:data:`ENGINE_DEFAULTS`: 30 for
        the mask, 60 otherwise).
    lr : float > 0, optional
        Adam learning rate. ``None``: 0.3 for the mask, 0.01 otherwise.
    adam_eps : float > 0
        Adam's epsilon, in bits per unit step of the parameters (the loss is optimised in bits):
        larger values leave pixels with tiny gradients alone.
    lambda_start, lambda_end : float, optional
        The knob: lambda grows geometrically from start to end over the run (0 < start <= end).
        ``None``: 1 throughout for the mask (whose bits term is charged only while the prediction
        holds), 0.2 to 20 otherwise; a given start above the default end is used as the end too.
    n_snapshots : int >= 1
        Snapshots along the path (the trade-off curve); the returned image is one of them.
    mask_size : int >= 1, optional
        ``"mask"`` (and the factorised engine's region): the mask is a ``mask_size`` x ``mask_size``
        grid of logits (at most the image's size), upsampled bilinearly. ``None``: from the image
        size (:func:`mask_grid`): one cell per :data:`MASK_CELL_PIXELS` pixels of the longer side,
        at least :data:`MIN_MASK_GRID` cells (16 up to 256 px, 32 at 512 px, 64 at 1024 px), so a
        20 px marker on a 1024 px radiograph can be kept without its neighbourhood.
    mask_init : float in (0, 1)
        ``"mask"``: the mask's value everywhere at the start; small = near the reference.
    reference : {"mean", "blur", "grey", "mosaic", "auto"}
        ``"mask"``: the simple image the mask blends towards (each image's flat mean colour by default;
        ``"auto"``: the mosaic on images of at least 128 px a side, else the mean).
    blur_sigma : float > 0, optional
        ``"factorised"``: the detail axis blends towards a Gaussian blur of this sigma, in pixels.
        ``None``: the engine's default (:data:`ENGINE_DEFAULTS`); unused by the other engines.
    axis_mask_size : int >= 1, optional
        ``"factorised"``: the colour and detail masks' grid size (the region's is ``mask_size``).
        ``None``: the engine's default; unused by the other engines.
    temperature : (float, float), 0 < low <= high
        The classifier's logits are divided by a temperature drawn uniformly from this range at
        every step (the paper's softening), so saturated outputs still give gradients.
    straight_through_rounding : bool
        ``"pixels"`` / ``"latent"``: round x' to 8 bits in the forward pass, identity gradient backward.
    dequantization_noise : bool
        ``"pixels"`` / ``"latent"``: random dequantisation while optimising (continuous estimators such as Glow).
    refine_steps : int >= 0
        With a learned ``simplifier``: refine its mask per image with this many mask-engine steps
        (warm-started; ``lr`` and ``lambda_*`` apply). 0: the learned output only, choosing the
        simplest kept image among the learned mask shifted towards the original.
    internal_batch_size : int >= 1, optional
        Simplify at most this many images together (Captum's name for the same bound); results are
        concatenated. ``None``: as many as fit in :data:`MAX_BATCH_PIXELS` pixels (at least one),
        so memory stays bounded at large sizes while small images run in one batch. A batch split
        into parts gives the same kind of result; the random draws (the temperature) differ.
    seed : int
        Same seed, same result on the same machine: the engine's own random numbers and the
        model's (Dropout in a train-mode model) are drawn from generators seeded with it; the
        global RNG is forked, so the caller's random stream is left as it was.
    """

    objective: str = "kl"
    head: str = "softmax"
    threshold: float = 0.5
    parameterization: str = "mask"
    latent_init: str = "prior"
    keep: Keep = "top1"
    steps: int | None = None
    lr: float | None = None
    adam_eps: float = 1e-8
    lambda_start: float | None = None
    lambda_end: float | None = None
    n_snapshots: int = 10
    mask_size: int | None = None
    mask_init: float = 0.4
    reference: str = "mean"
    blur_sigma: float | None = None
    axis_mask_size: int | None = None
    temperature: tuple[float, float] = (1.0, 1.5)
    straight_through_rounding: bool = True
    dequantization_noise: bool = True
    refine_steps: int = 0
    internal_batch_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "n_snapshots", "mask_size", "axis_mask_size", "internal_batch_size", "seed"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise TypeError(f"{name}: expected an integer, got {value!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective: expected 'kl' or 'ce', got {self.objective!r}")
        if self.parameterization not in ENGINE_DEFAULTS:
            raise ValueError(f"parameterization: expected one of {tuple(ENGINE_DEFAULTS)}, got {self.parameterization!r}")
        if not 0 < self.mask_init < 1:
            raise ValueError(f"mask_init: expected a value in (0, 1), got {self.mask_init}")
        if self.mask_size is not None and self.mask_size < 1:
            raise ValueError(f"mask_size: expected a positive grid size, got {self.mask_size}")
        if self.internal_batch_size is not None and self.internal_batch_size < 1:
            raise ValueError(f"internal_batch_size: expected at least 1 image, got {self.internal_batch_size}")
        if self.blur_sigma is not None and not (isinstance(self.blur_sigma, numbers.Real) and self.blur_sigma > 0):
            raise ValueError(f"blur_sigma: expected a blur scale > 0 pixels, got {self.blur_sigma!r}")
        if self.axis_mask_size is not None and self.axis_mask_size < 1:
            raise ValueError(f"axis_mask_size: expected a positive grid size, got {self.axis_mask_size}")
        if self.reference not in REFERENCES:
            raise ValueError(f"reference: expected one of {REFERENCES}, got {self.reference!r}")
        if self.latent_init not in LATENT_INITS:
            raise ValueError(f"latent_init: expected 'prior' or 'input', got {self.latent_init!r}")
        check_keep(self.keep)
        check_head(self.head, self.threshold)
        if not (isinstance(self.refine_steps, int) and self.refine_steps >= 0):
            raise ValueError(f"refine_steps: expected an integer >= 0, got {self.refine_steps!r}")
        if not (isinstance(self.temperature, (tuple, list)) and len(self.temperature) == 2):
            raise ValueError(f"temperature: expected a (low, high) pair, got {self.temperature!r}")
        # A list (JSON, a command line) is stored as a tuple: the config stays hashable and comparable.
        object.__setattr__(self, "temperature", tuple(self.temperature))
        if not (0 < self.temperature[0] <= self.temperature[1]):
            raise ValueError(f"temperature: need 0 < low <= high, got {self.temperature}")
        if not self.adam_eps > 0:
            raise ValueError(f"adam_eps: expected a value > 0, got {self.adam_eps}")
        # The per-engine defaults take part in the checks: a given end below the default start is an error.
        steps, lr, lambda_start, lambda_end = self._engine_values()
        if steps < 1:
            raise ValueError(f"steps: expected at least 1, got {steps}")
        if self.n_snapshots < 1:
            raise ValueError(f"n_snapshots: expected at least 1, got {self.n_snapshots}")
        if not lr > 0:
            raise ValueError(f"lr: expected a learning rate > 0, got {lr}")
        if not (0 < lambda_start <= lambda_end):
            raise ValueError(f"lambda_start, lambda_end: need 0 < lambda_start <= lambda_end, got {lambda_start}, {lambda_end}")

    def _engine_values(self) -> tuple[int, float, float, float]:
        """``steps, lr, lambda_start, lambda_end``, each the given value or the engine's default."""
        defaults = ENGINE_DEFAULTS[self.parameterization]
        steps = int(defaults["steps"]) if self.steps is None else self.steps
        lr = defaults["lr"] if self.lr is None else self.lr
        lambda_start = defaults["lambda_start"] if self.lambda_start is None else self.lambda_start
        lambda_end = max(lambda_start, defaults["lambda_end"]) if self.lambda_end is None else self.lambda_end
        return steps, lr, lambda_start, lambda_end

    def resolved(self) -> SimplifyConfig:
        """This config with the per-engine defaults (:data:`ENGINE_DEFAULTS`) in place of every ``None``.

        What the engines run with; resolving a resolved config returns it unchanged.
        """
        steps, lr, lambda_start, lambda_end = self._engine_values()
        defaults = ENGINE_DEFAULTS[self.parameterization]
        own = {name: defaults[name] for name in _ENGINE_ONLY if name in defaults and getattr(self, name) is None}
        return dataclasses.replace(self, steps=steps, lr=lr, lambda_start=lambda_start, lambda_end=lambda_end, **own)

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))


def mask_grid(mask_size: int | None, shape: tuple[int, int]) -> tuple[int, int]:
    """The mask's logit grid (rows, columns) for images of ``shape`` (H, W): ``mask_size`` cells a
    side (``None``: one per :data:`MASK_CELL_PIXELS` pixels of the longer side, at least
    :data:`MIN_MASK_GRID`), never more than the image's pixels."""
    h, w = shape
    size = max(MIN_MASK_GRID, -(-max(h, w) // MASK_CELL_PIXELS)) if mask_size is None else mask_size
    return min(size, h), min(size, w)


def images_per_chunk(internal_batch_size: int | None, shape: tuple[int, int]) -> int:
    """How many images of ``shape`` (H, W) one engine run takes: ``internal_batch_size``, or
    (``None``) as many as fit in :data:`MAX_BATCH_PIXELS` pixels, at least one."""
    if internal_batch_size is not None:
        return internal_batch_size
    return max(1, MAX_BATCH_PIXELS // (shape[0] * shape[1]))


def make_config(config: SimplifyConfig | None, options: dict[str, Any], *, caller: str = "simplify") -> SimplifyConfig:
    """``config`` (default: every field's default) with ``options`` (field name -> value) replacing its fields, checked again.

    A ``config`` that is not a :class:`SimplifyConfig` is a ``TypeError`` naming ``config``; an
    unknown option a one-line ``TypeError`` naming it and ``caller``.
    """
    if config is None:
        config = SimplifyConfig()
    elif not isinstance(config, SimplifyConfig):
        raise TypeError(f"config: expected a SimplifyConfig, got {type(config).__name__}")
    unknown = sorted(set(options) - set(SimplifyConfig.fields()))
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        raise TypeError(f"{caller}: unknown option{'s' if len(unknown) > 1 else ''} {names}; options are SimplifyConfig fields: "
                        f"{', '.join(SimplifyConfig.fields())}")
    return dataclasses.replace(config, **options) if options else config


F = TypeVar("F", bound=Callable[..., Any])


def config_options(fn: F) -> F:
    """Show :class:`SimplifyConfig`'s fields in ``fn``'s signature as keyword-only parameters.

    ``fn`` takes them as ``**options``; with this, ``inspect.signature(fn)`` (``help()``, the
    explainer registry's option check, the CLI's help texts) lists each field with its default,
    read from the one declaration here instead of a copied list.
    """
    signature = inspect.signature(fn)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    taken = {p.name for p in params}
    fields = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
        for f in dataclasses.fields(SimplifyConfig) if f.name not in taken
    ]
    fn.__signature__ = signature.replace(parameters=params + fields)  # type: ignore[attr-defined]
    return fn
