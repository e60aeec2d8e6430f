"""Which information in the jobs and reports (issue #22): factorised records,
the report's per-axis maps and profile chart, the audit's aggregation, the refusals."""

from __future__ import annotations

import html as html_lib
import json

import pytest
import torch
from typer.testing import CliRunner

from simplebits_audit import models, testbeds
from simplebits_audit.jobs import explain_images, run_audit
from simplebits_audit.report.information import error_type, profile_sentence, summarise_information, takeaway
from simplebits_audit.results import load_arrays, read_audit, read_explain_results
from simplebits_audit.simplification.common import round_8bit
from simplebits_audit.simplification.factorised import compose, region_reference

from ...helpers import cli_in_process

FACTORISED = {"parameterization": "factorised", "steps": 6}
AXES = ("colour", "detail", "region")


@pytest.fixture(scope="module")
def cue():
    torch.set_num_threads(1)
    data = testbeds.load("colour-cue", "test", n=2, seed=0)
    return models.load_model("testbed:colour-cue"), data


def _strict(path):
    def refuse(value):
        raise AssertionError(f"non-strict JSON constant {value} in {path}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_a_factorised_explain_run_writes_axis_maps_and_profile_and_the_report_shows_them(cue, tmp_path):
    model, data = cue
    names = ['<img src=x onerror="alert(1)">', "plain"]
    out = explain_images(model, data.images, tmp_path, names=names, class_names=list(data.classes), simplify_options=FACTORISED)
    settings, records = read_explain_results(tmp_path)
    _strict(tmp_path / "results.json")
    assert settings["simplify"]["parameterization"] == "factorised"
    for record in records:
        info = record["information"]
        assert info["region"] == "whole image" and info["codec"] == "webp" and set(info["axes"]) == set(AXES)
        for axis in AXES:
            entry = info["axes"][axis]
            assert set(entry) == {"kept_inside", "bits_removed", "codec_bits_removed"}
            assert entry["kept_inside"] is None or 0 <= entry["kept_inside"] <= 1
            assert isinstance(entry["bits_removed"], float) and isinstance(entry["codec_bits_removed"], float)
        arrays = load_arrays(tmp_path, record)
        masks = {axis: torch.from_numpy(arrays[f"axis_{axis}"])[None, None] for axis in AXES}
        assert all(m.shape == (1, 1, 32, 32) and 0 <= float(m.min()) and float(m.max()) <= 1 for m in masks.values())
        # the maps describe the returned image: composing the original with them gives it back (8-bit)
        original = torch.from_numpy(arrays["image_original"]).permute(2, 0, 1)[None].float() / 255
        image = compose(original, masks, reference=region_reference(original, "mean"), blur_sigma=2.0, order=("colour", "detail", "region"))
        simplified = torch.from_numpy(arrays["image_simplified"]).permute(2, 0, 1)[None].float() / 255
        assert float((round_8bit(image, False) - simplified).abs().max()) <= 1.5 / 255, record["name"]
        assert set(record["files"]["axes"]) == set(AXES) and all((tmp_path / p).is_file() for p in record["files"]["axes"].values())
    html = out.report_path.read_text(encoding="utf-8")
    assert html.count("<h3>Which information</h3>") == 2
    for i in range(2):
        assert f'id="fig-{i}-info-axes"' in html and f'id="fig-{i}-info-profile"' in html
    assert all(f"{axis} kept" in html for axis in AXES)
    assert "(estimator)" in html and "(WebP)" in html  # the hover text of the profile's bars
    assert names[0] not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_a_mask_run_has_no_profile_and_no_information_section(cue, tmp_path):
    model, data = cue
    out = explain_images(model, data.images[:1], tmp_path, simplify_options={"steps": 4})
    record = read_explain_results(tmp_path)[1][0]
    assert "information" not in record and "axes" not in record["files"]
    assert not any(k.startswith("axis_") for k in load_arrays(tmp_path, record))
    assert "Which information" not in out.report_path.read_text(encoding="utf-8")


def _record(label, pred, colour, detail, region, bits=(10.0, 20.0, 30.0)):
    axes = {a: {"kept_inside": v, "bits_removed": b, "codec_bits_removed": 2 * b} for a, v, b in zip(AXES, (colour, detail, region), bits)}
    return {"label": label, "pred_before": pred, "information": {"region": "ground-truth mask", "codec": "webp", "axes": axes}}


def test_the_audit_summary_aggregates_per_class_and_error_type_and_says_what_differs():
    records = [
        _record(0, 0, 0.3, 0.2, 0.2), _record(1, 1, 0.34, 0.3, 0.4),   # correct
        _record(0, 1, 0.7, 0.1, 0.3), _record(1, 0, 0.72, None, 0.5),  # misclassified (one detail n/a)
        _record(None, 2, 0.5, 0.5, 0.5),                               # no label: class = its prediction
        {"label": 0, "pred_before": 0},                                # another engine's record: ignored
    ]
    summary = summarise_information(records, ["cat", "<dog>", "cow"])
    assert summary["n"] == 5 and summary["region"] == "ground-truth mask"
    assert set(summary["by_error"]) == {"correct", "misclassified", "unlabelled"}
    wrong, right = summary["by_error"]["misclassified"], summary["by_error"]["correct"]
    assert wrong["n"] == 2 and right["n"] == 2
    assert wrong["kept_inside"]["colour"] == pytest.approx(0.71) and right["kept_inside"]["colour"] == pytest.approx(0.32)
    assert wrong["kept_inside"]["detail"] == pytest.approx(0.1)  # the mean over the images where it is defined
    assert wrong["bits_removed"]["region"] == pytest.approx(30.0) and wrong["codec_bits_removed"]["region"] == pytest.approx(60.0)
    assert {k: g["n"] for k, g in summary["by_class"].items()} == {"cat": 2, "<dog>": 2, "cow": 1}
    assert summary["by_class"]["cat"]["kept_inside"]["colour"] == pytest.approx(0.5)
    assert summary["takeaway"] == "misclassified images lean on colour (0.71 kept vs 0.32 for correct ones; n = 2 vs 2)"
    assert wrong["n_defined"] == {"colour": 2, "detail": 1, "region": 2}
    # computed from the data: swap which images were wrong and the sentence turns round
    swapped = [dict(r, pred_before=r["label"] if r["label"] != r["pred_before"] else 1 - r["label"]) if r.get("label") is not None else r
               for r in records[:4]]
    assert [error_type(r) for r in swapped] == ["misclassified"] * 2 + ["correct"] * 2
    assert summarise_information(swapped)["takeaway"].startswith("misclassified images lean less on colour (0.32 kept vs 0.71")
    json.dumps(summary, allow_nan=False)


def test_without_two_error_types_the_takeaway_says_what_all_images_kept():
    summary = summarise_information([_record(0, 0, 0.8, 0.1, 0.3), _record(1, 1, 0.6, 0.2, 0.1)])
    assert set(summary["by_error"]) == {"correct"}
    assert summary["takeaway"] == (
        "over 2 explained image(s): colour kept (0.70), detail dropped (0.15); 0.20 of the ground-truth mask needed"
    )
    assert summarise_information([{"label": 0, "pred_before": 0}]) is None
    # one image of three needed anything: the sentence says its shares are that one image's
    one = summarise_information([_record(0, 0, 0.07, 0.13, 0.1), _record(1, 1, None, None, 0.0), _record(0, 0, None, None, 0.0)])
    assert one["takeaway"] == ("over 3 explained image(s) (colour and detail read on the 1 that needed part of the ground-truth mask; "
                               "the others needed none of it): leans on detail (0.13 kept) over colour (0.07); "
                               "0.03 of the ground-truth mask needed")
    assert takeaway(summary) == summary["takeaway"]


@pytest.mark.parametrize("kept, text", [
    ({"colour": 0.8, "detail": 0.1, "region": 0.25}, "colour kept (0.80), detail dropped (0.10); 0.25 of the whole image needed"),
    ({"colour": 0.21, "detail": 0.02, "region": 0.12}, "leans on colour (0.21 kept) over detail (0.02); 0.12 of the whole image needed"),
    ({"colour": 0.42, "detail": 0.45, "region": 0.1}, "colour and detail partly kept alike (0.42, 0.45); 0.10 of the whole image needed"),
    ({"colour": None, "detail": 0.9, "region": 0.5}, "detail kept (0.90); 0.50 of the whole image needed"),
    ({"colour": None, "detail": None, "region": 0.0}, "nothing of the whole image needed: the flat reference there keeps the answer"),
])
def test_the_profile_sentence(kept, text):
    assert profile_sentence(kept) == text


def test_a_factorised_audit_summarises_profiles_and_the_report_shows_the_takeaway(cue, tmp_path):
    model, _ = cue
    summary = run_audit(model, "testbed:colour-cue", tmp_path, select="all", limit=2,
        testbed_n=4, batch_size=2, simplify_options=FACTORISED)
    info = summary["information"]
    assert info["n"] == 2 and info["region"] == "ground-truth mask" and info["takeaway"]
    audit = read_audit(tmp_path)
    assert all("information" in r and r["information"]["region"] == "ground-truth mask" for r in audit.records)
    _strict(tmp_path / "summary.json")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Which information the model needed" in html and 'id="fig-info-error"' in html
    assert html_lib.escape(info["takeaway"]) in html
    assert "colour kept" in html and "which information" in html


@pytest.mark.parametrize("attribution", ["colour", "detail"])
def test_jobs_refuse_colour_and_detail_maps_without_the_factorised_engine_before_any_work(attribution, tmp_path):
    def model(x):
        raise AssertionError("the model ran: the check came too late")

    images = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"^attribution: .*factorised"):
        explain_images(model, images, tmp_path / "e", attribution=attribution)
    with pytest.raises(ValueError, match=r"^attribution: .*factorised"):
        explain_images(model, images, tmp_path / "e", attribution=attribution, simplify_options={"parameterization": "mask"})
    with pytest.raises(ValueError, match=r"^attribution: .*learned simplifier"):
        explain_images(model, images, tmp_path / "e", attribution=attribution, simplify_options=FACTORISED, simplifier="missing.pt")
    with pytest.raises(ValueError, match=r"^attribution: .*factorised"):
        run_audit(model, "testbed:colour-cue", tmp_path / "a", attribution=attribution)
    assert not (tmp_path / "e").exists() and not (tmp_path / "a").exists()


