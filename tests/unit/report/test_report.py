"""``explain_images`` and its report: records, artefacts, escaping, rebuilding, refusals."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from simplebits_audit.jobs import explain_images
from simplebits_audit.preprocessing import Preprocessing, load_labels
from simplebits_audit.report import build_report

EVIL = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def explained(tmp_path_factory, bright_dark_model, photos16):
    out = tmp_path_factory.mktemp("explain")
    names = [f"{EVIL}.png", "b.png", "c.png"]
    result = explain_images(
        bright_dark_model, photos16[:3], out, class_names=[f"dark {EVIL}", "bright"], labels=[0, 1, 1],
        names=names, simplify_options={"steps": 8},
    )
    return out, result


def test_writes_results_images_and_report(explained):
    out, result = explained
    data = json.loads((out / "results.json").read_text())
    assert len(data["images"]) == 3 and data["settings"]["seconds_per_image"]["simplebits"] > 0
    for r in data["images"]:
        assert r["bpd_after"] <= r["bpd_before"] + 1e-6  # never more complex than the original
        # an answer the flat image also gets needs nothing: then the returned image is that flat image
        simplified = np.asarray(Image.open(out / r["files"]["simplified"]))
        assert r["nothing_needed"] == bool((simplified == simplified[:1, :1]).all())
        assert len(r["path_bpd"]) == len(r["path_lambdas"]) == len(r["path_target_prob"])
        assert abs(sum(p for _, _, p in r["top_before"]) - 1) < 1e-4  # two classes: top-2 is everything
        for key in ("original", "simplified"):
            assert (out / r["files"][key]).stat().st_size > 0
        assert set(r["files"]["maps"]) == {"simplebits", "bits_removed"}
    html = result.report_path.read_text()
    assert html.count('class="plotly-graph-div') == 3 * 3  # panels, trade-off, top-k per image
    assert "Plotly" in html and "<script src=" not in html  # plotly.js embedded, nothing fetched


def test_records_and_report_check_the_bits_with_webp_and_jpeg_xl(explained):
    """Each record holds both real-codec checks of the saved images (issue 24), and the report shows both."""
    from PIL import Image

    from simplebits_audit.codecs import codec_bpd

    out, result = explained
    for r in json.loads((out / "results.json").read_text())["images"]:
        for when, key in (("before", "original"), ("after", "simplified")):
            pixels = torch.from_numpy(np.array(Image.open(out / r["files"][key]).convert("RGB"))).permute(2, 0, 1)[None] / 255
            assert r[f"jxl_bpd_{when}"] == pytest.approx(float(codec_bpd(pixels, "jxl")[0]))
        assert r["jxl_bpd_after"] < r["jxl_bpd_before"]
    html = result.report_path.read_text()
    assert html.count("JPEG-XL") >= 3 + 1 and html.count("WebP") >= 3 + 1  # the summary column and each image's facts


def test_a_rerun_into_the_same_folder_leaves_no_stale_images(tmp_path, bright_dark_model, photos16):
    out = tmp_path / "out"
    explain_images(bright_dark_model, photos16[:3], out, names=["a.png", "b.png", "c.png"], simplify_options={"steps": 3})
    (out / "images" / "notes").mkdir()  # a user's folder: left alone
    (out / "images" / "000000-pred").mkdir()  # another job's images (an audit's), not listed by the earlier results: left alone
    (out / "images" / "000000-pred" / "arrays.npz").write_bytes(b"")
    explain_images(bright_dark_model, photos16[3:4], out, names=["d.png"], simplify_options={"steps": 3})
    listed = {r["files"]["original"].split("/")[1] for r in json.loads((out / "results.json").read_text())["images"]}
    assert {p.name for p in (out / "images").iterdir()} == listed | {"notes", "000000-pred"} and len(listed) == 1


def test_an_answer_that_needs_nothing_says_so(tmp_path, photos16):
    """A model that answers class 0 for any image, the flat one too: a flat map is the right map, and the report says why."""

    class AlwaysZero(torch.nn.Module):
        def forward(self, x):
            m = x.mean((1, 2, 3))
            return torch.stack([1 + 0.1 * m, -m], 1)

    out = explain_images(AlwaysZero().eval(), photos16[:2], tmp_path / "out", simplify_options={"steps": 3})
    assert all(r["nothing_needed"] and r["status"] == "ok" and r["kept"] for r in out.records)
    assert "nothing needed: the reference image alone gets this answer" in out.report_path.read_text()


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


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def _strips(html: str) -> list[str]:
    """The path strips of a report, in page order."""
    return re.findall(r'<div class="path" data-snapshots="\d+">.*?</div></div>', html)


def _check_strips(out, records, html, *, width):
    strips = _strips(html)
    assert len(strips) == len(records) and html.count(".path-strip {") == 1  # one strip per explanation, the CSS once
    for r, strip in zip(records, strips):
        n = len(r["path_bpd"])
        assert n == len(r["path_labels"]) == len(r["path_target_prob"]) == len(r["path_kept"]) == len(r["path_lambdas"]) > 2
        with np.load(out / r["files"]["arrays"], allow_pickle=False) as arrays:
            images, simplified = arrays["path_images"], arrays["image_simplified"]
        assert images.dtype == np.uint8 and images.shape[0] == n and images.shape[1] in (1, 3)
        # the chosen snapshot is the image returned
        chosen = images[r["path_chosen"]]
        assert np.array_equal(chosen[0] if chosen.shape[0] == 1 else chosen.transpose(1, 2, 0), simplified)
        assert (out / r["files"]["path"]).stat().st_size > 0
        # one thumbnail per snapshot, each captioned; the chosen one marked once; the lost ones marked
        figure = r'<figure class="(snap[^"]*)" style="width:(\d+)px" data-index="(\d+)" data-position="(\d+)" data-kept="([01])">'
        snaps = re.findall(figure, strip)
        assert len(snaps) == n == int(re.search(r'data-snapshots="(\d+)"', strip)[1]) == strip.count("<img ")
        assert {int(w) for _, w, _, _, _ in snaps} == {width}
        indices = [int(i) for _, _, i, _, _ in snaps]
        assert sorted(indices) == list(range(n)) and indices[-1] == 0  # every snapshot once, the original last
        bpd = [r["path_bpd"][i] for i in indices[:-1] if r["path_bpd"][i] is not None]
        assert bpd == sorted(bpd)  # from the simplest
        assert [i for c, _, i, _, _ in snaps if "chosen" in c.split()] == [str(r["path_chosen"])]
        assert [i for c, _, i, _, _ in snaps if "lost" in c.split()] == [str(i) for i in indices if not r["path_kept"][i]]
        assert strip.count('class="mark"') == sum(1 for c, *_ in snaps if c != "snap")
        # a snapshot costing more than the original (it sits left of it) says so
        costlier = [i for i in indices if i != 0 and r["path_bpd"][i] is not None and r["path_bpd"][i] > r["path_bpd"][0]]
        assert [int(i) for c, _, i, _, _ in snaps if "costlier" in c.split()] == costlier
        assert strip.count("more bits than the original</span>") + strip.count("· more bits than the original") >= len(costlier)
        assert strip.count("<figcaption>") == n and strip.count(" bpd<br>p ") == n
        for label in r["path_labels"]:
            assert f"<figcaption>{label}<br>" in strip


def test_report_shows_the_path_from_the_simplest_image_to_the_original(explained):
    out, _ = explained
    data = _strict((out / "results.json").read_text())
    records = data["images"]
    assert records[0]["path_labels"][0] == "original" and "simplest kept step" in records[0]["path_labels"]
    html = (out / "report.html").read_text()
    _check_strips(out, records, html, width=96)
    (out / "report.html").unlink()
    build_report(out)
    assert (out / "report.html").read_text() == html  # rebuilt byte for byte from the stored path


def test_path_of_an_older_engine_and_of_an_audit(tmp_path, bright_dark_model, photos16):
    from simplebits_audit.jobs import run_audit
    from simplebits_audit.report.path import path_strip_html

    out = tmp_path / "pixel"
    explain_images(bright_dark_model, photos16[:2], out, simplify_options={"steps": 6, "parameterization": "pixels"})
    records = _strict((out / "results.json").read_text())["images"]
    assert records[0]["path_labels"][0] == "original" and records[0]["path_labels"][1].startswith("lambda ")
    _check_strips(out, records, (out / "report.html").read_text(), width=96)
    # a record written before the path was stored gets no strip (and the page no strip CSS)
    old = {k: v for k, v in records[0].items() if k not in ("path_labels", "path_chosen")}
    assert path_strip_html(old, {}) == ""
    # the audit report shows the same strip, smaller, in each image's details
    from simplebits_audit import testbeds

    audit = tmp_path / "audit"
    run_audit(
        testbeds.load_classifier("stripes"), "stripes", audit,
        testbed_n=8, select="all", limit=2, batch_size=2, simplify_options={"steps": 4},
    )
    records = [_strict(line) for line in (audit / "results.jsonl").read_text().splitlines()]
    html = (audit / "report.html").read_text()
    _check_strips(audit, records, html, width=64)
    (audit / "report.html").unlink()
    build_report(audit)
    assert (audit / "report.html").read_text() == html


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
    # a blank name in the middle would shift every later class onto the wrong index
    (tmp_path / "blank.txt").write_text("cat\n\ndog\n")
    (tmp_path / "blank.json").write_text('["cat", " ", "dog"]')
    with pytest.raises(ValueError, match=r"labels: .*blank.txt' line 2 is blank"):
        load_labels(tmp_path / "blank.txt")
    with pytest.raises(ValueError, match=r"labels: .*blank.json' entry 2 is blank"):
        load_labels(tmp_path / "blank.json")
    (tmp_path / "blank-keys.json").write_text('{"0": "cat", "1": " ", "2": "dog"}')
    with pytest.raises(ValueError, match=r"labels: .*blank-keys.json' key '1' is blank"):
        load_labels(tmp_path / "blank-keys.json")


def test_a_class_name_that_names_two_classes_is_refused_wherever_a_name_picks_a_class(tmp_path):
    # ImageNet names two classes "crane": the first match would explain, select or label the wrong one, silently
    from simplebits_audit.jobs import Selection, open_source
    from simplebits_audit.jobs.checks import class_index

    names = ["crane", "heron", "crane"]
    assert class_index("heron", names) == 1
    with pytest.raises(ValueError, match=r"target_name: 'crane' names classes \[0, 2\]; give the index instead"):
        class_index("crane", names)
    with pytest.raises(ValueError, match=r"select: 'crane' names classes \[0, 2\]; use class:INDEX"):
        Selection.parse("class:crane", names)
    assert Selection.parse("class:heron", names).class_index == 1
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "list.csv").write_text("a.png,crane\n")
    with pytest.raises(ValueError, match=r"data: 'crane' names classes \[0, 2\]; write its class index instead"):
        open_source(tmp_path / "list.csv", class_names=names)
    (tmp_path / "folder" / "crane").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "folder" / "crane" / "a.png")
    with pytest.raises(ValueError, match=r"data: 'crane' names classes \[0, 2\]; give the classes unique names"):
        open_source(tmp_path / "folder", class_names=names)


def test_the_chosen_snapshot_agrees_with_lambda_when_images_tie():
    # A mask that kept everything returns the original's pixels from a later snapshot: the record's
    # snapshot must be the one whose knob is the reported lambda, not the first equal image.
    import dataclasses

    from simplebits_audit import simplify, testbeds
    from simplebits_audit.results import chosen_snapshot

    data = testbeds.load("stripes", "test", n=2)
    r = simplify(testbeds.load_classifier("stripes"), data.images, steps=3, estimator="analytic")
    images, bits = r.path_images.clone(), r.path_bits.clone()
    images[1], bits[1] = images[0], bits[0]
    tied = dataclasses.replace(r, path_images=images, path_bits=bits, simplified=r.original.clone(),
                               lambda_chosen=r.path_lambdas[1].repeat(2))
    assert float(r.path_lambdas[1]) != float(r.path_lambdas[0])
    assert [chosen_snapshot(tied, i) for i in range(2)] == [1, 1]
    assert chosen_snapshot(dataclasses.replace(tied, lambda_chosen=r.path_lambdas[0].repeat(2)), 0) == 0


def test_a_snapshot_costing_more_than_the_original_says_so():
    # the caption said "from the simplest to the original" while such a snapshot sat left of the original, unexplained
    from simplebits_audit.report.path import path_strip_html

    record = {"path_bpd": [1.4, 1.0, 1.7, None], "path_labels": ["original", "step 30", "step 3", "step 1"],
              "path_target_prob": [0.9, 0.8, 0.85, 0.9], "path_kept": [True, True, True, True], "path_chosen": 1, "target_name": "cat"}
    strip = path_strip_html(record, {"path_images": np.zeros((4, 3, 4, 4), np.uint8)})
    order = [int(i) for i in re.findall(r'data-index="(\d+)"', strip)]
    assert order == [1, 2, 3, 0]  # by bits, unknown bits just before the original, the original last
    costlier = re.findall(r'<figure class="([^"]*)"[^>]*data-index="(\d+)"', strip)
    assert [i for c, i in costlier if "costlier" in c.split()] == ["2"]
    assert strip.count("more bits than the original</span>") == 1
