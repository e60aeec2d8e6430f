"""The example scripts and the demo run as users run them."""

from __future__ import annotations

import json
import runpy
import subprocess
from pathlib import Path

from ..helpers import CLI

ROOT = Path(__file__).resolve().parents[2]


def test_captum_workflow_example(tmp_path):
    module = runpy.run_path(str(ROOT / "examples" / "captum_workflow.py"))
    scores = module["main"](str(tmp_path / "fig.png"), n_images=2)
    assert (tmp_path / "fig.png").stat().st_size > 0
    assert set(scores) == {"SimpleBits", "IntegratedGradients"}
    for s in scores.values():
        assert all(v == v for v in s.values())  # not NaN


def test_explain_one_image_example(tmp_path):
    module = runpy.run_path(str(ROOT / "examples" / "explain_one_image.py"))
    report = module["main"](str(tmp_path / "example"), open_report=False)
    html = report.read_text()
    assert "digit.png" in html and html.count('class="plotly-graph-div') == 3


def test_audit_shortcut_example(tmp_path):
    module = runpy.run_path(str(ROOT / "examples" / "audit_shortcut.py"))
    summaries = module["main"](str(tmp_path / "sc"), n=40, limit=4)  # default steps: 10 leave the mask unsettled
    for s in summaries.values():
        assert s["explained"] == 4 and 0 < s["shortcut"]["mask_area_share"] < 0.05
    # The shortcut learner's attribution sits on the marker far more than the other classifier's.
    assert (
        summaries["shortcut"]["shortcut"]["mask_attribution_share"]
        > 5 * summaries["digits-on-photos"]["shortcut"]["mask_attribution_share"]
    )


def test_demo_through_the_command_line(tmp_path):
    res = subprocess.run([*CLI, "demo", "--out", str(tmp_path / "demo")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert len(results["images"]) == 8
    assert any(r["label"] != r["pred_before"] for r in results["images"])  # misclassified ones are shown
    assert set(results["settings"]["seconds_per_image"]) == {"simplebits", "ig", "occlusion", "gradcam"}
    assert (tmp_path / "demo" / "report.html").stat().st_size > 0
    assert "report.html" in res.stdout


def test_train_with_simplification_example():
    module = runpy.run_path(str(ROOT / "examples" / "train_with_simplification.py"))
    scores = module["main"](n_train=64, n_val=16, epochs=1)
    assert set(scores) == {1.0, 0.3}
    for s in scores.values():
        assert 0 <= s["val_accuracy_simplified"] <= 1 and 0 < s["val_bits_kept"] <= 1.01 and 0 <= s["bits_inside_digit"] <= 1


def test_radiograph_sigmoid_example():
    module = runpy.run_path(str(ROOT / "examples" / "radiograph_sigmoid.py"))
    rows = module["main"](n=3, steps=3)
    assert len(rows) == 3
    for r in rows:
        # the decision is kept: the same side of 0.5 before and after
        assert (r["p_before"] >= 0.5) == (r["p_after"] >= 0.5) and r["status"] == "ok"
        assert 0 < r["bits_kept"] <= 1


def test_which_information_example(tmp_path):
    module = runpy.run_path(str(ROOT / "examples" / "which_information.py"))
    names = module["default_testbeds"]()[:1] or ["stripes"]
    profiles = module["main"](names, n=2, steps=4, figure=str(tmp_path / "fig.png"))
    assert set(profiles) == set(names) and (tmp_path / "fig.png").stat().st_size > 0
    for profile in profiles.values():
        assert set(profile) == {"colour", "detail", "region"}
        assert all(0 <= v <= 1 or v != v for v in profile.values())


def test_verifiable_bits_example(capsys):
    module = runpy.run_path(str(ROOT / "examples" / "verifiable_bits.py"))
    rows = module["main"](sizes=(32,))
    assert set(rows[32]) == {"analytic", "context", "png", "webp", "jxl"}
    assert all(0 < v < 9 for v in rows[32].values())
    assert "decoded bit for bit: True" in capsys.readouterr().out
