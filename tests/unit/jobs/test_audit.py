"""Batch audits: data sources, selection, nothing lost after SIGKILL, torchrun = one process, bounded memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from simplebits_audit.jobs import Selection, open_source, run_audit
from simplebits_audit.photos import held_out_crops

from ...helpers import CLI, assert_same_arrays, assert_same_json

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # same threads everywhere: bit-identical numbers across runs
AUDIT = ["--quiet", "audit", "digits-on-photos", "--model", "testbed:digits-on-photos", "--testbed-n", "48",
         "--select", "all", "--limit", "12", "--batch-size", "2", "--steps", "5"]
#: what differs between runs of the same audit: wall time, memory, how the work was split
VOLATILE = {"seconds", "timing", "peak_rss_mb_per_process"}


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def _same_run(a: Path, b: Path) -> None:
    """Two audit folders hold the same records, summary, settings and arrays."""
    assert_same_json(_records(a), _records(b), ignore=VOLATILE, where="results.jsonl")
    for name in ("summary.json", "audit.json"):
        assert_same_json(json.loads((a / name).read_text()), json.loads((b / name).read_text()), ignore=VOLATILE, where=name)
    assert_same_arrays(a, b, _records(b))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted single-process audit through the command line."""
    out = tmp_path_factory.mktemp("audit") / "reference"
    res = subprocess.run([*CLI, *AUDIT, "--out", str(out)], capture_output=True, text=True, env=ENV, timeout=900)
    assert res.returncode == 0, res.stderr
    return out


def test_reference_outputs(reference):
    records = _records(reference)
    assert len(records) == 12 and len({r["id"] for r in records}) == 12
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["explained"] == 12 and summary["items"] == 48 and len(summary["confusion_matrix"]) == 10
    assert 0 <= summary["shortcut"]["mask_area_share"] <= 1  # testbed masks give the mask shares
    assert all((reference / r["files"]["simplified"]).is_file() for r in records)
    html = (reference / "report.html").read_text()
    assert html.count('class="plotly-graph-div') == 2 and 'id="gallery"' in html
    assert not list(reference.glob("results.rank*"))


@pytest.mark.slow
@pytest.mark.integration
def test_sigkill_then_rerun_equals_uninterrupted(reference, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([*CLI, *AUDIT, "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if results.exists() and len(results.read_bytes().splitlines()) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from simplebits_audit.results import read_records

    finished = len(read_records([results]))  # complete records; a write the kill tore does not count
    assert 2 <= finished < 12, f"the kill should land mid-run ({finished} records)"
    assert not (out / "summary.json").exists()
    with results.open("ab") as handle:  # as if the kill had torn a write inside a multi-byte character
        handle.write('{"id": "digits-on-photos-test-000099#pred", "name": "caf\u00e9'.encode()[:-1])
    res = subprocess.run([*CLI, *AUDIT, "--out", str(out)], capture_output=True, text=True, env=ENV, timeout=900)
    assert res.returncode == 0, res.stderr
    # the rerun explained only what was missing, and the result equals an uninterrupted run's
    assert json.loads((out / "summary.json").read_text())["timing"]["explained_this_run"] == 12 - finished
    _same_run(out, reference)


@pytest.mark.slow
@pytest.mark.integration
def test_torchrun_two_processes_equal_one(reference, tmp_path):
    out = tmp_path / "two"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "simplebits_audit.cli.main", *AUDIT, "--out", str(out)]
    res = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    # the settings differ only in the number of processes
    settings = {k: v for k, v in json.loads((out / "audit.json").read_text()).items() if k != "world_size"}
    assert_same_json(settings, {k: v for k, v in json.loads((reference / "audit.json").read_text()).items() if k != "world_size"})
    timing = json.loads((out / "summary.json").read_text())["timing"]
    assert timing["world_size"] == 2
    assert timing["explained_per_process"] == [6, 6]  # both ranks explained (and wrote) their share
    (out / "audit.json").write_text((reference / "audit.json").read_text())
    _same_run(out, reference)


@pytest.mark.integration
def test_changed_settings_refuse_to_resume(reference):
    res = subprocess.run([*CLI, *AUDIT[:-1], "6", "--out", str(reference)], capture_output=True, text=True, env=ENV, timeout=300)
    assert res.returncode == 2 and "other settings (simplify)" in res.stderr


# ---------------------------------------------------------------------------------------------
# in-process: sources, selection, skipped images


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos16):
    """An ImageFolder of 16x16 photos in two classes, with one corrupt file and one odd-sized image."""
    root = tmp_path_factory.mktemp("folder")
    for i, img in enumerate(photos16):
        cls = root / ("dark<script>" if i % 2 else "bright")
        cls.mkdir(exist_ok=True)
        Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy()).save(cls / f"img{i}.png")
    (root / "dark<script>" / "corrupt.png").write_bytes(b"\x89PNG not an image")
    Image.new("RGB", (20, 12)).save(root / "bright" / "odd.png")
    return root


