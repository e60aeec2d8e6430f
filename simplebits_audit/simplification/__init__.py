"""The simplification engines: the simplest image the frozen classifier still answers the same way for.

:func:`simplify` is the one entry point; every engine returns a :class:`SimplificationResult`.
Its options are one :class:`SimplifyConfig` (build it once, reuse it; keywords override its fields).

* ``result`` -- :class:`SimplificationResult`, what every engine returns;
* ``heads`` -- output heads (softmax, sigmoid): probabilities, the task term and the keep rule
  (:class:`~simplebits_audit.simplification.heads.Decision`);
* ``config`` -- :class:`SimplifyConfig`, every engine option declared once, checked when made, and
  :data:`ENGINE_DEFAULTS`, the per-engine defaults it resolves;
* ``common`` -- what engines share: 8-bit rounding, the guarded classifier (and its gradient-path check),
  the :class:`~simplebits_audit.simplification.common.RunContext` a call hands its engine and the
  :class:`~simplebits_audit.simplification.common.PathRecorder` (the path; the simplest kept snapshot);
* ``engine`` -- :func:`simplify` and the gradient engine: pixel logits from the original, or Glow
  latents, optimised along one continuation run of the knob;
* ``mask`` -- the mask engine (the default): a coarse mask towards a flat reference, per image;
* ``learned`` -- :class:`Simplifier`, a network predicting that mask in one pass, and
  :func:`train_simplifier`, which fits it to a frozen classifier over a dataset;
* ``joint`` -- :func:`train_with_simplification`, a classifier trained on simplified inputs while
  the simplifier learns with it, and :func:`tradeoff`, one such run per lambda;
* ``condense`` -- :func:`condense`, a training set condensed to a few synthetic images per class by
  gradient matching with a bits penalty, and :func:`evaluate_condensed`.
"""

from .condense import CondensedSet, condense, evaluate_condensed
from .config import ENGINE_DEFAULTS, SimplifyConfig
from .engine import simplify
from .heads import HEADS, NON_TOP_TARGET_FRACTION, Decision, Keep
from .joint import Tradeoff, TrainingResult, tradeoff, train_with_simplification
from .learned import Simplifier, evaluate_simplifier, train_simplifier
from .result import SimplificationResult

__all__ = ["ENGINE_DEFAULTS", "SimplifyConfig", "HEADS", "NON_TOP_TARGET_FRACTION", "CondensedSet", "Decision", "Keep", "SimplificationResult", "Simplifier", "condense", "evaluate_condensed", "evaluate_simplifier", "simplify",
           "tradeoff", "Tradeoff", "TrainingResult", "train_simplifier", "train_with_simplification"]
