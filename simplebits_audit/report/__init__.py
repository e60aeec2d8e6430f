"""Self-contained interactive HTML reports (plotly.js embedded; they open offline).

``build_report(out_dir)`` rebuilds the report of an ``explain`` run (``results.json``) or of an
``audit`` (``results.jsonl`` + ``summary.json``) of a ``train`` run (``tradeoff.json``)
or of a ``condense`` run (``condense.json``) from what
the run wrote, without recomputing.
"""

from __future__ import annotations

from pathlib import Path

from ..results import job_kind
from .audit import write_audit_report
from .condense import write_condense_report
from .explanation import write_explanation_report
from .tradeoff import write_tradeoff_report


def build_report(out_dir: str | Path) -> Path:
    """Rebuild ``out_dir/report.html`` from the results a job wrote there."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ValueError(f"out_dir: {str(out_dir)!r} is not a folder")
    kind = job_kind(out_dir)
    if kind == "audit":
        return write_audit_report(out_dir)
    if kind == "explain":
        return write_explanation_report(out_dir)
    if kind == "train":
        return write_tradeoff_report(out_dir)
    if kind == "condense":
        return write_condense_report(out_dir)
    raise ValueError(f"out_dir: {str(out_dir)!r} holds no results of a simplebits run"
        " (results.json, results.jsonl, tradeoff.json or condense.json)")


__all__ = ["build_report", "write_audit_report", "write_condense_report", "write_explanation_report", "write_tradeoff_report"]
