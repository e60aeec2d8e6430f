"""The sigmoid-head testbeds: ``radiograph`` (synthetic chest radiographs with a marker shortcut) and
``digits-stripes`` (multi-label), and their shipped classifiers."""

from __future__ import annotations

import importlib.util
import math
from functools import cache
from pathlib import Path

import pytest
import torch

from simplebits_audit import testbeds
from simplebits_audit.testbeds import radiograph

ROOT = Path(__file__).resolve().parents[3]
S = radiograph.SIZE
M = radiograph.MARKER_SIDE


def _validity():
    spec = importlib.util.spec_from_file_location("benchmarks_testbeds", ROOT / "benchmarks" / "testbeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def _load(name: str, split: str, n: int, seed: int, variant: str | None = None) -> testbeds.Testbed:
    return testbeds.load(name, split, n=n, seed=seed, variant=variant)


def test_registry_and_listing():
    assert testbeds.SIGMOID_HEADS == {"radiograph": 1, "digits-stripes": 2}
    assert testbeds.TESTBEDS["radiograph"][1] == ["no effusion", "effusion"]
    assert testbeds.TESTBEDS["radiograph"][2] == {"train": 4000, "test": 500}
    assert testbeds.TESTBEDS["digits-stripes"][1] == ["digit", "stripes"]
    # the jobs list (class indices) leaves the sigmoid testbeds out; they are listed on request
    assert not set(testbeds.list_testbeds()) & set(testbeds.SIGMOID_HEADS)
    assert testbeds.list_testbeds("sigmoid") == ["digits-stripes", "radiograph"]
    assert set(testbeds.list_testbeds(None)) == set(testbeds.TESTBEDS)
    with pytest.raises(ValueError, match="^head:"):
        testbeds.list_testbeds("logistic")
    with pytest.raises(ValueError, match="^variant:"):
        testbeds.load("radiograph", "test", n=2, variant="odd")
    with pytest.raises(ValueError, match="^variant:"):
        testbeds.load("digits-stripes", "test", n=2, variant="shuffled")
    # the other testbeds carry no auxiliary masks
    assert testbeds.load("shortcut", "test", n=2).aux_masks is None


@pytest.mark.parametrize("split", ["train", "test"])
def test_radiograph_shapes_ranges(split):
    data = _load("radiograph", split, 8, 3)
    assert data.images.shape == (8, 1, S, S) and data.images.dtype == torch.float32
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert torch.equal(data.images, (data.images * 255).round() / 255)  # 8-bit values
    assert data.labels.shape == (8,) and data.labels.dtype == torch.long and set(data.labels.tolist()) <= {0, 1}
    assert data.masks.shape == (8, 1, S, S) and data.masks.dtype == torch.bool
    assert data.has_localisation and data.classes == ["no effusion", "effusion"]
    assert set(data.aux_masks) == {"marker"}
    marker = data.aux_masks["marker"]
    assert marker.shape == (8, 1, S, S) and marker.dtype == torch.bool
    image, label = data[0]
    assert image.shape == (1, S, S) and isinstance(label, int) and len(data) == 8
    # a chest, not noise: dark lungs and background, bright mediastinum / spine along the middle column
    centre = data.images[:, 0, 30:90, 60:68].mean()
    sides = data.images[:, 0, 30:70, [28, 36, 92, 100]].mean()
    assert centre > sides + 0.1


def test_radiograph_deterministic_and_variants_share_the_anatomy():
    a, b, c = (_load("radiograph", "test", 6, s) for s in (1, 1, 2))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.masks, b.masks)
    assert torch.equal(a.aux_masks["marker"], b.aux_masks["marker"])
    assert not torch.equal(a.images, c.images)
    # every variant of one (n, split, seed): the same labels and opacity, pixels differ only inside the marker
    base = _load("radiograph", "test", 20, 4, "consistent")
    box = base.aux_masks["marker"]
    for variant in ("shuffled", "opposite", "absent", "correlated"):
        other = _load("radiograph", "test", 20, 4, variant)
        assert torch.equal(other.labels, base.labels) and torch.equal(other.masks, base.masks)
        assert torch.equal(other.images[~box], base.images[~box]), variant
    assert not torch.equal(_load("radiograph", "test", 20, 4, "opposite").images, base.images)


def test_radiograph_opacity_masks_only_for_positives():
    data = _load("radiograph", "test", 64, 0)
    area = data.masks.flatten(1).sum(1)
    assert ((area > 0) == (data.labels == 1)).all()
    assert 0.3 < data.labels.float().mean() < 0.7
    pos = data.labels == 1
    assert area[pos].float().median() >= 100 and area[pos].float().max() < 0.15 * S * S
    # basal: the opacity lies in the lower half of the frame, never in the marker
    rows = torch.arange(S).view(1, 1, S, 1).float()
    centre_row = (data.masks * rows).flatten(1).sum(1)[pos] / area[pos]
    assert (centre_row > S / 2).all()
    assert not (data.masks & data.aux_masks["marker"]).any()


