"""``--gradcam-layer`` reaches Grad-CAM through explain and audit; a stem layer is refused before any work (issue #19, finding 7)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from simplebits_audit import testbeds

from ..helpers import run_cli


def _digit_png(tmp_path):
    image = testbeds.load("digits-on-photos", "test", n=1, seed=0).images[0]
    path = tmp_path / "digit.png"
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_explain_takes_a_gradcam_layer_and_refuses_the_stem(tmp_path):
    png = _digit_png(tmp_path)
    common = ["explain", str(png), "--model", "testbed:digits-on-photos", "--baselines", "gradcam", "--steps", "2", "--quiet"]
    stem = run_cli(*common, "--gradcam-layer", "features.0", "--out", str(tmp_path / "stem"))
    assert stem.returncode == 2 and "layer" in stem.stderr, stem.stderr
    assert not (tmp_path / "stem" / "results.json").exists()
    maps = {}
    for name, extra in (("default", []), ("middle", ["--gradcam-layer", "features.8"])):
        res = run_cli(*common, *extra, "--out", str(tmp_path / name))
        assert res.returncode == 0, res.stderr
        folder = next((tmp_path / name / "images").iterdir())
        maps[name] = np.load(folder / "arrays.npz")["map_gradcam"]
        json.loads((tmp_path / name / "results.json").read_text())
    assert maps["default"].shape == maps["middle"].shape
    assert not np.allclose(maps["default"], maps["middle"])
