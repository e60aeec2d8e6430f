"""Training settings, a layer above the engines: each supplies a step function to one resumable-run loop.

* ``loop`` -- :class:`~simplebits_audit.training.loop.ResumableRun`: the settings key, the atomic
  checkpoint, deferred Ctrl-C, progress, rank and device, and per-step seeds, once for every setting;
* ``data`` -- labelled images as tensors, their fingerprint, batches by step number;
* ``simplifier`` -- :func:`train_simplifier`, which fits the learned
  :class:`~simplebits_audit.simplification.Simplifier` to a frozen classifier over a dataset, and
  :func:`evaluate_simplifier`;
* ``joint`` -- :func:`train_with_simplification`, a classifier trained on simplified inputs while
  the simplifier learns with it, and :func:`tradeoff`, one such run per bits budget (or lambda);
* ``condensation`` -- :func:`condense`, a training set condensed to a few synthetic images per class by
  gradient matching with a bits penalty, and :func:`evaluate_condensed`;
* ``networks`` -- the small networks condensation matches and evaluates (:class:`ConvNet`).

A new training setting is one module here that builds its networks and hands a step function to
:class:`~simplebits_audit.training.loop.ResumableRun`. Nothing below this layer imports it.
"""

from .condensation import CONDENSE_DEFAULTS, CondensedSet, condense, evaluate_condensed
from .joint import (
    DEFAULT_BUDGET,
    DEFAULT_BUDGETS,
    JOINT_DEFAULTS,
    JOINT_SIMPLIFIER,
    Tradeoff,
    TrainingResult,
    joint_simplifier,
    tradeoff,
    train_with_simplification,
)
from .networks import EVALUATE_DEFAULTS, ConvNet
from .simplifier import TRAINING_DEFAULTS, evaluate_simplifier, train_simplifier

__all__ = [
    "CONDENSE_DEFAULTS", "DEFAULT_BUDGET", "DEFAULT_BUDGETS", "EVALUATE_DEFAULTS", "JOINT_DEFAULTS", "JOINT_SIMPLIFIER",
    "TRAINING_DEFAULTS", "CondensedSet", "ConvNet", "Tradeoff", "TrainingResult", "condense", "evaluate_condensed",
    "evaluate_simplifier", "joint_simplifier", "tradeoff",
    "train_simplifier", "train_with_simplification",
]
