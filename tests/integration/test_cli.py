"""The ``simplebits`` command line, run as a user runs it (a subprocess: ``python -m simplebits_audit.cli.main``)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from simplebits_audit import photos

from ..helpers import run_cli as run


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    for i, c in enumerate(photos.held_out_crops(4, size=48, seed=4)):
        Image.fromarray((c.permute(1, 2, 0) * 255).byte().numpy()).save(folder / f"img{i}.png")
    return folder


def test_help_lists_commands():
    res = run("--help")
    assert res.returncode == 0
    for command in ("explain", "compare", "audit", "report", "estimators", "bits", "train-estimator", "demo"):
        assert command in res.stdout


def test_estimators_list_and_card():
    res = run("estimators")
    assert res.returncode == 0 and "analytic" in res.stdout
    card = run("estimators", "analytic")
    assert card.returncode == 0 and "median-edge" in card.stdout.lower()


def test_bits_table(image_folder):
    res = run("bits", str(image_folder / "img0.png"), "--estimator", "analytic")
    assert res.returncode == 0, res.stderr
    assert "WebP" in res.stdout and "48 x 48" in res.stdout


@pytest.mark.parametrize("bad", ["missing.png", "."])
def test_bad_image_is_one_clear_line(bad, tmp_path):
    res = run("bits", str(tmp_path / bad) if bad != "." else str(tmp_path))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "IMAGES" in res.stderr


@pytest.mark.slow
def test_corrupt_image_and_unknown_estimator(tmp_path, image_folder):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    res = run("bits", str(corrupt))
    assert res.returncode == 2 and "not a readable image" in res.stderr
    res = run("bits", str(image_folder / "img0.png"), "--estimator", "nope")
    assert res.returncode == 2 and "error: --estimator: " in res.stderr
    res = run("--debug", "bits", str(corrupt))  # the traceback, then the same line and exit code
    assert res.returncode == 2 and "Traceback" in res.stderr and res.stderr.rstrip().splitlines()[-1].startswith("error: ")
    res = run("bits", str(corrupt), "--debug")  # global options after the command too
    assert res.returncode == 2 and "Traceback" in res.stderr


@pytest.mark.slow
def test_global_options_after_the_command(image_folder):
    res = run("bits", str(image_folder / "img0.png"), "--estimator", "analytic", "--seed", "3", "--device", "cpu", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "48 x 48" in res.stdout
    res = run("bits", str(image_folder / "img0.png"), "--device=nonsense")
    assert res.returncode == 2 and "--device" in res.stderr
    if not torch.cuda.is_available():  # torch's own "no NVIDIA driver" names no option
        res = run("bits", str(image_folder / "img0.png"), "--device", "cuda")
        assert res.returncode == 2 and "--device" in res.stderr and "no CUDA device" in res.stderr, res.stderr
    if not torch.backends.mps.is_available():
        res = run("bits", str(image_folder / "img0.png"), "--device", "mps")
        assert res.returncode == 2 and "--device" in res.stderr and "no MPS device" in res.stderr, res.stderr


def test_hoisting_keeps_command_options_and_values():
    from simplebits_audit.cli.main import hoist_global_options

    args = ["audit", "data/", "--model", "m.ts", "--seed", "4", "-q", "--out", "o", "--device=cuda", "--limit", "3"]
    assert hoist_global_options(args) == ["--seed", "4", "-q", "--device=cuda",
        "audit", "data/", "--model", "m.ts", "--out", "o", "--limit", "3"]
    assert hoist_global_options(["--quiet", "demo", "--debug"]) == ["--quiet", "--debug", "demo"]
    assert hoist_global_options(["bits", "x.png", "--", "--seed"]) == ["bits", "x.png", "--", "--seed"]
    assert hoist_global_options(["--help"]) == ["--help"]


@pytest.mark.slow
def test_train_estimator_then_use_it(image_folder, tmp_path):
    out = tmp_path / "mine.pt"
    res = run("--quiet", "train-estimator", str(image_folder), "--out", str(out),
        "--steps", "2", "--batch-size", "4", "--checkpoint-every", "1")
    assert res.returncode == 0, res.stderr
    assert out.exists() and out.with_suffix(".json").exists()
    res = run("bits", str(image_folder / "img1.png"), "--estimator", str(out))
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """What a user has: a TorchScript model, a pickled one, a non-classifier, images, class names."""
    import torch

    from simplebits_audit import testbeds

    root = tmp_path_factory.mktemp("user")
    data = testbeds.load("digits-on-photos", "test", n=2, seed=5)
    model = testbeds.load_classifier("digits-on-photos")
    torch.jit.save(torch.jit.script(model), str(root / "model.ts"))
    torch.save(model, root / "pickled.pt")
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 4, 3)), str(root / "features.ts"))
    for i, img in enumerate(data.images):
        Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy()).save(root / f"digit{i}.png")
    (root / "labels.json").write_text('["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]')
    (root / "corrupt.png").write_bytes(b"\x89PNG not really")
    return root


@pytest.mark.slow
def test_explain_writes_report_and_rebuilds_it(user_files, tmp_path):
    out = tmp_path / "out"
    images = [str(user_files / "digit0.png"), str(user_files / "digit1.png")]
    res = run("explain", *images, "--model", str(user_files / "model.ts"), "--labels", str(user_files / "labels.json"),
        "--steps", "10", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "digit0.png" in res.stdout and f"report: {out / 'report.html'}" in res.stdout.replace("\n", "")
    assert "Warning" not in res.stderr
    first = (out / "report.html").read_text()
    (out / "report.html").unlink()
    res = run("report", str(out))
    assert res.returncode == 0, res.stderr
    assert (out / "report.html").read_text() == first


@pytest.mark.parametrize(
    "case, expected",
    [
        ("pickle", "--trust-pickle"),
        ("features", "output must be logits of shape (B, classes)"),
        ("corrupt", "not a readable image"),
        ("directory", "is a directory"),
        ("missing", "does not exist"),
        ("target", "--target-name"),
    ],
)
def test_explain_refuses_bad_input_before_writing(user_files, tmp_path, case, expected):
    image, model, extra = str(user_files / "digit0.png"), str(user_files / "model.ts"), []
    if case == "pickle":
        model = str(user_files / "pickled.pt")
    elif case == "features":
        model = str(user_files / "features.ts")
    elif case in ("corrupt", "directory", "missing"):
        image = str(user_files / {"corrupt": "corrupt.png", "directory": ".", "missing": "nope.png"}[case])
    else:
        extra = ["--labels", str(user_files / "labels.json"), "--target-name", "eleven"]
    out = tmp_path / "out"
    res = run("explain", image, "--model", model, "--out", str(out), *extra)
    assert res.returncode == 2, res.stdout + res.stderr
    message = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(message) == 1 and expected in message[0] and "Traceback" not in res.stderr
    assert not out.exists()  # nothing half-written


@pytest.mark.slow
def test_compare_prints_and_writes_the_table(user_files, tmp_path):
    import csv

    out = tmp_path / "cmp"
    images = [str(user_files / "digit0.png"), str(user_files / "digit1.png")]
    res = run("compare", *images, "--model", str(user_files / "model.ts"), "--methods", "simplebits,ig,centre",
        "--steps", "5", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "deletion_auc" in res.stdout and "centre (ref.)" in res.stdout
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["method"] for r in rows] == ["simplebits", "ig", "centre"]
    assert all(float(r["seconds_per_image"]) >= 0 for r in rows)
    res = run("compare", *images, "--model", str(user_files / "model.ts"), "--methods", "simplebits,nope", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "methods" in res.stderr and not (tmp_path / "x").exists()