def test_the_cli_engine_option_reaches_the_jobs_and_the_refusal_is_one_line(monkeypatch, tmp_path, capsys):
    from simplebits_audit.cli import main as cli

    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr("simplebits_audit.jobs.run_audit", record)
    CliRunner().invoke(cli.app, ["audit", "colour-cue", "-m", "testbed:colour-cue", "--engine", "factorised", "--steps", "5"])
    # the jobs take the engine's options as ``simplify_options``, or inside ``explain_options`` (the option groups of issue #20)
    given = seen["explain_options"].simplify_options if "explain_options" in seen else seen["simplify_options"]
    assert dict(given) == {"steps": 5, "parameterization": "factorised"}
    monkeypatch.undo()
    code, lines = cli_in_process(capsys, "audit", "colour-cue", "-m", "testbed:colour-cue",
        "--attribution", "colour", "--out", str(tmp_path / "x"))
    assert code == 2 and len(lines) == 1 and lines[0].startswith(
        "error: --attribution: 'colour' needs the factorised engine (--engine factorised")
    assert not (tmp_path / "x").exists()


def test_a_summary_written_before_the_counts_still_renders():
    # simplebits report on an older factorised audit folder raised KeyError: 'n_defined'
    from simplebits_audit.report.information import audit_information_html

    info = summarise_information([_record(0, 0, 0.8, 0.1, 0.3), _record(1, 1, 0.6, 0.2, 0.1)])
    for group in [info["all"], *info["by_error"].values(), *info["by_class"].values()]:
        del group["n_defined"]
    html = audit_information_html({"information": info})
    assert "Which information the model needed" in html and "<td>0.700</td>" in html  # the mean, without its count
