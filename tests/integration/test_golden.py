"""Reports stay byte-identical where no bug was fixed.

``tests/golden/`` holds an explain run and an audit run written before the pipeline refactor
(issue #10) with baselines no bug fix touched. Two checks:

* rebuilding each report from the golden results gives the same bytes as the report the golden
  run wrote (the rendering, the results layout and the readers did not change);
* running the same jobs again gives the same records, settings and arrays (the pipeline computes
  what it computed before), so the reports agree too, up to the measured seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from simplebits_audit.report import build_report

from ..helpers import assert_same_arrays, assert_same_json

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
VOLATILE = {"seconds", "seconds_per_image", "timing", "peak_rss_mb_per_process"}


def _load_regenerate():
    import importlib.util

    spec = importlib.util.spec_from_file_location("golden_regenerate", GOLDEN / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


regenerate = _load_regenerate()


@pytest.mark.parametrize("job", ["explain", "audit"])
def test_report_rebuilt_from_golden_results_is_byte_identical(job, tmp_path):
    import plotly

    expected = json.loads((GOLDEN / "reports.json").read_text())
    assert plotly.__version__ == expected["plotly"], "plotly draws figures differently: rerun tests/golden/regenerate.py"
    out = tmp_path / job
    shutil.copytree(GOLDEN / job, out)
    build_report(out)
    assert regenerate.report_digest(out / "report.html") == expected["sha256"][job]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_explain_computes_what_it_computed_before(tmp_path, one_thread):
    out = tmp_path / "explain"
    regenerate.run_explain(out)
    new, old = (json.loads((d / "results.json").read_text()) for d in (out, GOLDEN / "explain"))
    assert_same_json(new, old, ignore=VOLATILE)
    assert_same_arrays(out, GOLDEN / "explain", new["images"])


def test_audit_computes_what_it_computed_before(tmp_path, one_thread):
    out = tmp_path / "audit"
    regenerate.run_audit_job(out)
    for name in ("summary.json", "audit.json"):
        new, old = (json.loads((d / name).read_text()) for d in (out, GOLDEN / "audit"))
        assert_same_json(new, old, ignore=VOLATILE, where=name)
    new, old = ([json.loads(line) for line in (d / "results.jsonl").read_text().splitlines()] for d in (out, GOLDEN / "audit"))
    assert_same_json(new, old, ignore=VOLATILE)
    assert_same_arrays(out, GOLDEN / "audit", new)
