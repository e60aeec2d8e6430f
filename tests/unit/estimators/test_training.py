"""Estimator training: a few steps on a tiny folder, an interruption, a resume."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from simplebits_audit import load_estimator, photos
from simplebits_audit.estimators.training import TrainingConfig, train_estimator


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    crops = photos.held_out_crops(6, size=64, seed=2)
    for i, c in enumerate(crops):
        Image.fromarray((c.permute(1, 2, 0) * 255).byte().numpy()).save(folder / f"photo{i}.png")
    return folder


def _config(steps):
    return TrainingConfig(
        arch="pixelcnn", steps=steps, batch_size=4, eval_crops=8, checkpoint_every=2, model_config={"hidden": 8, "n_blocks": 1, "n_mix": 2}
    )


def test_train_interrupt_resume(tiny_folder, tmp_path, monkeypatch):
    out = tmp_path / "est.pt"
    calls = {"n": 0}
    original = photos.CropSampler.sample

    def interrupt_after_three(self, n):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return original(self, n)

    monkeypatch.setattr(photos.CropSampler, "sample", interrupt_after_three)
    with pytest.raises(KeyboardInterrupt):
        train_estimator(out, tiny_folder, _config(6), show_progress=False)
    monkeypatch.setattr(photos.CropSampler, "sample", original)
    state = torch.load(out.with_name("est.pt.state"), weights_only=True)
    assert state["step"] == 2 and not out.exists()

    card = train_estimator(out, tiny_folder, _config(6), resume=True, show_progress=False)
    assert [h["step"] for h in card["history"]] == [2, 4, 6]
    assert json.loads(out.with_suffix(".json").read_text())["steps"] == 6
    est = load_estimator(out)
    assert est.name == "pixelcnn" and not est.training
    assert torch.isfinite(est.bits(torch.rand(1, 3, 8, 8))).all()


def test_training_rejects_bad_arguments(tiny_folder, tmp_path):
    with pytest.raises(ValueError, match="arch"):
        train_estimator(tmp_path / "x.pt", tiny_folder, TrainingConfig(arch="analytic"))
    with pytest.raises(ValueError, match="image_dir"):
        train_estimator(tmp_path / "x.pt", tmp_path / "missing", _config(2))
