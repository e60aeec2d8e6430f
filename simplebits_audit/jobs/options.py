"""The option groups the jobs share, each declared once: the jobs take them, the command line builds them.

* :class:`ModelOptions` -- what the user's model takes and what its outputs mean (preprocessing,
  class names, output head, the name reports show);
* :class:`ExplainOptions` -- how a batch is explained (the explainer and its map, the engine's
  options, a learned simplifier, the bit estimator, baselines, batch size);
* :class:`RunOptions` -- where and how a job runs (device, seed, progress);
* :class:`ScoringOptions` -- how :func:`~simplebits_audit.jobs.comparison.compare` scores the maps;
* :class:`TrainOptions` -- what :func:`~simplebits_audit.jobs.train.train_job` trains (classifier,
  budgets or lambdas, the joint-training settings);
* :class:`CondenseOptions` -- what :func:`~simplebits_audit.jobs.condense.run_condense` condenses
  and how it evaluates the sets.

The training groups leave a setting the training layer owns at None: the training layer's
``*_DEFAULTS`` (or :func:`~simplebits_audit.training.condensation.condense_settings`) fill it in, so
no default is written twice.

A job takes one object per group (``model_options=``, ``explain_options=``, ``run=``, ...) and,
for convenience and for calls written before the groups existed, any field of its groups as a
keyword: ``explain_images(model, files, out, head="sigmoid", seed=3)`` equals
``explain_images(model, files, out, model_options=ModelOptions(head="sigmoid"), run=RunOptions(seed=3))``.
A keyword overrides the field of the object it belongs to (:func:`take_options`); a name that
is no field of the job's groups is refused with one line naming it.

Adding an option to every job that takes a group: one field here (and, for the command line,
one parameter of the group in :mod:`simplebits_audit.cli.options`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from ..estimators import BitEstimator
from ..explainers import ATTRIBUTIONS, SIMPLEBITS
from ..metrics import FRACTIONS
from ..preprocessing import Preprocessing
from ..simplification import Simplifier
from ..simplification.config import REFERENCES
from ..simplification.heads import check_head
from ..training.condensation import condense_settings
from ..training.joint import DEFAULT_BUDGETS, JOINT_DEFAULTS, check_strengths, check_training_settings
from ..training.networks import EVALUATE_DEFAULTS
from .information import check_engine_attribution

T = TypeVar("T")


@dataclass(frozen=True)
class ModelOptions:
    """What the user's model takes and what its outputs mean.

    Attributes
    ----------
    preprocessing : Preprocessing
        Resize / crop / normalisation the model expects (default: none; None reads as the default).
    class_names : sequence of str, optional
        One name per output (length K); a single-logit model: its label's name, or the names of
        its two decisions (e.g. ``["negative", "positive"]``).
    head : {"softmax", "sigmoid"}
        The model's output head: a softmax over classes, or one sigmoid per label (binary with one
        logit, or multi-label); see :mod:`~simplebits_audit.jobs.answers`.
    threshold : float in (0, 1)
        The sigmoid head's "on" probability.
    model_name : str
        How reports and settings name the model (default: its class name).

    Raises
    ------
    ValueError
        An unknown head or a threshold outside (0, 1), naming ``head`` or ``threshold``.
    """

    #: the keyword a job takes this group as
    keyword: ClassVar[str] = "model_options"

    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    class_names: Sequence[str] | None = None
    head: str = "softmax"
    threshold: float = 0.5
    model_name: str = ""

    def __post_init__(self) -> None:
        if self.preprocessing is None:
            object.__setattr__(self, "preprocessing", Preprocessing())
        check_head(self.head, self.threshold)


@dataclass(frozen=True)
class ExplainOptions:
    """How the explain and audit jobs explain a batch.

    Attributes
    ----------
    explainer : str
        The primary explainer (one that simplifies; default ``"simplebits"``): its simplification
        gives the records.
    attribution : str
        The SimpleBits map (see :data:`simplebits_audit.explainers.ATTRIBUTIONS`).
    simplify_options : dict, optional
        Options of the primary explainer (``steps``, ``objective``, ...; see :func:`simplebits_audit.simplify`).
    simplifier : Simplifier or path, optional
        Explain with this learned simplifier (one forward pass per image) instead of the per-image
        engine (the audit also takes ``"auto"``: train one on the audited data first).
    estimator : BitEstimator, str or path, optional
        The bit estimator (default: the package default).
    baselines : sequence of str
        Explainers of :mod:`simplebits_audit.explainers` to compute beside the primary one.
    baseline_options : dict name -> dict, optional
        Options of the baselines, e.g. ``{"gradcam": {"layer": "layer4"}}`` (checked before any work).
    batch_size : int >= 1
        Images simplified together.

    Raises
    ------
    ValueError
        An unknown ``attribution`` or a ``batch_size`` below 1, naming it; ``attribution`` ``"colour"``
        or ``"detail"`` without ``simplify_options["parameterization"] == "factorised"`` or with a learned
        ``simplifier`` (:func:`~simplebits_audit.jobs.information.check_engine_attribution`).
    """

    #: the keyword a job takes this group as
    keyword: ClassVar[str] = "explain_options"

    explainer: str = SIMPLEBITS
    attribution: str = "auto"
    simplify_options: Mapping[str, Any] | None = None
    simplifier: Simplifier | str | Path | None = None
    estimator: BitEstimator | str | Path | None = None
    baselines: Sequence[str] = ()
    baseline_options: Mapping[str, Mapping[str, Any]] | None = None
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.attribution not in ATTRIBUTIONS:
            raise ValueError(f"attribution: expected one of {ATTRIBUTIONS}, got {self.attribution!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected a positive number, got {self.batch_size}")
        check_engine_attribution(self.attribution, self.simplify_options, self.simplifier)

    def method_options(self) -> dict[str, dict[str, Any]]:
        """Options per explainer: the baselines' (copied) and the primary one's (its map and engine options)."""
        return {**{k: dict(v) for k, v in (self.baseline_options or {}).items()},
                self.explainer: {"attribution": self.attribution, **(self.simplify_options or {})}}


@dataclass(frozen=True)
class RunOptions:
    """Where and how a job runs.

    Attributes
    ----------
    device : str or torch.device, optional
        Where the job runs: the model's device by default; if given, it must be the model's
        (:func:`~simplebits_audit.jobs.checks.job_device`).
    seed : int
        Seeds every random choice; the same seed gives the same result on the same machine.
    show_progress : bool
        Progress bars.
    """

    #: the keyword a job takes this group as
    keyword: ClassVar[str] = "run"

    device: str | torch.device | None = None
    seed: int = 0
    show_progress: bool = False


@dataclass(frozen=True)
class ScoringOptions:
    """How :func:`~simplebits_audit.jobs.comparison.compare` scores every method's map.

    Attributes
    ----------
    deletion_steps : int >= 1
        Points of the deletion / insertion curves (minus one).
    fractions : sequence of float
        Fractions of pixels kept on the bits-efficiency curves of maps.
    reference : {"blur", "mean"}
        What replaces removed pixels in deletion/insertion and the bits-efficiency curves.
    bits_keep : float in (0, 1]
        ``bits_needed``: the cheapest bits fraction keeping this share of the target probability.
    infidelity_samples : int
        Captum infidelity's ``n_perturb_samples`` (0 skips infidelity).
    sensitivity_images, sensitivity_samples : int
        Captum ``sensitivity_max`` re-runs each method ``sensitivity_samples`` times on the first
        ``sensitivity_images`` images (0 skips it; the rest of the batch gets NaN).
    codecs : bool
        PNG / WebP / JPEG-XL lossless sizes of the original vs. simplified images (explainers that simplify).
    randomisation : bool
        The model-parameter randomisation check (see :mod:`simplebits_audit.jobs.comparison`).

    Raises
    ------
    ValueError
        A bad ``reference``, ``bits_keep`` or ``deletion_steps``, naming it.
    """

    #: the keyword a job takes this group as
    keyword: ClassVar[str] = "scoring"

    deletion_steps: int = 16
    fractions: Sequence[float] = FRACTIONS
    reference: str = "blur"
    bits_keep: float = 0.9
    infidelity_samples: int = 10
    sensitivity_images: int = 8
    sensitivity_samples: int = 3
    codecs: bool = True
    randomisation: bool = True

    def __post_init__(self) -> None:
        if self.reference not in ("blur", "mean"):
            raise ValueError(f"reference: expected 'blur' or 'mean', got {self.reference!r}")
        if not 0 < self.bits_keep <= 1:
            raise ValueError(f"bits_keep: expected a fraction in (0, 1], got {self.bits_keep}")
        if self.deletion_steps < 1:
            raise ValueError(f"deletion_steps: need at least 1, got {self.deletion_steps}")


def parse_strengths(text: str | Sequence[float] | None, kind: str) -> tuple[float, ...] | None:
    """``"1,0.5,0.3"`` (or a sequence, or None) -> a tuple of floats for ``kind`` ("lam" or "budget"); ``ValueError`` naming ``kind``.

    Only parsed: :class:`TrainOptions` checks the values with :func:`~simplebits_audit.training.joint.check_strengths`.
    """
    if text is None:
        return None
    try:
        items = ([v.strip() for v in text.split(",")] if text.strip() else []) if isinstance(text, str) else list(text)
        if "" in items:
            raise ValueError  # "1," or "1,,0.3": a value left out is a typo, not a shorter list
        values = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise ValueError(f"{kind}: expected comma-separated numbers such as 1,0.5,0.3, got {text!r}") from None
    return values


@dataclass(frozen=True)
class TrainOptions:
    """What :func:`~simplebits_audit.jobs.train.train_job` trains: one classifier and simplifier per budget (or lambda).

    Attributes
    ----------
    arch : str
        ``"smallcnn"``, ``"resnet18"`` or ``"package.module:factory"``
        (:func:`~simplebits_audit.models.build_architecture`), trained from scratch.
    budgets : str or sequence of float, optional
        Shares of the bits to keep, each in (0, 1], e.g. ``"1,0.5,0.3"``; 1 is the reference point.
        Default (neither this nor ``lams``): :data:`~simplebits_audit.training.DEFAULT_BUDGETS`.
    lams : str or sequence of float, optional
        Fixed bits weights instead of budgets, e.g. ``"0,0.5,1,2"``; include 0 for the reference.
    epochs, batch_size, lr, margin, warmup, cooldown : optional
        As :func:`~simplebits_audit.training.train_with_simplification`; None:
        :data:`~simplebits_audit.training.JOINT_DEFAULTS`.
    reference : str, optional
        The simple image a removed mask cell takes (:class:`~simplebits_audit.Simplifier`'s
        ``reference``: ``"mean"``, ``"blur"``, ``"grey"``, ``"mosaic"`` or ``"auto"``); None: training's default,
        :data:`~simplebits_audit.training.joint.JOINT_SIMPLIFIER`'s ``"auto"`` (the mosaic on images of at least
        128 px a side, else the mean).

    Raises
    ------
    ValueError
        Bad budgets or lambdas (naming ``budget`` / ``lam``), both given, bad training settings, or
        an unknown ``reference``.
    """

    #: the keyword a job takes this group as
    keyword: ClassVar[str] = "training"

    arch: str = "smallcnn"
    budgets: str | Sequence[float] | None = None
    lams: str | Sequence[float] | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    margin: float | None = None
    warmup: float | None = None
    cooldown: int | None = None
    reference: str | None = None

    def __post_init__(self) -> None:
        if self.reference is not None and self.reference not in REFERENCES:
            raise ValueError(f"reference: expected one of {REFERENCES}, got {self.reference!r}")
        lams, budgets = parse_strengths(self.lams, "lam"), parse_strengths(self.budgets, "budget")
        check_strengths(lams, budgets)
        if lams is None and budgets is None:
            budgets = DEFAULT_BUDGETS
        object.__setattr__(self, "lams", lams)
        object.__setattr__(self, "budgets", budgets)
        self.settings()

    def settings(self) -> dict[str, Any]:
        """The joint-training settings with the training layer's defaults filled in
        (:data:`~simplebits_audit.training.JOINT_DEFAULTS`)."""
        return check_training_settings(**{name: getattr(self, name) for name in JOINT_DEFAULTS})


@dataclass(frozen=True)
class CondenseOptions:
    """What :func:`~simplebits_audit.jobs.condense.run_condense` condenses, and how it evaluates the sets.

    Attributes
    ----------
    images_per_class, lam, arch, outer_steps, near : optional
        As :func:`~simplebits_audit.training.condense`; None: its defaults
        (:func:`~simplebits_audit.training.condensation.condense_settings`,
        :data:`~simplebits_audit.training.CONDENSE_DEFAULTS`).
    baselines : bool
        Also condense without the bits term (``lam=0``) and evaluate a random real subset of the
        same size beside the simplified set (the comparison the report is about). Doubles the time.
    n_models, epochs : int >= 1, optional
        Classifiers trained per row of the accuracy table, and their epochs; None:
        :data:`~simplebits_audit.training.EVALUATE_DEFAULTS`.

    Raises
    ------
    ValueError
        A bad setting, naming the field.
    """

    #: the keyword a job takes this group as
    keyword: ClassVar[str] = "condensation"

    images_per_class: int | None = None
    lam: float | None = None
    arch: str | None = None
    outer_steps: int | None = None
    near: int | None = None
    baselines: bool = True
    n_models: int | None = None
    epochs: int | None = None

    def __post_init__(self) -> None:
        self.settings(seed=0)
        self.evaluation()

    def settings(self, seed: int) -> dict[str, Any]:
        """The condensation's settings with the training layer's defaults filled in,
        checked (:func:`~simplebits_audit.training.condensation.condense_settings`)."""
        given = {"images_per_class": self.images_per_class, "lam": self.lam, "arch": self.arch, "outer_steps": self.outer_steps,
                 "near": self.near}
        return condense_settings(**{k: v for k, v in given.items() if v is not None}, seed=seed)

    def evaluation(self) -> dict[str, int]:
        """``n_models`` and ``epochs`` of the accuracy table, defaults filled in, checked."""
        chosen = {k: EVALUATE_DEFAULTS[k] if v is None else v for k, v in (("n_models", self.n_models), ("epochs", self.epochs))}
        for name, value in chosen.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        return chosen


def default(group: type, name: str) -> Any:
    """The default of field ``name`` of the option group ``group`` (what the command line's help states)."""
    f = next(f for f in dataclasses.fields(group) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def take_options(function: str, options: Mapping[str, Any], *groups: tuple[type[T], T | None]) -> list[T]:
    """One object per ``(group, given)`` pair: ``given`` (or the group's defaults) with the fields named in ``options`` replaced.

    ``function`` names the job in the error for a keyword that is no field of any group
    (``TypeError``, one line); a ``given`` of another type is a ``TypeError`` naming its group.
    """
    rest = dict(options)
    taken = []
    for group, given in groups:
        if given is not None and not isinstance(given, group):
            raise TypeError(f"{group.keyword}: expected a {group.__name__}, got {type(given).__name__}")
        names = {f.name for f in dataclasses.fields(group)}
        mine = {k: rest.pop(k) for k in list(rest) if k in names}
        taken.append(dataclasses.replace(given, **mine) if given is not None else group(**mine))
    if rest:
        known = sorted(f.name for group, _ in groups for f in dataclasses.fields(group))
        raise TypeError(f"{sorted(rest)[0]}: not an option of {function}; its options: {', '.join(known)}")
    return taken


__all__ = [
    "CondenseOptions", "ExplainOptions",
    "ModelOptions", "RunOptions", "ScoringOptions", "TrainOptions", "default", "parse_strengths",
    "take_options",
]
