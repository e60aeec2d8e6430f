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
* ``learned`` -- :class:`Simplifier`, a network predicting that mask in one pass, and its
  inference engine (training it: :func:`simplebits_audit.training.train_simplifier`).

Training settings (the learned simplifier's training, training with simplification,
condensation) live one layer up, in :mod:`simplebits_audit.training`; nothing here imports them.
"""

from .config import ENGINE_DEFAULTS, SimplifyConfig
from .engine import simplify
from .heads import HEADS, NON_TOP_TARGET_FRACTION, Decision, Keep
from .learned import Simplifier
from .result import SimplificationResult

__all__ = [
    "ENGINE_DEFAULTS",
    "HEADS",
    "NON_TOP_TARGET_FRACTION",
    "Decision",
    "Keep",
    "SimplificationResult",
    "Simplifier",
    "SimplifyConfig",
    "simplify",
]
