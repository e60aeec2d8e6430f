"""Dataset condensation with simplification (issue #14): the library, its files, resuming, the command line."""

from __future__ import annotations

import importlib
import json
import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simplebits_audit import testbeds
from simplebits_audit.estimators import AnalyticCoder
from simplebits_audit.estimators.analytic import snap_to_prediction
from simplebits_audit.training.condensation import (
    CondensedSet,
    condense,
    evaluate_condensed,
    finish_images,
    matching_distance,
    near_pass_summary,
)

from ...helpers import cli_in_process, run_cli

# The package exports the function ``condense``, which hides the module of the same name.
condense_module = importlib.import_module("simplebits_audit.training.condensation")

#: A few seconds per run on one core: 2 classes, 2 images each, 3 fresh networks.
TINY = {"images_per_class": 2, "outer_steps": 3, "match_steps": 2, "inner_steps": 1, "real_batch": 8}


@pytest.fixture(scope="module")
def data():
    return testbeds.load("stripes", "train", n=40, seed=0)


@pytest.fixture(scope="module")
def tiny(data):
    return condense(data, **TINY)


def test_shapes_ranges_and_settings(tiny, data):
    assert tiny.images.shape == (4, 3, 32, 32)
    assert tiny.images.min() >= 0 and tiny.images.max() <= 1
    assert torch.equal(tiny.images, torch.round(tiny.images * 255) / 255)  # 8-bit, as reported
    assert tiny.labels.tolist() == [0, 0, 1, 1]
    assert tiny.bits.shape == (4,) and torch.isfinite(tiny.bits).all() and (tiny.bits > 0).all()
    assert torch.allclose(tiny.bpd, tiny.bits / (3 * 32 * 32))
    assert tiny.classes == list(data.classes)
    assert tiny.settings["lam"] > 0 and tiny.settings["outer_steps"] == 3 and tiny.settings["estimator"] == "analytic"
    assert len(tiny.history["match"]) == 3 and all(0 <= m <= 2 for m in tiny.history["match"])
    assert tiny.webp_bits().shape == (4,)


def test_real_init_starts_from_real_images_of_each_class(data):
    # With a negligible learning rate the set stays where it started: each image a real one of its class.
    start = condense(data, **{**TINY, "lr": 1e-9, "lam": 0.0}, init="real", near=0)  # near=0: the start itself
    real = (data.images * 255).round() / 255
    for image, label in zip(start.images, start.labels):
        same_class = real[data.labels == label]
        assert (same_class - image).abs().flatten(1).amax(1).min() <= 1.5 / 255
    assert start.settings["init"] == "real"
    with pytest.raises(ValueError, match="^init"):
        condense(data, **TINY, init="photos")


def test_save_load_roundtrip_weights_only(tiny, tmp_path):
    path = tiny.save(tmp_path / "set.pt")
    raw = torch.load(path, weights_only=True)  # nothing but tensors, numbers and text
    assert raw["images"].dtype == torch.uint8
    back = CondensedSet.load(path)
    assert torch.equal(back.images, tiny.images) and torch.equal(back.labels, tiny.labels)
    assert torch.allclose(back.bits, tiny.bits)
    assert back.classes == tiny.classes and back.settings == json.loads(json.dumps(tiny.settings)) and back.history == tiny.history
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="path"):
        CondensedSet.load(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="path"):
        CondensedSet.load(tmp_path / "missing.pt")
    # printed, a set says what it is in one line, not every pixel
    text = repr(back)
    assert text.startswith(f"CondensedSet({len(tiny)} images of ") and "\n" not in text and len(text) < 120


def test_seeded_and_leaves_global_rng_alone(tiny, data):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    again = condense(data, **TINY)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(again.images, tiny.images)
    other = condense(data, **TINY, seed=1)
    assert not torch.equal(other.images, tiny.images)


