"""The ``simplebits`` console script, run as a user runs it (a subprocess)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from simplebits_audit import photos

SCRIPT = shutil.which("simplebits", path=str(Path(sys.executable).parent)) or shutil.which("simplebits")
pytestmark = pytest.mark.skipif(SCRIPT is None, reason="console script not installed")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    for i, c in enumerate(photos.held_out_crops(4, size=48, seed=4)):
        Image.fromarray((c.permute(1, 2, 0) * 255).byte().numpy()).save(folder / f"img{i}.png")
    return folder


def test_help_lists_commands():
    res = run("--help")
    assert res.returncode == 0
    for command in ("estimators", "bits", "train-estimator", "demo"):
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


def test_corrupt_image_and_unknown_estimator(tmp_path, image_folder):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    res = run("bits", str(corrupt))
    assert res.returncode == 2 and "not a readable image" in res.stderr
    res = run("bits", str(image_folder / "img0.png"), "--estimator", "nope")
    assert res.returncode == 2 and "name_or_path" in res.stderr
    res = run("--debug", "bits", str(corrupt))
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_train_estimator_then_use_it(image_folder, tmp_path):
    out = tmp_path / "mine.pt"
    res = run("--quiet", "train-estimator", str(image_folder), "--out", str(out), "--steps", "2", "--batch-size", "4", "--checkpoint-every", "1")
    assert res.returncode == 0, res.stderr
    assert out.exists() and out.with_suffix(".json").exists()
    res = run("bits", str(image_folder / "img1.png"), "--estimator", str(out))
    assert res.returncode == 0, res.stderr
