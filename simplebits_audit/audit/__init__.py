"""The explain and audit jobs at the import path they had before :mod:`simplebits_audit.jobs`."""

from ..jobs import AuditItem, AuditSource, ExplainOutput, Selection, explain_images, open_source, run_audit

__all__ = ["AuditItem", "AuditSource", "ExplainOutput", "Selection", "explain_images", "open_source", "run_audit"]
