"""Jobs over image files and datasets: explain a few predictions, audit a whole dataset.

Both write per-image records (``records``) and arrays that the reports (:mod:`simplebits_audit.report`)
are built from, so a report can always be rebuilt without recomputing.
"""

from .batch import Selection, run_audit
from .data import AuditItem, AuditSource, open_source
from .explain import ExplainOutput, explain_images

__all__ = ["AuditItem", "AuditSource", "ExplainOutput", "Selection", "explain_images", "open_source", "run_audit"]