def test_radiograph_opacity_is_a_subtle_brightening_inside_its_mask():
    """The anatomy drawn twice from one random state, once with and once without the opacity (every draw
    is made for every image, whatever its label): the difference is the opacity alone."""
    import numpy as np

    with radiograph._one_thread():
        with_opacity, masks = radiograph._anatomy(np.random.default_rng(5), torch.ones(32, dtype=torch.long))
        without, no_masks = radiograph._anatomy(np.random.default_rng(5), torch.zeros(32, dtype=torch.long))
    diff = with_opacity - without
    assert not no_masks.any() and (masks.flatten(1).sum(1) > 0).all()
    assert diff.min() >= 0  # a brightening, nothing darker
    inside = (diff * masks).flatten(1).sum(1) / masks.flatten(1).sum(1)
    assert inside.min() > 0.01 and 0.05 < inside.mean() < 0.2 and inside.max() < 0.3  # subtle, some faint
    share = (diff * masks).flatten(1).sum(1) / diff.flatten(1).sum(1)
    assert share.mean() > 0.5  # most of the change lies inside the mask (the rest: its soft edges)


def test_radiograph_marker_is_a_corner_token():
    data = _load("radiograph", "test", 64, 0)
    marker = data.aux_masks["marker"][:, 0]
    assert (marker.flatten(1).sum(1) == M * M).all()
    lo, hi = radiograph.MARKER_GAP
    for i in range(len(data)):
        where = marker[i].nonzero()
        r0, c0 = (int(v) for v in where.min(0).values)
        r1, c1 = (int(v) for v in where.max(0).values)
        assert (r1 - r0 + 1, c1 - c0 + 1) == (M, M)  # one square box
        near_row = lo <= r0 <= hi or lo <= S - 1 - r1 <= hi
        near_col = lo <= c0 <= hi or lo <= S - 1 - c1 <= hi
        assert near_row and near_col, (r0, c0)  # in a corner, a few pixels from both edges
        token = data.images[i, 0, r0 : r1 + 1, c0 : c1 + 1]
        assert token.max() - token.min() > 0.3  # a bright glyph on a dark plate
    corners = {(bool(marker[i, : S // 2].any()), bool(marker[i, :, : S // 2].any())) for i in range(len(data))}
    assert len(corners) == 4  # all four corners occur
    assert not _load("radiograph", "test", 5, 0, "absent").aux_masks["marker"].any()


def test_radiograph_marker_letter_follows_the_variant():
    read = radiograph.marker_letters
    train = _load("radiograph", "train", 300, 0)
    test = _load("radiograph", "test", 300, 0)
    agree_train = float((read(train.images, train.aux_masks["marker"]) == train.labels).float().mean())
    agree_test = float((read(test.images, test.aux_masks["marker"]) == test.labels).float().mean())
    expected = radiograph.TRAIN_AGREEMENT + (1 - radiograph.TRAIN_AGREEMENT) / 2
    assert abs(agree_train - expected) < 0.07, agree_train  # correlated in train
    assert abs(agree_test - 0.5) < 0.1, agree_test  # shuffled in test: independent of the label
    consistent = _load("radiograph", "test", 20, 4, "consistent")
    opposite = _load("radiograph", "test", 20, 4, "opposite")
    assert (read(consistent.images, consistent.aux_masks["marker"]) == consistent.labels).all()
    assert (read(opposite.images, opposite.aux_masks["marker"]) == 1 - opposite.labels).all()


def test_radiograph_trivial_maps_do_not_localise_the_opacity():
    validity = _validity()
    data = _load("radiograph", "test", 200, validity.EVAL_SEED)
    pos = data.labels == 1
    scores = {k: validity.mean_auroc(v[pos], data.masks[pos]) for k, v in validity.trivial_maps(data.images).items()}
    assert scores["brightness"] < 0.65 and scores["max channel"] < 0.65, scores
    assert scores["centre Gaussian"] < 0.75 and abs(scores["random"] - 0.5) < 0.05, scores
    # negatives: AUROC is undefined (empty mask), so they drop out of the mean
    assert validity.auroc(data.images[~pos][:3], data.masks[~pos][:3]).isnan().all()


def test_multilabel_shapes_labels_and_masks():
    data = _load("digits-stripes", "test", 64, 0)
    assert data.images.shape == (64, 3, 32, 32) and 0 <= data.images.min() and data.images.max() <= 1
    assert torch.equal(data.images, (data.images * 255).round() / 255)
    assert data.labels.shape == (64, 2) and data.labels.dtype == torch.long
    assert {tuple(r) for r in data.labels.tolist()} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert ((data.masks.flatten(1).sum(1) > 0) == (data.labels[:, 0] == 1)).all()
    image, label = data[0]
    assert image.shape == (3, 32, 32) and isinstance(label, torch.Tensor) and torch.equal(label, data.labels[0])
    again = _load("digits-stripes", "test", 64, 0)
    assert torch.equal(again.images, testbeds.load("digits-stripes", "test", n=64, seed=0).images)
    assert not torch.equal(data.images, _load("digits-stripes", "test", 64, 1).images)
    # stripes present: a peak at the stripe frequencies (period 3-8 px) along x or y, absent otherwise
    spectrum = torch.fft.fft2(data.images.mean(1) - data.images.mean((1, 2, 3)).view(-1, 1, 1)).abs()
    low, high = 32 // 8, 32 // 3 + 1
    peak = torch.maximum(spectrum[:, low:high, 0].amax(1), spectrum[:, 0, low:high].amax(1))
    with_stripes, without = peak[data.labels[:, 1] == 1], peak[data.labels[:, 1] == 0]
    assert (with_stripes.view(-1, 1) > without.view(1, -1)).float().mean() > 0.9


def test_train_classifier_sigmoid_head():
    x = torch.rand(8, 1, 32, 32)
    model = testbeds.train_classifier(x, torch.randint(0, 2, (8,)), head="sigmoid", epochs=1, batch_size=8, early_pool=True, width=4)
    assert model.config["n_classes"] == 1 and model(x).shape == (8, 1)
    three = torch.randint(0, 2, (8, 3))
    model = testbeds.train_classifier(x, three, head="sigmoid", epochs=1, batch_size=8, pools=4, width=4, input_pool=2)
    assert model.config["pools"] == 4 and model.config["input_pool"] == 2 and model(x).shape == (8, 3)
    assert model.head.in_features == 2 * 4 * 1  # 32 px / 2 (input pool) / 2**4 (poolings) = a 1x1 map
    assert "pools" not in testbeds.SmallCNN().config  # the default layout's config is as before
    with pytest.raises(ValueError, match="^head:"):
        testbeds.train_classifier(x, torch.zeros(24, dtype=torch.long), head="tanh")
    with pytest.raises(ValueError, match="^labels:"):
        testbeds.train_classifier(x, torch.full((24,), 2), head="sigmoid")
    with pytest.raises(ValueError, match="^pools:"):
        testbeds.SmallCNN(size=32, pools=6)


@pytest.mark.parametrize("name", ["radiograph", "digits-stripes"])
def test_shipped_sigmoid_classifier_reaches_its_card(name):
    validity = _validity()
    card = testbeds.classifier_card(name)
    model = testbeds.load_classifier(name)
    assert card["head"] == "sigmoid" and card["outputs"] == testbeds.SIGMOID_HEADS[name]
    assert not model.training and sum(p.numel() for p in model.parameters()) == card["parameters"]
    data = _load(name, "test", 200, 0)
    with torch.no_grad():
        out = model(data.images)
    assert out.shape == (200, testbeds.SIGMOID_HEADS[name])
    acc = validity.accuracy(model, data.images, data.labels)
    p = card["test_accuracy"]
    # 200 images: allow 3.5 binomial standard errors (multi-label: per-label accuracy, counted as 200 trials)
    assert abs(acc - p) <= 3.5 * math.sqrt(p * (1 - p) / 200) + 0.01, (acc, p)
    assert p >= 0.9


def test_shipped_radiograph_classifier_reads_the_marker_partly():
    """The card's marker reliance, on a sample: the letter shifts P(effusion), yet the opacity decides
    most images (accuracy with the opposite letter stays far above chance)."""
    card = testbeds.classifier_card("radiograph")["marker_reliance"]
    model = testbeds.load_classifier("radiograph")
    consistent = _load("radiograph", "test", 200, 5, "consistent")
    opposite = _load("radiograph", "test", 200, 5, "opposite")
    with torch.no_grad():
        p_con = torch.sigmoid(model(consistent.images)[:, 0])
        p_opp = torch.sigmoid(model(opposite.images)[:, 0])
    sign = 2 * consistent.labels.float() - 1
    shift = float((sign * (p_con - p_opp)).mean())  # P(effusion | "R") - P(effusion | "L"), same images
    assert card["P(effusion) shift, marker R minus L"] > 0.03 and shift > 0.02, (shift, card)
    acc_con = float(((p_con > 0.5).long() == consistent.labels).float().mean())
    acc_opp = float(((p_opp > 0.5).long() == opposite.labels).float().mean())
    assert acc_con > acc_opp > 0.7, (acc_con, acc_opp)
