"""``SimpleBits`` and its maps, at the import path they had before the explainer registry.

They live in :mod:`simplebits_audit.explainers` (``explainers/simplebits.py``) now.
"""

from .explainers.simplebits import ATTRIBUTIONS, SimpleBits, attribution_map

__all__ = ["ATTRIBUTIONS", "SimpleBits", "attribution_map"]
