"""``explain_images`` and its report: records, artefacts, escaping, rebuilding, refusals."""

from __future__ import annotations

import json

import pytest
import torch

from simplebits_audit.audit import explain_images
from simplebits_audit.preprocessing import Preprocessing, load_labels
from simplebits_audit.report import build_report

EVIL = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def explained(tmp_path_factory, bright_dark_model, photos16):
    out = tmp_path_factory.mktemp("explain")
    names = [f"{EVIL}.png", "b.png", "c.png"]
    result = explain_images(
        bright_dark_model, photos16[:3], out, class_names=[f"dark {EVIL}", "bright"], labels=[0, 1, 1], names=names, simplify_options={"steps": 8},
    )
    return out, result


def test_writes_results_images_and_report(explained):
    out, result = explained
    data = json.loads((out / "results.json").read_text())
    assert len(data["images"]) == 3 and data["settings"]["seconds_per_image"]["simplebits"] > 0
    for r in data["images"]:
        assert r["bpd_after"] <= r["bpd_before"] + 1e-6  # never more complex than the original
        assert len(r["path_bpd"]) == len(r["path_lambdas"]) == len(r["path_target_prob"])
        assert abs(sum(p for _, _, p in r["top_before"]) - 1) < 1e-4  # two classes: top-2 is everything
        for key in ("original", "simplified"):
            assert (out / r["files"][key]).stat().st_size > 0
        assert set(r["files"]["maps"]) == {"simplebits", "bits_removed"}
    html = result.report_path.read_text()
    assert html.count('class="plotly-graph-div') == 3 * 3  # panels, trade-off, top-k per image
    assert "Plotly" in html and "<script src=" not in html  # plotly.js embedded, nothing fetched


def test_user_strings_are_escaped(explained):
    out, _ = explained
    html = (out / "report.html").read_text()
    assert EVIL not in html  # neither in the page nor in the figures' JSON
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;.png" in html


def test_report_rebuilds_from_results(explained):
    out, _ = explained
    before = (out / "report.html").read_text()
    (out / "report.html").unlink()
    build_report(out)
    assert (out / "report.html").read_text() == before
    with pytest.raises(ValueError, match="out_dir"):
        build_report(out / "images")


def test_bad_inputs_fail_before_any_output(tmp_path, bright_dark_model, photos16):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="class_names"):
        explain_images(bright_dark_model, photos16[:1], out, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="target"):
        explain_images(bright_dark_model, photos16[:1], out, target=5)
    with pytest.raises(ValueError, match="target_name"):
        explain_images(bright_dark_model, photos16[:1], out, class_names=["a", "b"], target_name="zebra")
    with pytest.raises(ValueError, match="model: output must be logits"):
        explain_images(torch.nn.Conv2d(3, 2, 3), photos16[:1], out)
    with pytest.raises(ValueError, match="images"):
        explain_images(bright_dark_model, [tmp_path / "missing.png"], out)
    assert not out.exists()


def test_preprocessing_and_labels(tmp_path):
    prep = Preprocessing.from_preset("imagenet", size=20, crop=16)
    x = prep.apply(torch.rand(1, 3, 30, 40))
    assert x.shape == (1, 3, 16, 16) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert prep.normalization[0] == (0.485, 0.456, 0.406)
    with pytest.raises(ValueError, match="mean"):
        Preprocessing(mean=(0.5, 0.5), std=(0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="crop"):
        Preprocessing(crop=64).apply(torch.rand(1, 3, 16, 16))
    (tmp_path / "l.txt").write_text("cat\ndog\n\n")
    (tmp_path / "l.json").write_text('{"1": "dog", "0": "cat"}')
    (tmp_path / "gap.json").write_text('{"0": "cat", "2": "dog"}')
    assert load_labels(tmp_path / "l.txt") == load_labels(tmp_path / "l.json") == ["cat", "dog"]
    with pytest.raises(ValueError, match="labels"):
        load_labels(tmp_path / "gap.json")
