"""Help texts that state the library's defaults, read from the library.

A help text that states a default writes ``{library:KEY}``; :data:`LIBRARY_DEFAULTS` says where
each KEY lives, and :class:`LibraryDefaultsCommand` fills the texts in when the help is shown
(importing the library takes seconds, so ``--help`` pays for it only when it shows the texts).
An option the user leaves out is not passed on (or passed as None): the library's own default
applies (:func:`given`).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any

from typer.core import TyperCommand

#: where the defaults live ("package.module:name")
SIMPLIFY = "simplebits_audit.simplification.engine:simplify"
ENGINE_DEFAULTS = "simplebits_audit.simplification.config:ENGINE_DEFAULTS"
HEADS = "simplebits_audit.simplification.heads:HEADS"
EXPLAIN_OPTIONS = "simplebits_audit.jobs.options:ExplainOptions"
SCORING_OPTIONS = "simplebits_audit.jobs.options:ScoringOptions"
AUDIT_JOB = "simplebits_audit.jobs.audit:run_audit"
SIMPLIFIER_JOB = "simplebits_audit.jobs.simplifier:train_simplifier_job"
TRAINING_DEFAULTS = "simplebits_audit.training.simplifier:TRAINING_DEFAULTS"
ORDER_SHARE = "simplebits_audit.training.simplifier:ORDER_SHARE"
ESTIMATOR_CONFIG = "simplebits_audit.estimators.training:TrainingConfig"
TRAIN_JOB = "simplebits_audit.jobs.train:train_job"
TRAIN_OPTIONS = "simplebits_audit.jobs.options:TrainOptions"
JOINT_SIMPLIFIER = "simplebits_audit.training.joint:JOINT_SIMPLIFIER"
JOINT_DEFAULTS = "simplebits_audit.training.joint:JOINT_DEFAULTS"
DEFAULT_BUDGETS = "simplebits_audit.training.joint:DEFAULT_BUDGETS"
VAL_IMAGES = "simplebits_audit.jobs.train:VAL_IMAGES"
CONDENSE_JOB = "simplebits_audit.jobs.condense:run_condense"
CONDENSE_OPTIONS = "simplebits_audit.jobs.options:CondenseOptions"
CONDENSE_SETTINGS = "simplebits_audit.training.condensation:condense_settings"
CONDENSE_DEFAULTS = "simplebits_audit.training.condensation:CONDENSE_DEFAULTS"
EVALUATE_DEFAULTS = "simplebits_audit.training.networks:EVALUATE_DEFAULTS"
DEMO_JOB = "simplebits_audit.jobs.demo:run_demo"


def signature_default(target: str, parameter: str) -> Any:
    """The default of ``parameter`` of the function ``target`` (``"package.module:function"``)."""
    module, name = target.split(":")
    return inspect.signature(getattr(importlib.import_module(module), name)).parameters[parameter].default


def constant(target: str, *keys: str) -> Any:
    """The value ``target`` (``"package.module:NAME"``), indexed by ``keys`` (dict keys or dataclass fields)."""
    module, name = target.split(":")
    value = getattr(importlib.import_module(module), name)
    for key in keys:
        if dataclasses.is_dataclass(value):
            value = next(f for f in dataclasses.fields(value) if f.name == key).default
        else:
            value = value[key]
    return value


def _engine_steps() -> int:
    """Optimisation steps of the engine ``simplify`` uses by default."""
    return constant(ENGINE_DEFAULTS, signature_default(SIMPLIFY, "parameterization"), "steps")


#: ``{library:KEY}`` in a help text -> how to read that default off the library.
LIBRARY_DEFAULTS: dict[str, Callable[[], Any]] = {
    "simplify.steps": _engine_steps,
    "simplify.objective": lambda: signature_default(SIMPLIFY, "objective"),
    "simplify.engine": lambda: signature_default(SIMPLIFY, "parameterization"),
    "simplify.engines": lambda: "|".join(constant(ENGINE_DEFAULTS)),
    "simplify.head": lambda: signature_default(SIMPLIFY, "head"),
    "simplify.threshold": lambda: signature_default(SIMPLIFY, "threshold"),
    "heads": lambda: "|".join(constant(HEADS)),
    "explain.attribution": lambda: constant(EXPLAIN_OPTIONS, "attribution"),
    "explain.batch_size": lambda: constant(EXPLAIN_OPTIONS, "batch_size"),
    "audit.select": lambda: signature_default(AUDIT_JOB, "select"),
    "audit.explain": lambda: signature_default(AUDIT_JOB, "explain"),
    "audit.predict_batch_size": lambda: signature_default(AUDIT_JOB, "predict_batch_size"),
    "compare.randomisation": lambda: constant(SCORING_OPTIONS, "randomisation"),
    "simplifier.lam": lambda: constant(TRAINING_DEFAULTS, "lam"),
    "simplifier.margin": lambda: constant(TRAINING_DEFAULTS, "margin"),
    "simplifier.deletion": lambda: constant(TRAINING_DEFAULTS, "deletion"),
    "simplifier.order_steps": lambda: f"{constant(ORDER_SHARE):g} x --steps",
    "simplifier.steps": lambda: constant(TRAINING_DEFAULTS, "steps"),
    "simplifier.batch_size": lambda: constant(TRAINING_DEFAULTS, "batch_size"),
    "simplifier.held_out": lambda: signature_default(SIMPLIFIER_JOB, "held_out"),
    "estimator.arch": lambda: constant(ESTIMATOR_CONFIG, "arch"),
    "estimator.steps": lambda: constant(ESTIMATOR_CONFIG, "steps"),
    "estimator.batch_size": lambda: constant(ESTIMATOR_CONFIG, "batch_size"),
    "estimator.crop_size": lambda: constant(ESTIMATOR_CONFIG, "crop_size"),
    "estimator.lr": lambda: constant(ESTIMATOR_CONFIG, "lr"),
    "estimator.checkpoint_every": lambda: constant(ESTIMATOR_CONFIG, "checkpoint_every"),
    "train.arch": lambda: constant(TRAIN_OPTIONS, "arch"),
    "train.budgets": lambda: constant(DEFAULT_BUDGETS),
    "train.epochs": lambda: constant(JOINT_DEFAULTS, "epochs"),
    "train.batch_size": lambda: constant(JOINT_DEFAULTS, "batch_size"),
    "train.lr": lambda: constant(JOINT_DEFAULTS, "lr"),
    "train.margin": lambda: constant(JOINT_DEFAULTS, "margin"),
    "train.cooldown": lambda: constant(JOINT_DEFAULTS, "cooldown"),
    "train.reference": lambda: constant(JOINT_SIMPLIFIER, "reference"),
    "train.val_share": lambda: signature_default(TRAIN_JOB, "val_share"),
    "train.val_n": lambda: constant(VAL_IMAGES),
    "condense.ipc": lambda: signature_default(CONDENSE_SETTINGS, "images_per_class"),
    "condense.lam": lambda: constant(CONDENSE_DEFAULTS, "lam"),
    "condense.outer_steps": lambda: constant(CONDENSE_DEFAULTS, "outer_steps"),
    "condense.near": lambda: constant(CONDENSE_DEFAULTS, "near"),
    "condense.arch": lambda: signature_default(CONDENSE_SETTINGS, "arch"),
    "condense.held_out": lambda: signature_default(CONDENSE_JOB, "held_out"),
    "condense.baselines": lambda: constant(CONDENSE_OPTIONS, "baselines"),
    "condense.n_models": lambda: constant(EVALUATE_DEFAULTS, "n_models"),
    "condense.epochs": lambda: constant(EVALUATE_DEFAULTS, "epochs"),
    "demo.out": lambda: signature_default(DEMO_JOB, "out"),
}

_LIBRARY_FIELD = re.compile(r"\{library:([\w.]+)\}")


def show_default(value: Any) -> str:
    """A default as help texts write it: numbers as %g, lists comma-separated, booleans on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(show_default(v) for v in value)
    return str(value)


def resolve_help(text: str | None) -> str | None:
    """``text`` with every ``{library:KEY}`` replaced by the library's value (:data:`LIBRARY_DEFAULTS`)."""
    if text is None:
        return None
    return _LIBRARY_FIELD.sub(lambda m: show_default(LIBRARY_DEFAULTS[m.group(1)]()), text)


class LibraryDefaultsCommand(TyperCommand):
    """A command whose option help texts state the library's defaults, read from the library when the help is shown."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.params:
            for field in ("help", "metavar"):
                if isinstance(getattr(param, field, None), str):
                    setattr(param, field, resolve_help(getattr(param, field)))
        super().format_help(ctx, formatter)


def given(**values: Any) -> dict[str, Any]:
    """The options the user gave (not None): what is left out takes the library's default."""
    return {k: v for k, v in values.items() if v is not None}
