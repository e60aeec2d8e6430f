"""``compare`` at the import path it had before :mod:`simplebits_audit.jobs` (``jobs/compare.py``)."""

from .explainers import SIMPLEBITS
from .jobs.compare import DEFAULT_METHODS, LOCALISATION, METRICS, RANKED_METRICS, Comparison, all_methods, compare, compare_files

__all__ = ["DEFAULT_METHODS", "LOCALISATION", "METRICS", "RANKED_METRICS", "SIMPLEBITS", "Comparison", "all_methods", "compare", "compare_files"]