def test_folder_audit_records_skipped_images(folder, tmp_path, bright_dark_model):
    summary = run_audit(bright_dark_model, folder, tmp_path / "a", select="all", simplify_options={"steps": 3}, batch_size=4)
    reasons = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert set(reasons) == {"corrupt.png", "odd.png"}
    assert "not a readable image" in reasons["corrupt.png"] and "--size/--crop" in reasons["odd.png"]
    assert summary["explained"] == 8 and summary["class_names"] == ["bright", "dark<script>"]
    html = (tmp_path / "a" / "report.html").read_text()
    assert "corrupt.png" in html and "Skipped images" in html
    assert "dark&lt;script&gt;" in html and "dark<script>" not in html  # the class name, escaped everywhere


def test_csv_source_and_selection(folder, tmp_path):
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("path,label\n" + f"{folder}/bright/img0.png,dark\n" + "bright/img2.png,bright\n")
    with pytest.raises(ValueError, match="--labels"):
        open_source(csv_file)  # names without the model's class order
    source = open_source(csv_file, class_names=["dark", "bright"])
    assert [i.label for i in source.items] == [0, 1]
    csv_file.write_text("path,label\nbright/img2.png,1\nbright/img2.png,1\n")
    with pytest.raises(ValueError, match="twice"):
        open_source(csv_file)
    assert Selection.parse("low-confidence:0.6", None)(1, 1, 0.5)
    assert not Selection.parse("misclassified", None)(1, 1, 0.5)
    assert Selection.parse("class:dark", ["bright", "dark"])(1, 0, 0.9)
    for bad in ("low-confidence:2", "class:zebra", "wrong"):
        with pytest.raises(ValueError, match="select"):
            Selection.parse(bad, ["bright", "dark"])
    with pytest.raises(ValueError, match="data"):
        open_source(tmp_path / "nothing-here")


@pytest.mark.slow
@pytest.mark.integration
def test_memory_stays_bounded_while_streaming(tmp_path):
    """Peak memory of an audit over 3000 images is within a few MB of one over 300."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, 2))
    torch.jit.save(torch.jit.script(model), str(tmp_path / "tiny.ts"))
    crops = (held_out_crops(64, size=8, seed=2).permute(0, 2, 3, 1) * 255).round().byte().numpy()
    peaks = {}
    for n in (300, 3000):
        root = tmp_path / f"data{n}"
        for i in range(n):
            cls = root / f"c{i % 2}"
            cls.mkdir(parents=True, exist_ok=True)
            Image.fromarray(crops[i % 64]).save(cls / f"{i}.png")
        code = (
            "import resource, sys; from simplebits_audit.cli.main import main; sys.argv = ['simplebits', '--quiet', 'audit', "
            f"'{root}', '--model', '{tmp_path / 'tiny.ts'}', "
            f"'--select', 'all', '--limit', '2', '--steps', '2', '--out', '{tmp_path / f'out{n}'}']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        )
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=600)
        assert res.returncode == 0, res.stderr
        peaks[n] = int(res.stdout.strip().splitlines()[-1]) / 1024  # MB
    assert peaks[3000] - peaks[300] < 40, peaks


def test_without_a_terminal_progress_is_plain_lines(tmp_path, capsys, monkeypatch):
    # rich's bar draws nothing into a log file: a long audit would be silent there
    from simplebits_audit import _progress, testbeds
    from simplebits_audit.jobs.options import RunOptions

    monkeypatch.setattr(_progress, "PLAIN_PROGRESS_SECONDS", 0.0)
    run_audit(testbeds.load_classifier("stripes"), "stripes", tmp_path / "a", testbed_n=8, select="all", limit=4, batch_size=2,
              simplify_options={"steps": 2}, run=RunOptions(show_progress=True))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("simplifying: ")]
    assert [line.split(" (")[0] for line in lines] == ["simplifying: 2 / 4", "simplifying: 4 / 4"]
    run_audit(testbeds.load_classifier("stripes"), "stripes", tmp_path / "b", testbed_n=8, select="all", limit=2, batch_size=2,
              simplify_options={"steps": 2})  # show_progress off (--quiet): nothing
    assert "simplifying: " not in capsys.readouterr().out


def test_stripes_audit_has_no_shortcut_statistic(tmp_path):
    """The stripes testbed's mask is the whole image (``has_localisation`` False): no mask shares, no shortcut block."""
    from simplebits_audit import testbeds

    out = tmp_path / "stripes"
    summary = run_audit(testbeds.load_classifier("stripes"), "stripes", out, testbed_n=8, select="all", limit=2,
                        batch_size=2, simplify_options={"steps": 2})
    assert summary["explained"] == 2
    assert summary["shortcut"] is None and json.loads((out / "summary.json").read_text())["shortcut"] is None
    assert not any(key.startswith("mask_") for r in _records(out) for key in r)
    assert "Where the retained information sits" not in (out / "report.html").read_text()


