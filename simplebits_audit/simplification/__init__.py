"""The simplification engines: the simplest image the frozen classifier still answers the same way for.

:func:`simplify` is the one entry point; every engine returns a :class:`SimplificationResult`.

* ``result`` -- :class:`SimplificationResult`, what every engine returns;
* ``heads`` -- output heads (softmax, sigmoid): probabilities, the task term and the keep rule
  (:class:`~simplebits_audit.simplification.heads.Decision`);
* ``common`` -- what engines share: 8-bit rounding, the guarded classifier (and its gradient-path check) and
  :func:`~simplebits_audit.simplification.common.path_result` (the simplest kept snapshot);
* ``engine`` -- :func:`simplify` and the gradient engine: pixel logits from the original, or Glow
  latents, optimised along one continuation run of the knob;
* ``mask`` -- the mask engine (the default): a coarse mask towards a flat reference, per image;
* ``learned`` -- :class:`Simplifier`, a network predicting that mask in one pass, and its
  inference engine (training it: :func:`simplebits_audit.training.train_simplifier`).

Training settings (the learned simplifier's training, training with simplification,
condensation) live one layer up, in :mod:`simplebits_audit.training`; nothing here imports them.
"""

from .engine import simplify
from .heads import HEADS, NON_TOP_TARGET_FRACTION, Decision, Keep
from .learned import Simplifier
from .result import SimplificationResult

__all__ = ["HEADS", "NON_TOP_TARGET_FRACTION", "Decision", "Keep", "SimplificationResult", "Simplifier", "simplify"]