def test_resume_after_interruption_equals_uninterrupted(tiny, data, tmp_path, monkeypatch):
    ckpt = tmp_path / "run.ckpt"
    real_step, calls = condense_module._outer_step, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(condense_module, "_outer_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        condense(data, **TINY, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["step"] == 2
    monkeypatch.setattr(condense_module, "_outer_step", real_step)
    resumed = condense(data, **TINY, checkpoint=ckpt)
    assert torch.equal(resumed.images, tiny.images)
    assert resumed.history == tiny.history
    # Other settings cannot continue from that checkpoint.
    with pytest.raises(ValueError, match="checkpoint"):
        condense(data, **{**TINY, "lam": 0.0}, checkpoint=ckpt)


def test_ctrl_c_mid_step_finishes_the_step_and_resumes_exactly(tiny, data, tmp_path, monkeypatch):
    import os
    import signal

    ckpt = tmp_path / "sigint.ckpt"
    real_step = condense_module._outer_step

    def interrupted(*args, **kwargs):
        if kwargs["step"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C while the step runs: it completes, then training stops
        return real_step(*args, **kwargs)

    monkeypatch.setattr(condense_module, "_outer_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        condense(data, **TINY, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["step"] == 2
    monkeypatch.setattr(condense_module, "_outer_step", real_step)
    resumed = condense(data, **TINY, checkpoint=ckpt)
    assert torch.equal(resumed.images, tiny.images) and resumed.history == tiny.history


def test_bits_term_lowers_bits(data):
    settings = {**TINY, "outer_steps": 4}
    plain = condense(data, **settings, lam=0.0)
    simplified = condense(data, **settings, lam=10.0)
    assert float(simplified.bpd.mean()) < 0.8 * float(plain.bpd.mean())
    assert float(simplified.webp_bits().mean()) < float(plain.webp_bits().mean())
    assert float(simplified.jxl_bits().mean()) < float(plain.jxl_bits().mean())  # the second real codec agrees


def test_a_coarse_resolution_makes_full_size_images_upsampled_from_its_grid(data):
    coarse = condense(data, **TINY, resolution=8, near=0)  # near=0: the upsampled grid itself
    assert coarse.images.shape == (4, 3, 32, 32) and coarse.settings["resolution"] == 8
    # Bilinear from an 8 x 8 grid: each row is linear between the grid's sample centres (x = 1.5, 5.5, ...), so the
    # second difference centred on pixels 3, 4, 7, 8, ... vanishes, up to 8-bit rounding (at most 2 levels).
    second = coarse.images.diff(n=2, dim=-1)  # index i is centred on pixel i + 1
    inside = [i for i in range(second.shape[-1]) if i % 4 in (2, 3)]
    assert second[..., inside].abs().max() <= 2.01 / 255
    full = condense(data, **TINY, near=0)
    assert full.images.diff(n=2, dim=-1)[..., inside].abs().max() > 10 / 255  # full resolution is not so constrained
    with pytest.raises(ValueError, match="^resolution"):
        condense(data, **TINY, resolution=64)
    # the full size asked for by number is the default run (same images, same settings, so either checkpoint resumes)
    same = condense(data, **TINY, resolution=32)
    assert same.settings["resolution"] is None and torch.equal(same.images, full.images)


def test_luma_chroma_basis_round_trips_and_lets_colour_go_grey(data):
    logits = torch.randn(5, 3, 8, 8)
    lc = condense_module.to_basis(logits, "luma-chroma")
    assert torch.equal(lc[:, 1], logits[:, 1])  # the green logit is the luma parameter
    assert torch.allclose(condense_module.synthetic_pixels(lc, 8, "luma-chroma"), torch.sigmoid(logits), atol=1e-6)
    grey = torch.zeros_like(lc)
    grey[:, 1] = torch.randn(5, 8, 8)  # zero chroma parameters: every pixel grey (R = G = B)
    pixels = condense_module.synthetic_pixels(grey, 8, "luma-chroma")
    assert torch.equal(pixels[:, 0], pixels[:, 1]) and torch.equal(pixels[:, 2], pixels[:, 1])
    # from real images in the new basis: the same start as in RGB (up to float rounding)
    starts = [condense(data, **{**TINY, "lr": 1e-9, "lam": 0.0}, init="real", basis=b) for b in ("rgb", "luma-chroma")]
    assert (starts[0].images - starts[1].images).abs().max() <= 1.01 / 255
    assert starts[1].settings["basis"] == "luma-chroma"
    one_channel = (data.images[:, :1], data.labels)
    assert condense(one_channel, **TINY, basis="luma-chroma").settings["basis"] == "rgb"  # nothing to decorrelate in one plane
    with pytest.raises(ValueError, match="^basis"):
        condense_module.synthetic_pixels(logits[:, :1], 8, "luma-chroma")
    with pytest.raises(ValueError, match="^basis"):
        condense_module.to_basis(logits, "yuv")


def test_every_image_of_a_luma_chroma_run_is_read_in_that_basis_and_its_key_says_so(data, tmp_path, monkeypatch):
    seen = []
    real = condense_module.synthetic_pixels
    monkeypatch.setattr(condense_module, "synthetic_pixels", lambda logits, size, basis: seen.append(basis) or real(logits, size, basis))
    condense(data, **TINY, basis="luma-chroma", checkpoint=tmp_path / "lc.ckpt")
    # matching (match_steps per network), the network's steps between them, and the final images
    assert seen == ["luma-chroma"] * (TINY["outer_steps"] * (2 * TINY["match_steps"] - 1) + 1)
    monkeypatch.undo()
    condense(data, **TINY, basis="rgb", checkpoint=tmp_path / "rgb.ckpt")
    condense((data.images[:, :1], data.labels), **TINY, basis="luma-chroma", checkpoint=tmp_path / "grey.ckpt")
    keys = {name: json.loads(torch.load(tmp_path / f"{name}.ckpt", weights_only=True)["run_key"]) for name in ("lc", "rgb", "grey")}
    # An RGB (or grey) run's key has no basis, as before the option existed, so its old checkpoints still resume.
    assert keys["lc"]["basis"] == "luma-chroma" and "basis" not in keys["rgb"] and "basis" not in keys["grey"]


def test_the_near_lossless_pass_is_kept_only_where_it_pays_and_resumes_any_checkpoint(data, tmp_path):
    coder = AnalyticCoder()
    # A flat image a level off in a third of its pixels (the pass pays) and a noise image (it may not): per image, the cheaper.
    g = torch.Generator().manual_seed(0)
    flat = (120 + (torch.rand(1, 3, 32, 32, generator=g) < 1 / 3).float()) / 255
    noise = torch.randint(0, 256, (1, 3, 32, 32), generator=g) / 255
    images = torch.cat([flat, noise])
    finished, bits, near_pass = finish_images(images, 2, coder)
    before, after = coder.bits(images), coder.bits(snap_to_prediction(images, 2))
    assert torch.allclose(bits, torch.minimum(before, after)) and torch.allclose(bits, coder.bits(finished))
    assert near_pass["near_snapped"] == int((after < before).sum()) >= 1 and bits[0] < 0.5 * before[0]
    # The card says what the pass did: the mean bits per image before it and after it.
    assert near_pass["near_bits_before"] == pytest.approx(float(before.mean()), abs=0.01)
    assert near_pass["near_bits_after"] == pytest.approx(float(bits.mean()), abs=0.01)
    assert near_pass["near_bits_after"] < near_pass["near_bits_before"]
    summary = near_pass_summary({"near": 2, **near_pass})
    assert f"{near_pass['near_snapped']} image(s)" in summary and f"{near_pass['near_bits_before']:.0f} -> " in summary
    assert near_pass_summary({"near": 0, "near_snapped": 0}) is None and near_pass_summary({"near": 2, "near_snapped": 1}) is None
    for row, took in enumerate((after < before).tolist()):
        assert torch.equal(finished[row], snap_to_prediction(images, 2)[row] if took else images[row])
    off = finish_images(images, 0, coder)
    assert off[2] == {"near_snapped": 0} and torch.equal(off[0], images)
    # Any whole number is a number of levels (a float from a config file, a NumPy integer); anything else names near.
    for whole in (2.0, np.int64(2)):
        assert torch.equal(finish_images(images, whole, coder)[0], finished)
    for bad in (1.5, -1, True, "2", math.inf, math.nan, np.bool_(True), 511, 10**30):
        with pytest.raises(ValueError, match="near"):
            finish_images(images, bad, coder)
    # The pass follows the last step, so it is not in the checkpoint's key: a finished run resumes under another near.
    plain = condense(data, **TINY, near=0, checkpoint=tmp_path / "run.ckpt")
    again = condense(data, **TINY, near=2.0, checkpoint=tmp_path / "run.ckpt")
    assert torch.equal(again.images, finish_images(plain.images, 2, coder)[0])
    assert again.settings["near"] == 2 and type(again.settings["near"]) is int
    assert plain.settings["near"] == 0 and plain.settings["near_snapped"] == 0
    assert "near" not in json.loads(torch.load(tmp_path / "run.ckpt", weights_only=True)["run_key"])


@pytest.mark.parametrize(("option", "value"), [
    ("images_per_class", 0), ("lam", -1.0), ("lam", math.nan), ("outer_steps", 0), ("match_steps", 1.5), ("arch", "resnet"),
    ("lr", 0.0), ("real_batch", 0), ("schedule", "step"), ("warmup", 2.0), ("seed", "zero"),
    ("checkpoint_every", 0), ("resolution", 0), ("basis", "yuv"), ("near", -1), ("near", 1.5), ("near", "2"),
])
def test_bad_arguments_name_themselves(data, option, value):
    with pytest.raises((ValueError, TypeError), match=option):
        condense(data, **{**TINY, option: value})


def test_bad_data_is_refused_before_work(data):
    with pytest.raises(ValueError, match="data"):
        condense((data.images[:4], torch.tensor([0, 0, 2, 2])), images_per_class=1, outer_steps=1)  # class 1 has no images
    with pytest.raises(ValueError, match="data"):
        condense((data.images[:4] * 2, data.labels[:4]), images_per_class=1)
    with pytest.raises(TypeError, match="data"):
        condense("not data")


def test_matching_distance_is_zero_for_parallel_gradients():
    g = [torch.randn(4, 3, 3, 3), torch.randn(5), torch.randn(2, 6)]
    assert float(matching_distance(g, [2 * t for t in g])) == pytest.approx(0, abs=1e-6)
    assert float(matching_distance(g, [-t for t in g])) == pytest.approx(2, abs=1e-6)


def test_evaluate_condensed_rows(tiny, data):
    test = testbeds.load("stripes", "test", n=30, seed=0)
    rows = evaluate_condensed(tiny, test, train_data=data, without_bits=tiny, n_models=2, epochs=2)
    assert set(rows) == {"condensed", "without bits term", "random real"}
    for row in rows.values():
        assert len(row["accuracies"]) == 2 and all(0 <= a <= 1 for a in row["accuracies"])
        assert row["images"] == 4 and row["bpd"] > 0 and row["webp_bpd"] > 0 and row["jxl_bpd"] > 0
    with pytest.raises(ValueError, match="n_models"):
        evaluate_condensed(tiny, test, n_models=0)
    with pytest.raises(ValueError, match="test_data"):
        evaluate_condensed(tiny, (test.images[:, :, :16, :16], test.labels))


def _image_folder(root, classes, n=6):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            base = np.full((32, 32, 3), 60 + 120 * c, np.uint8)
            Image.fromarray(np.clip(base + rng.integers(0, 30, base.shape), 0, 255).astype(np.uint8)).save(root / name / f"{i}.png")


@pytest.mark.slow
@pytest.mark.integration
def test_command_line_writes_images_json_report_and_resumes(tmp_path):
    classes = ['a<b>"x', "c&d"]
    _image_folder(tmp_path / "data", classes)
    out = tmp_path / "out"
    args = ["condense", str(tmp_path / "data"), "--out", str(out), "--ipc", "1", "--outer-steps", "1", "--n-models", "1", "--epochs", "1",
            "--held-out", "0.25", "--quiet"]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    results = json.loads((out / "condense.json").read_text())
    assert set(results["sets"]) == {"simplified", "without_bits"}
    assert set(results["evaluation"]) == {"condensed, simplified", "condensed without bits term", "random real subset"}
    assert results["data"]["train_images"] == 9 and results["data"]["test_images"] == 3
    for written in results["sets"].values():
        assert len(written["images"]) == 2 and all((out / f).is_file() for f in written["images"])
        assert (out / written["grid"]).is_file() and (out / written["file"]).is_file()
        assert len(written["bits"]) == len(written["webp_bits"]) == len(written["jxl_bits"]) == 2
    page = (out / "report.html").read_text()
    assert "a&lt;b&gt;&quot;x" in page and "c&amp;d" in page
    assert 'a<b>"x' not in page
    # Rerunning reuses the finished sets and evaluation.
    seconds = results["sets"]["simplified"]["settings"]["wall_seconds_this_run"]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    again = json.loads((out / "condense.json").read_text())
    assert again["sets"]["simplified"]["settings"]["wall_seconds_this_run"] == seconds
    assert again["evaluation"] == results["evaluation"]
    # ``simplebits report`` rebuilds the page from what the run wrote.
    (out / "report.html").unlink()
    res = run_cli("report", str(out))
    assert res.returncode == 0, res.stderr
    assert "c&amp;d" in (out / "report.html").read_text()
    # A bad option fails with one line naming it.
    res = run_cli("condense", str(tmp_path / "data"), "--out", str(tmp_path / "bad"), "--ipc", "0")
    assert res.returncode == 2 and "error: --ipc: " in res.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_command_line_on_grey_images_runs_in_rgb_basis_and_reuses_its_sets(tmp_path):
    # The default basis (luma-chroma) means nothing for one plane: the sets say "rgb", and a rerun must find them.
    _image_folder(tmp_path / "data", ["a", "b"])
    out = tmp_path / "out"
    args = ["condense", str(tmp_path / "data"), "--grayscale", "--out", str(out), "--ipc", "1", "--outer-steps", "1", "--n-models", "1",
            "--epochs", "1", "--held-out", "0.25", "--no-baselines", "--quiet"]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    first = json.loads((out / "condense.json").read_text())["sets"]["simplified"]["settings"]
    assert first["basis"] == "rgb"
    assert run_cli(*args).returncode == 0
    again = json.loads((out / "condense.json").read_text())["sets"]["simplified"]["settings"]
    assert again["wall_seconds_this_run"] == first["wall_seconds_this_run"]  # reused, not condensed again
    # A set saved before the basis existed (no "basis" in its settings) was made in RGB: still reused.
    saved = CondensedSet.load(out / "condensed.pt")
    del saved.settings["basis"]
    saved.save(out / "condensed.pt")
    assert run_cli(*args).returncode == 0
    last = json.loads((out / "condense.json").read_text())["sets"]["simplified"]["settings"]
    assert last["wall_seconds_this_run"] == first["wall_seconds_this_run"]
    # A set saved before the near-lossless pass existed (no "near": made without it) takes the pass alone, not a new run.
    saved = CondensedSet.load(out / "condensed.pt")
    for key in ("near", "near_snapped", "near_bits_before", "near_bits_after"):  # a card from before the option
        saved.settings.pop(key, None)
    dither = torch.rand(saved.images.shape, generator=torch.Generator().manual_seed(0)) < 0.3
    saved.images = (120 + dither.float()) / 255  # flat but dithered by a level: the pass pays
    saved.save(out / "condensed.pt")
    assert run_cli(*args).returncode == 0
    resnapped = CondensedSet.load(out / "condensed.pt")
    assert resnapped.settings["near"] == 2 and resnapped.settings["wall_seconds_this_run"] == first["wall_seconds_this_run"]
    assert torch.equal(resnapped.images, finish_images(saved.images, 2, AnalyticCoder())[0])
    # The report says what the pass did to the set (the dithered image gets cheaper).
    assert resnapped.settings["near_snapped"] >= 1 and resnapped.settings["near_bits_after"] < resnapped.settings["near_bits_before"]
    assert "Near-lossless last step (near 2): " in (out / "report.html").read_text()
    shown = run_cli(*[a for a in args if a != "--quiet"])  # the sets are reused: only the evaluation's table and this line
    line = f"simplified: near-lossless last step (near 2): {resnapped.settings['near_snapped']} image(s) took it"
    assert line in " ".join(shown.stdout.split()), shown.stdout
    # One that differs in another setting is refused, not condensed again over the finished set (it may have taken hours).
    before = (out / "condensed.pt").read_bytes()
    refused = run_cli(*args, "--lam", "0.7")
    assert refused.returncode == 2 and "other settings (lam)" in refused.stderr and "--out" in refused.stderr, refused.stderr
    # and so is another tolerance over a set that took the pass (the pass cannot be undone)
    refused = run_cli(*args, "--near", "0")
    assert refused.returncode == 2 and "other settings (near)" in refused.stderr, refused.stderr
    assert (out / "condensed.pt").read_bytes() == before


@pytest.mark.slow
def test_example_runs(tmp_path):
    """``examples/condense_digits.py`` at a toy size (its defaults take about half an hour)."""
    module = runpy.run_path(str(Path(__file__).resolve().parents[3] / "examples" / "condense_digits.py"))
    rows = module["main"](str(tmp_path / "c.png"), n_train=60, n_test=40, images_per_class=1, outer_steps=1, n_models=1, epochs=1)
    assert set(rows) == {"condensed", "without bits term", "random real"}
    assert (tmp_path / "c.png").is_file() and (tmp_path / "c_without_bits.png").is_file()


def test_unreadable_images_left_out_are_said_even_when_quiet(tmp_path, capsys):
    # they were recorded in condense.json only: the command ended as if every image had been used
    _image_folder(tmp_path / "data", ["a", "b"])
    (tmp_path / "data" / "a" / "broken.png").write_bytes(b"not a png")
    code, err = cli_in_process(capsys, "--quiet", "condense", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--ipc", "1",
                               "--outer-steps", "1", "--n-models", "1", "--epochs", "1", "--held-out", "0.25", "--no-baselines")
    assert code == 0, err
    assert [line for line in err if line.startswith("warning: ")] == [
        "warning: 1 image(s) could not be read and were left out, e.g. a/broken.png "
        "(condense.json: data.skipped)"], err
    # train says it too (its folder holds the count)
    code, err = cli_in_process(capsys, "--quiet", "train", str(tmp_path / "data"), "--out", str(tmp_path / "train"), "--budget", "1",
                               "--epochs", "1", "--batch-size", "4", "--val-n", "4")
    assert code == 0, err
    assert [line for line in err if line.startswith("warning: ")] == [
        "warning: 1 image(s) could not be read and were left out (tradeoff.json: settings.skipped_images)"], err


def test_a_finished_set_made_otherwise_is_refused_not_replaced(tmp_path):
    # condense used to condense again over it; only a set made without the near-lossless pass is finished by the pass alone
    from simplebits_audit.jobs.condense import SET_KEYS, finished_sets
    from simplebits_audit.results import CONDENSED_FILES

    made = {k: 1 for k in SET_KEYS} | {"lam": 0.5, "near": 0}
    for kind, lam in (("simplified", 0.5), ("without_bits", 0.0)):
        CondensedSet(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), torch.ones(2), ["a", "b"], {**made, "lam": lam}).save(
            tmp_path / CONDENSED_FILES[kind])
    wanted = {"simplified": {**made, "near": 2}, "without_bits": {**made, "lam": 0.0, "near": 2}}
    found = finished_sets(tmp_path, wanted)
    assert {kind: due for kind, (_, due) in found.items()} == {"simplified": True, "without_bits": True}  # the pass alone
    assert {kind: due for kind, (_, due) in finished_sets(tmp_path, {"simplified": made}).items()} == {"simplified": False}
    for kind, changed in (("simplified", {"lam": 0.7}), ("without_bits", {"seed": 2}), ("simplified", {"data": "other images"})):
        expected = (rf"^out: .* holds a finished condensed set \({CONDENSED_FILES[kind]}\) with other settings "
                    rf"\({next(iter(changed))}\); rerun with the same ones to resume, or use a new --out$")
        with pytest.raises(ValueError, match=expected):
            finished_sets(tmp_path, {**wanted, kind: {**wanted[kind], **changed}})
    # a set that took the pass is not made again for another tolerance (the pass cannot be undone)
    CondensedSet(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), torch.ones(2), ["a", "b"], {**made, "near": 2}).save(
        tmp_path / CONDENSED_FILES["simplified"])
    with pytest.raises(ValueError, match=r"other settings \(near\)"):
        finished_sets(tmp_path, {"simplified": {**made, "near": 0}})
    assert finished_sets(tmp_path / "empty", wanted) == {}