def test_non_finite_outputs_are_skipped_and_every_file_is_strict_json(tmp_path, photos16):
    """Images the model answers with NaN are skipped with the reason; nothing written holds a bare NaN."""

    class NanOnDark(torch.nn.Module):
        def forward(self, x):
            logits = torch.stack([x.mean((1, 2, 3)), 1 - x.mean((1, 2, 3))], 1)
            return torch.where(x.mean((1, 2, 3))[:, None] < 0.2, torch.full_like(logits, float("nan")), logits)

    root = tmp_path / "data"
    for i, img in enumerate(photos16):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy()).save(root / f"c{i % 2}" / f"{i}.png")
    dark = [i for i, img in enumerate(photos16) if float(img.mean()) < 0.2]
    assert dark and float(photos16[0].mean()) >= 0.2  # the first image (c0/0.png) passes the preflight
    summary = run_audit(NanOnDark().eval(), root, tmp_path / "out", select="all", simplify_options={"steps": 2}, batch_size=4)
    reasons = [s["reason"] for s in summary["skipped"]]
    assert len(reasons) == len(dark) and all("NaN or infinite" in r for r in reasons)

    def refuse(constant: str) -> None:
        raise AssertionError(f"bare {constant} in a JSON file")

    for path in (tmp_path / "out").glob("*.json*"):
        for text in ([path.read_text()] if path.suffix == ".json" else path.read_text().splitlines()):
            json.loads(text, parse_constant=refuse)


def test_a_blocked_gradient_fails_before_the_audit_writes_anything(folder, tmp_path):
    """The engine's gradient check runs in the preflight: nothing in --out, so a corrected rerun is not refused as another audit."""

    class Rounded(torch.nn.Module):
        def forward(self, x):
            m = (torch.round(x * 4) / 4).mean((1, 2, 3))  # a hard quantiser: zero gradient everywhere
            return torch.stack([m, 1 - m], 1)

    out = tmp_path / "out"
    with pytest.raises(ValueError, match="zero everywhere"):
        run_audit(Rounded().eval(), folder, out, select="all", simplify_options={"steps": 2}, batch_size=4)
    assert not out.exists() or not any(out.iterdir())


def test_a_target_that_was_not_the_prediction_is_not_reported_as_the_prediction_kept(tmp_path):
    # the report said "prediction kept 100 %" when the explained true label (not the prediction) kept 90 % of its probability
    from simplebits_audit import testbeds

    out = tmp_path / "a"
    summary = run_audit(testbeds.load_classifier("digits-on-photos"), "digits-on-photos", out, testbed_n=64, select="misclassified",
                        explain="true", limit=2, batch_size=2, simplify_options={"steps": 2})
    records = _records(out)
    assert summary["explained"] == 2 and all(r["target"] != r["pred_before"] for r in records)
    assert summary["not_prediction_targets"] == 2
    page = (out / "report.html").read_text()
    assert "prediction kept" not in page and "answer kept after simplification" in page
    assert "2 of 2 explanations are of a target that was not the prediction" in page
    from simplebits_audit.report._html import kept_title  # the explain report's line per image

    assert kept_title(records[0]) == "target kept (not the prediction: at least 90% of its probability)"
    assert kept_title({**records[0], "target": records[0]["pred_before"]}) == "prediction kept"
