"""Regenerate the golden explain and audit runs that ``tests/integration/test_golden.py`` compares against.

Run it only when a change is *meant* to alter what explain or audit write (a named bug fix, a new
report section), and say so in the commit:

    OMP_NUM_THREADS=1 python tests/golden/regenerate.py

It writes ``tests/golden/explain/`` and ``tests/golden/audit/`` (results, PNGs and arrays, no
report: the reports are large because plotly.js is embedded) and ``tests/golden/reports.json``,
the SHA-256 of each report with the plotly.js bundle cut out, plus the plotly version that drew it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

#: the runs, shared with the test: only baselines whose maps no bug fix touched (magnitude maps)
EXPLAIN = {"baselines": ("ig", "saliency"), "simplify_options": {"steps": 8}, "seed": 0}
AUDIT = {"testbed_n": 24, "select": "all", "limit": 3, "batch_size": 2, "baselines": ("saliency",), "simplify_options": {"steps": 5}}
CLASS_NAMES = [f"digit {d}" for d in range(10)]


def explain_inputs():
    from simplebits_audit import testbeds

    data = testbeds.load("digits-on-photos", "test", n=2, seed=5)
    return testbeds.load_classifier("digits-on-photos"), data.images, data.labels.tolist()


def run_explain(out: Path):
    from simplebits_audit.jobs import explain_images

    model, images, labels = explain_inputs()
    return explain_images(model, images, out, class_names=CLASS_NAMES, labels=labels, names=["first.png", "second.png"], **EXPLAIN)


def run_audit_job(out: Path):
    from simplebits_audit import testbeds
    from simplebits_audit.jobs import run_audit

    return run_audit(testbeds.load_classifier("digits-on-photos"), "digits-on-photos", out, model_name="testbed:digits-on-photos", **AUDIT)


def report_digest(report: Path) -> str:
    """SHA-256 of a report without the embedded plotly.js bundle (the same for every report)."""
    from simplebits_audit.report._html import plotly_js

    text = report.read_text(encoding="utf-8")
    bundle = plotly_js()
    assert text.count(bundle) == 1, "the report should embed plotly.js exactly once"
    return hashlib.sha256(text.replace(bundle, "").encode("utf-8")).hexdigest()


def main() -> None:
    import plotly

    torch.set_num_threads(1)
    digests = {}
    for name, run in (("explain", run_explain), ("audit", run_audit_job)):
        out = HERE / name
        shutil.rmtree(out, ignore_errors=True)
        run(out)
        digests[name] = report_digest(out / "report.html")
        (out / "report.html").unlink()
    (HERE / "reports.json").write_text(json.dumps({"plotly": plotly.__version__, "sha256": digests}, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(digests, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
