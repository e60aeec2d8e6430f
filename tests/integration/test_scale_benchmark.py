"""``benchmarks/scale.py`` (issue #21): its cells, ratios and target verdicts, and a ``--quick`` run end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _scale():
    spec = importlib.util.spec_from_file_location("benchmarks_scale", ROOT / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cells_follow_each_model_sizes():
    scale = _scale()
    grid = scale.cells(["resnet50", "vit_b_16", "radiograph-cnn"], [32, 224, 1024])
    assert grid == [("resnet50", 32), ("resnet50", 224), ("resnet50", 1024), ("vit_b_16", 224),
                    ("radiograph-cnn", 224), ("radiograph-cnn", 1024)]


def test_ratios_and_targets_are_against_ig_of_the_same_cell():
    scale = _scale()
    ig = {"seconds_per_image": 10.0, "extra_mb": 400.0}
    results = {"cells": [
        {"model": "resnet50", "size": 224, "methods": {
            "ig": dict(ig), "ig_bounded": {"seconds_per_image": 12.0, "extra_mb": 100.0},
            "simplebits": {"seconds_per_image": 14.0, "extra_mb": 200.0}, "learned": {"seconds_per_image": 0.5, "extra_mb": 10.0}}},
        {"model": "vit_b_16", "size": 224, "methods": {"ig": dict(ig), "simplebits": {"error": "boom"}}},
    ]}
    scale.ratios(results)
    sb = results["cells"][0]["methods"]["simplebits"]
    assert sb["x_ig"] == pytest.approx(1.4) and sb["mem_x_ig"] == pytest.approx(0.5)
    assert sb["x_ig_bounded"] == pytest.approx(14 / 12) and sb["mem_x_ig_bounded"] == pytest.approx(2.0)
    rows = {r["target"].split(":")[0]: r for r in scale.targets(results)}
    r50 = rows["224 px ResNet-50"]
    assert r50["ig"]["met"] is True and r50["ig_bounded"]["met"] is False  # 2x the bounded IG's memory
    assert rows["learned simplifier 224 px (ResNet-50)"]["ig"]["met"] is False  # 20x faster, not 30x
    assert rows["ViT-B/16 224 px"]["ig"] is None and rows["1024 px single-channel CNN"]["ig"] is None  # an error is not a verdict


@pytest.mark.slow
def test_quick_run_writes_tables_and_json(tmp_path):
    out = tmp_path / "scale.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--quick", "--methods", "ig,gradcam,extremal",
                          "--threads", "1", "--out", str(out)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    for title in ("seconds per image", "peak extra memory", "Issue #21 cost targets", "command: python benchmarks/scale.py --quick"):
        assert title in res.stdout
    data = json.loads(out.read_text())
    assert data["methods"] == ["ig", "gradcam", "extremal"] and data["device"] == "cpu" and data["threads"] == 1
    (cell,) = data["cells"]
    assert (cell["model"], cell["size"]) == ("resnet18", 32)
    for name in ("ig", "gradcam"):
        r = cell["methods"][name]
        assert r["seconds_per_image"] > 0 and r["extra_mb"] >= 0 and r["batch"] == 1
        assert math.isfinite(r["x_ig"])
    assert cell["methods"]["ig"]["x_ig"] == 1.0
    # TorchRay is optional: measured where installed, "not installed" otherwise, never an error.
    assert "seconds_per_image" in cell["methods"]["extremal"] or cell["methods"]["extremal"] == {"skipped": "torchray not installed"}
    assert [t["ig"] for t in data["targets"]] == [None] * 4 and data["quality"] is None


def test_shortcut_images_are_the_scenes_the_shortcut_decides():
    import torch

    from simplebits_audit import testbeds

    scale = _scale()
    constant = lambda x: torch.zeros(len(x), 5)  # noqa: E731 - reads nothing, so nothing decides it
    images, masks = scale.shortcut_images("photo-objects", 32, constant, "softmax")
    assert images.shape == (0, 3, 128, 128) and masks.shape == (0, 1, 128, 128)
    model = testbeds.load_classifier("photo-objects")
    images, masks = scale.shortcut_images("photo-objects", 64, model, "softmax")
    assert len(images) > 0 and masks.flatten(1).any(1).all()  # the shipped classifier reads the stamp
    with torch.no_grad():
        clean = testbeds.load("photo-objects", "test", n=64, seed=scale.SHORTCUT_SEED, variant="absent")
        everywhere = testbeds.load("photo-objects", "test", n=64, seed=scale.SHORTCUT_SEED, variant="everywhere")
        flipped = model(everywhere.images).argmax(1) != model(clean.images).argmax(1)
    assert int(flipped.sum()) == len(images)
    assert torch.equal(everywhere.images[flipped], images)
