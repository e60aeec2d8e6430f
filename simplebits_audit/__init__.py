"""simplebits-audit: explain and audit PyTorch image classifiers by simplification.

SimpleBits (Schirrmeister, Liu, Hooker, Ball 2022) looks for the simplest image -- fewest bits
under a pretrained generative model, the *bit estimator* -- that the frozen classifier still
answers the same way for. What survives is what the model needs.
"""

from .audit import explain_images, run_audit
from .compare import Comparison, compare
from .estimators import BitEstimator, list_estimators, load_estimator
from .explainer import SimpleBits, attribution_map
from .simplification import SimplificationResult, simplify

__version__ = "0.1.0"

__all__ = [
    "BitEstimator",
    "Comparison",
    "SimpleBits",
    "SimplificationResult",
    "__version__",
    "attribution_map",
    "compare",
    "explain_images",
    "list_estimators",
    "load_estimator",
    "run_audit",
    "simplify",
]
