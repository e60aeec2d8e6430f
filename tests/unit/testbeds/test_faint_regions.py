"""``faint-regions``: the 128 px design testbed (issue #23): shapes, labels that mean what they say, held-out photos."""

from __future__ import annotations

import pytest
import torch

from simplebits_audit import testbeds
from simplebits_audit.testbeds import faint_regions


@pytest.fixture(scope="module")
def data():
    return testbeds.load("faint-regions", "test", n=30, seed=2)


def test_shapes_ranges_and_8bit_values(data):
    assert data.images.shape == (30, 3, 128, 128) and data.images.dtype == torch.float32
    assert data.labels.shape == (30,) and set(data.labels.tolist()) <= {0, 1, 2}
    assert data.masks.shape == (30, 1, 128, 128) and data.masks.dtype == torch.bool
    assert torch.equal(data.images, (data.images * 255).round() / 255)
    assert data.classes == faint_regions.CLASSES and "faint-regions" in testbeds.DESIGN_TESTBEDS


def test_mask_is_the_region_and_its_sign_follows_the_label(data):
    # The same draw without regions: the difference is the region, its sign the label's.
    n, seed = 30, 2
    flat = faint_regions.STRENGTH
    try:
        faint_regions.STRENGTH = (0.0, 0.0)
        plain = faint_regions.generate(n, "test", seed)[0]
    finally:
        faint_regions.STRENGTH = flat
    diff = (data.images - plain).mean(1, keepdim=True)
    for i in range(n):
        label, mask = int(data.labels[i]), data.masks[i]
        if label == 0:
            assert not mask.any() and diff[i].abs().max() == 0
            continue
        assert mask.any()
        inside = float(diff[i][mask].mean())
        assert inside * (1 if label == 1 else -1) >= flat[0] * 0.6, (i, label, inside)
        assert float(diff[i][~mask].abs().mean()) < abs(inside) / 3  # the change lies in the mask


def test_deterministic_by_seed_and_split():
    a, b, c = (testbeds.load("faint-regions", "test", n=4, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    train = testbeds.load("faint-regions", "train", n=4, seed=1)
    assert not torch.equal(train.images, a.images)


def test_shipped_classifier_takes_128_px_and_names_three_classes():
    # its accuracy against the card: test_testbeds.py's test_shipped_classifier_reaches_its_card_accuracy
    config = testbeds.classifier_card("faint-regions")["config"]
    assert config["size"] == 128 and config["n_classes"] == 3
