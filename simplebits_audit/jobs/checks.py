"""The one set of checks every job runs before any long work: nothing is computed or written until they pass.

The shared plumbing of the jobs lives here too: :func:`check_out_dir` / :func:`check_out_file`
(the output a job writes), :func:`job_device` (where it runs) and :func:`check_resume` (whether a
rerun may continue an earlier one). A job turns its ``estimator`` argument into an estimator with
:func:`~simplebits_audit.estimators.resolve_estimator`; "am I rank 0" is
:func:`~simplebits_audit.jobs.distributed.is_main_process`.

:func:`preflight` checks the model (callable, not a train-mode BatchNorm model, on the job's
device, finite logits of shape (B, K) on the images, a shape the output head can read: one logit
per image needs ``head="sigmoid"``), the images (not too small for the
model, not so large that the work would never end without ``--size``), class names, labels,
the target, the explainers and their options (each non-simplifying one is run once on the first
image) and the bit estimator. Every failure is a one-line ``ValueError`` (or ``TypeError``) naming
the argument.

Device: a job runs where the model's weights are. ``device=None`` takes the model's device (the
CPU for a model without parameters); an explicit ``device`` (``--device``) must agree with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .._helpers import DECLARED_CLASSES, TargetLike, class_index_of, module_of, resolve_target, run_device
from .._io import check_parent
from ..estimators import BitEstimator, resolve_estimator
from ..explainers import EXPLAINERS, SIMPLEBITS, Context, check_methods, explain, get_spec, list_explainers
from ..models import check_classifier_output, check_not_training
from ..preprocessing import Preprocessing
from ..results import job_kind
from ..simplification.common import Classifier
from ..simplification.config import ENGINE_DEFAULTS, SimplifyConfig, make_config
from ..simplification.heads import Decision, check_head, check_outputs
from ..simplification.mask import INSERTION_FRACTIONS
from ..spaces import Spaces, make_spaces
from .answers import n_decisions

#: Images with more pixels than this are refused unless the user chose a size (``--size``/``--crop``):
#: every simplification step touches every pixel, and such photos are far larger than classifiers take.
MAX_PIXELS = 1024 * 1024
#: Images per forward pass while checking the model's output on every image.
CHECK_BATCH = 16


@dataclass(frozen=True)
class Preflight:
    """What the checks established, for the job to use.

    Attributes
    ----------
    device : torch.device
        Where the job runs (the model's device).
    n_classes : int
        The model's number of outputs (logits per image).
    targets : LongTensor (N,) or None
        The class to explain per image; None: the prediction.
    methods : list of str
        The explainers to run, the primary one (the one that simplifies) first.
    spaces : Spaces
        Pixel <-> model space.
    estimator : BitEstimator
        The bit estimator, loaded on ``device``.
    head : {"softmax", "sigmoid"}
        The model's output head; ``threshold`` the sigmoid head's "on" probability.
    """

    device: torch.device
    n_classes: int
    targets: torch.Tensor | None
    methods: list[str]
    spaces: Spaces
    estimator: BitEstimator
    head: str = "softmax"
    threshold: float = 0.5

    @property
    def n_decisions(self) -> int:
        """How many answers labels and predictions take: the outputs, or 2 for a single-logit sigmoid model."""
        return n_decisions(self.n_classes, self.head)

    def context(self, seed: int) -> Context:
        """The explainers' context for a batch seeded with ``seed``."""
        return Context(spaces=self.spaces, estimator=self.estimator, seed=seed, head=self.head)


def check_out_dir(out: str | Path, job: str | None = None) -> Path:
    """``out``, the folder a job writes, as a Path; ``ValueError`` naming ``out`` if it exists and is not a folder,
    cannot be created (a file among its ancestors), or if it holds the results of another ``job``
    (``"explain"``, ``"audit"``, ``"train"``, ``"condense"``: :func:`~simplebits_audit.results.job_kind`),
    whose report the job would overwrite."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {str(out)!r} exists and is not a folder")
    check_parent(out, "out")
    if job is not None and (other := job_kind(out)) not in (None, job):
        raise ValueError(f"out: {str(out)!r} holds the results of `simplebits {other}`; give another folder")
    return out


def check_out_file(out: str | Path, suffix: str, example: str) -> Path:
    """``out``, the one file a job writes, as a Path; ``ValueError`` naming ``out`` unless it ends in ``suffix``, is no
    folder and could be written (no file among its ancestors)."""
    out = Path(out)
    if out.suffix != suffix:
        raise ValueError(f"out: expected a {suffix} file name, got {str(out)!r}")
    if out.is_dir():
        raise ValueError(f"out: {str(out)!r} is a folder; give a file name such as {example}")
    check_parent(out, "out")
    return out


def job_device(model: Callable, device: str | torch.device | None = None) -> torch.device:
    """The device a job runs on: the model's (its first parameter's or buffer's; the CPU without any).

    An explicit ``device`` must agree with the model's: ``ValueError`` naming ``model`` otherwise
    (:func:`~simplebits_audit._helpers.run_device`, the rule the training settings share).
    """
    return run_device(model, device, must_agree=True)


def check_image_size(
    shape: Sequence[int], preprocessing: Preprocessing, *, name: str = "images", step_cost: Callable[[], tuple[float, float]] | None = None,
) -> None:
    """Refuse images (C, H, W) of more than :data:`MAX_PIXELS` pixels unless a size was chosen.

    ``step_cost() -> (seconds of one simplification step, of one forward pass)`` at this size
    (:func:`measure_step`), when given, turns the message's estimate into a measured one.
    """
    h, w = int(shape[-2]), int(shape[-1])
    if h * w <= MAX_PIXELS or preprocessing.size is not None or preprocessing.crop is not None:
        return
    estimate = ""
    try:
        step, forward = step_cost() if step_cost is not None else (None, None)
    except Exception:  # noqa: BLE001 - a model that cannot run at this size: the message goes without the estimate
        step = forward = None
    if step is not None:
        steps = int(ENGINE_DEFAULTS["mask"]["steps"])
        # the mask engine: one gradient check and ``steps`` steps, then the insertion path and the result
        seconds = (steps + 1) * step + (len(INSERTION_FRACTIONS) + 2) * forward
        estimate = (f"; one simplification step (model and bit estimator, forward and backward) measured here would take "
                    f"{step:.1f} s at this size, so about {_duration(seconds)} per image at the default {steps} steps")
    raise ValueError(
        f"{name}: {h} x {w} pixels ({h * w / 1e6:.1f} megapixels) is far larger than classifiers take{estimate}; "
        f"resize to what the model expects (--size, e.g. --size 256 --crop 224), or pass --size {min(h, w)} to explain it at full size"
    )


#: the pixels of the copy :func:`measure_step` times (larger images are extrapolated by pixel count)
MEASURE_PIXELS = 512 * 512


def measure_step(model: Callable, pixels: torch.Tensor, preprocessing: Preprocessing, estimator: BitEstimator) -> tuple[float, float]:
    """Seconds of one mask-engine step and of one forward pass on the image ``pixels`` (1, C, H, W).

    Timed on a copy resized to about :data:`MEASURE_PIXELS` pixels (a 12-megapixel photo through
    a ResNet would not fit in memory) and scaled by the pixel count: convolutions and the bit
    estimator cost in proportion to the pixels. The second of two runs counts (the first warms up).
    """
    h, w = pixels.shape[-2:]
    factor = min(1.0, (MEASURE_PIXELS / (h * w)) ** 0.5)
    small = F.interpolate(pixels.float(), scale_factor=factor, mode="area") if factor < 1 else pixels.float()
    times = []
    for _ in range(2):
        x = small.detach().clone().requires_grad_(True)
        started = time.perf_counter()
        with torch.enable_grad():
            score = model(preprocessing.to_model(x)).float().sum() + estimator.bpd(x).sum()
            torch.autograd.grad(score, x)
        step = time.perf_counter() - started
        started = time.perf_counter()
        with torch.no_grad():
            model(preprocessing.to_model(small))
            estimator.bpd(small)
        times.append((step, time.perf_counter() - started))
    scale = (h * w) / (small.shape[-2] * small.shape[-1])
    return times[-1][0] * scale, times[-1][1] * scale


def _duration(seconds: float) -> str:
    """``seconds`` as a rounded human duration ("45 s", "12 min", "3.5 h")."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def declared_class_names(model: object, class_names: Sequence[str] | None) -> Sequence[str] | None:
    """``class_names`` when given, else the names ``model`` declares (``model.simplebits_classes``, set on the
    shipped testbed classifiers; a bound method's module's), else None."""
    if class_names is not None:
        return class_names
    declared = getattr(module_of(model), DECLARED_CLASSES, None)
    return list(declared) if declared is not None else None


def class_index(target_name: str, class_names: Sequence[str] | None) -> int:
    """The index of class ``target_name``; ``ValueError`` naming ``target_name`` if it is not a class."""
    if not class_names:
        raise ValueError("target_name: needs class names (labels / --labels)")
    if target_name not in class_names:
        raise ValueError(f"target_name: {target_name!r} is not a class name; e.g. {list(class_names)[:5]}")
    return class_index_of(target_name, class_names, "target_name", "give the index instead (target / --target)")


def head_options(
    methods: Sequence[str], method_options: Mapping[str, Mapping[str, Any]] | None, head: str, threshold: float,
) -> dict[str, dict[str, Any]]:
    """``method_options`` with the sigmoid head's ``threshold`` added for every method that takes one.

    The head itself travels in the explainers' :class:`~simplebits_audit.explainers.Context`; a
    softmax head adds nothing (its options stay as they were). An option the user set wins.
    """
    options = {k: dict(v) for k, v in (method_options or {}).items()}
    if head != "softmax":
        for name in methods:
            if name in EXPLAINERS and "threshold" in get_spec(name).options:
                options.setdefault(name, {}).setdefault("threshold", threshold)
    return options


def check_model_outputs(model: Callable, x: torch.Tensor, head: str, *, images: str = "images") -> int:
    """The model's number of outputs K on ``x`` (B, C, H, W), or a one-line ``ValueError``.

    Finite logits (B, K) with K >= 2, or K = 1 (one logit per image) under ``head="sigmoid"``; a
    single logit under the softmax head is refused naming ``head`` (its softmax is always 1).
    One forward pass.
    """
    n = check_classifier_output(model, x, images=images, min_outputs=1)
    check_outputs(n, head, name="model", model=model)
    return n


def preflight(
    model: Callable[[torch.Tensor], torch.Tensor],
    pixels: torch.Tensor,
    *,
    preprocessing: Preprocessing | None = None,
    device: str | torch.device | None = None,
    n_images: int | None = None,
    class_names: Sequence[str] | None = None,
    labels: Sequence[int | None] | None = None,
    labels_name: str = "labels",
    target: TargetLike = None,
    target_name: str | None = None,
    explainer: str | None = SIMPLEBITS,
    methods: Sequence[str] = (),
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    methods_name: str = "baselines",
    estimator: BitEstimator | str | None = None,
    images_name: str = "images",
    head: str = "softmax",
    threshold: float = 0.5,
    learned: bool = False,
) -> Preflight:
    """Check everything a job needs before it starts.

    Parameters
    ----------
    model : callable
        The classifier: model-space images (B, C, H, W) -> logits (B, K); K = 1 (one logit per
        image) only with ``head="sigmoid"``.
    pixels : Tensor (N, C, H, W)
        Images in pixel space [0, 1] to try the model on: all of them (explain, compare) or the
        first readable one (audit, which checks the others as it reads them).
    preprocessing : Preprocessing, optional
        Normalisation (model space) and the size the user chose.
    device : str or torch.device, optional
        See the module docstring.
    n_images : int, optional
        How many images the target must cover (default: ``len(pixels)``).
    class_names : sequence of str, optional
        Must have one name per output; for a single-logit sigmoid model one name (the label) or
        two (the decisions below and above the threshold, e.g. negative, positive).
    labels : sequence of int or None, optional
        True classes; each must be an output of the model (0 or 1, the decision, for a single-logit
        sigmoid model). ``labels_name`` names them in errors.
    target, target_name : optional
        The class to explain: index(es), or a class name. Default: the prediction. A single-logit
        sigmoid model has one answer to explain, its decision: only target 0 (its logit).
    explainer : str or None
        The primary explainer: it must simplify (its result gives the records). None for a
        comparison, where every method is a peer.
    methods, method_options : optional
        Further explainers (``methods_name`` names them in errors) and options per explainer.
    estimator : BitEstimator or str, optional
        The bit estimator (loaded here, so a bad name fails now).
    head, threshold : optional
        The model's output head (``"softmax"``, or ``"sigmoid"``: one logit per label) and the
        sigmoid head's "on" probability (:mod:`simplebits_audit.simplification.heads`).
    learned : bool
        The explainer will get a learned simplifier that ``method_options`` does not hold yet (an
        audit trains or loads it after the preflight): no gradient check unless it refines.

    Returns
    -------
    Preflight
    """
    if not callable(model):
        raise TypeError(f"model: expected a callable returning logits (B, K), got {type(model).__name__}")
    check_head(head, threshold)
    check_not_training(model)
    preprocessing = preprocessing or Preprocessing()
    device = job_device(model, device)
    est = resolve_estimator(estimator, device=device)
    check_image_size(pixels.shape[1:], preprocessing, name=images_name,
                     step_cost=lambda: measure_step(model, pixels[:1].to(device), preprocessing, est))
    first = preprocessing.to_model(pixels[:1].to(device))
    n_classes = check_model_outputs(model, first, head, images=images_name)
    for start in range(1, len(pixels), CHECK_BATCH):
        batch = preprocessing.to_model(pixels[start : start + CHECK_BATCH].to(device))
        check_model_outputs(model, batch, head, images=images_name)
    binary = n_classes == 1
    if class_names is not None and len(class_names) != n_classes and not (binary and len(class_names) == 2):
        if binary:
            raise ValueError(f"class_names: {len(class_names)} class names (from --labels or the data's class folders) but the model "
                             "has one logit: give its label's name, or two names (below and above the threshold, e.g. negative, positive)")
        raise ValueError(f"class_names: {len(class_names)} class names (from --labels or the data's class folders)"
            f" but the model has {n_classes} outputs")
    n_labels = n_decisions(n_classes, head)
    bad = sorted({int(v) for v in (labels or []) if v is not None and not 0 <= int(v) < n_labels})
    if bad:
        raise ValueError(f"{labels_name}: labels {bad[:5]} are outside the model's classes [0, {n_labels - 1}]")
    if target is not None and target_name is not None:
        raise ValueError("target and target_name: give at most one of them")
    if target_name is not None:
        if binary:
            raise ValueError("target_name: a single-logit (sigmoid) model has one answer to explain, its decision; leave the target unset")
        target = class_index(target_name, class_names)
    targets = resolve_target(target, len(pixels) if n_images is None else n_images, n_classes=n_classes)

    method_options = head_options([explainer, *methods] if explainer else methods, method_options, head, threshold)
    if explainer is not None and (explainer not in EXPLAINERS or not EXPLAINERS[explainer].simplifies):
        raise ValueError(f"explainer: {explainer!r} is not an explainer that simplifies; choose from {list_explainers(simplifies=True)}")
    extra = [m for m in dict.fromkeys(methods) if m != explainer]
    names = check_methods([explainer, *extra] if explainer is not None else extra, method_options, name=methods_name)
    fields = SimplifyConfig.fields()
    for name in names:  # a simplifier's option values (steps, engine, ...), not only their names: an audit checks them only per batch
        if get_spec(name).simplifies:
            config = make_config(None, {k: v for k, v in method_options.get(name, {}).items() if k in fields})
            learns = method_options.get(name, {}).get("simplifier") is not None or (learned and name == explainer)
            if learns and config.parameterization != "mask":  # simplify() says so too, but only once the first batch runs
                raise ValueError(f"simplifier: a learned simplifier predicts a mask; it cannot run parameterization="
                                 f"{config.parameterization!r} (--engine {config.parameterization}): drop one of them")
    spaces = make_spaces(preprocessing.normalization)
    checked = Preflight(device, n_classes, targets, names, spaces, est, head, float(threshold))
    if explainer is not None and _optimises(method_options.get(explainer, {}), learned):
        # The engine's own first check, here on one image: a blocked gradient path fails before the job writes anything.
        classifier = Classifier(model, spaces, ())
        pixels_first = pixels[:1].to(device)
        with torch.no_grad():
            logits = classifier.logits(pixels_first)
        probe = Decision.of(logits, None if targets is None else targets[:1].to(device), head=head, threshold=threshold)
        classifier.check_gradient_path(pixels_first, probe)
    # A method that cannot run on this model fails here, not after the simplification (which the
    # model check above has already exercised).
    probe_target = torch.zeros(1, dtype=torch.long, device=device) if targets is None else targets[:1].to(device)
    for name in names:
        if not get_spec(name).simplifies:
            explain(name, model, first, probe_target, context=checked.context(0), n_classes=n_classes, **method_options.get(name, {}))
    return checked


def _optimises(options: Mapping[str, Any], learned: bool = False) -> bool:
    """Whether a simplifying explainer with these options runs an optimisation (needs the model's gradient):
    all but a learned simplifier (in ``options``, or to come: ``learned``) without refinement."""
    return (options.get("simplifier") is None and not learned) or int(options.get("refine_steps") or 0) > 0


def check_resume(path: Path, settings: Mapping[str, Any], keys: Sequence[str], what: str,
                 saved_none: Mapping[str, Any] | None = None) -> None:
    """Refuse to resume into ``path``'s folder if the settings saved in ``path`` differ from ``settings`` on ``keys``.

    ``saved_none``: key -> what a saved None (or a missing key) meant, for folders written before the
    setting was recorded as a value. ``ValueError`` naming ``out`` and the settings that changed;
    nothing to check without the file.
    """
    if not path.is_file():
        return
    previous = json.loads(path.read_text(encoding="utf-8"))
    for key, meant in (saved_none or {}).items():
        if previous.get(key) is None:
            previous[key] = meant
    refuse_changed(path.parent, what, [k for k in keys if previous.get(k) != json.loads(json.dumps(settings.get(k)))])


def refuse_changed(folder: Path, what: str, changed: Sequence[str]) -> None:
    """``ValueError`` naming ``out`` and the ``changed`` settings, if any: a job never replaces finished work made otherwise."""
    if changed:
        raise ValueError(f"out: {str(folder)!r} holds {what} with other settings ({', '.join(changed)}); "
                         "rerun with the same ones to resume, or use a new --out")
