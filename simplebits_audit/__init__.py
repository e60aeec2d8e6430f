"""simplebits-audit: explain and audit PyTorch image classifiers by simplification.

SimpleBits (Schirrmeister, Liu, Hooker, Ball 2022) looks for the simplest image -- fewest bits
under a pretrained generative model, the *bit estimator* -- that the frozen classifier still
answers the same way for. What survives is what the model needs.

The names below are imported on first use, so that ``simplebits --help`` and other light work do
not pay for importing torch, torchvision and captum.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "BitEstimator": ".estimators",
    "list_estimators": ".estimators",
    "load_estimator": ".estimators",
    "SimpleBits": ".explainers",
    "attribution_map": ".explainers",
    "SimplificationResult": ".simplification",
    "simplify": ".simplification",
    "SimplifyConfig": ".simplification",
    "Simplifier": ".simplification",
    "train_simplifier": ".training",
    "TrainingResult": ".training",
    "train_with_simplification": ".training",
    "tradeoff": ".training",
    "CondensedSet": ".training",
    "condense": ".training",
    "evaluate_condensed": ".training",
    "Comparison": ".jobs",
    "compare": ".jobs",
    "explain_images": ".jobs",
    "run_audit": ".jobs",
    "train_job": ".jobs",
    "run_condense": ".jobs",
}

if TYPE_CHECKING:
    from .estimators import BitEstimator, list_estimators, load_estimator
    from .explainers import SimpleBits, attribution_map
    from .jobs import Comparison, compare, explain_images, run_audit, run_condense, train_job
    from .simplification import SimplificationResult, Simplifier, SimplifyConfig, simplify
    from .training import CondensedSet, TrainingResult, condense, evaluate_condensed, tradeoff, train_simplifier, train_with_simplification


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["__version__", *sorted(_EXPORTS)]
