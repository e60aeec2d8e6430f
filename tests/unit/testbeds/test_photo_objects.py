"""``photo-objects`` (issue #21): 128 px objects on photos, the text-stamp shortcut, the shipped mobilenet_v3_small."""

from __future__ import annotations

import math
from importlib import resources

import pytest
import torch

from simplebits_audit import photos, testbeds
from simplebits_audit.testbeds import photo_objects

NAME = "photo-objects"
SIZE = photo_objects.SIZE
STAMP_CLASS = photo_objects.CLASSES.index(photo_objects.STAMP_CLASS)


def test_registered_with_variants():
    assert NAME in testbeds.list_testbeds() and testbeds.TESTBEDS[NAME][1] == photo_objects.CLASSES
    assert testbeds.VARIANTS[NAME] == photo_objects.VARIANTS
    with pytest.raises(ValueError, match="^variant:"):
        testbeds.load(NAME, "test", n=2, variant="opposite")


@pytest.mark.parametrize("split", ["train", "test"])
def test_shapes_ranges_and_balanced_classes(split):
    data = testbeds.load(NAME, split, n=20, seed=3)
    assert data.images.shape == (20, 3, SIZE, SIZE) and data.images.dtype == torch.float32
    assert data.labels.shape == (20,) and data.labels.dtype == torch.long
    assert data.masks.shape == (20, 1, SIZE, SIZE) and data.masks.dtype == torch.bool
    assert data.aux_masks["stamp"].shape == (20, 1, SIZE, SIZE) and data.aux_masks["stamp"].dtype == torch.bool
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert torch.equal(data.images, (data.images * 255).round() / 255)  # 8-bit values
    assert torch.equal(data.labels.bincount(), torch.full((5,), 4))
    assert data.has_localisation and data.variant is None


def test_deterministic_by_split_n_seed():
    a, b, c = (testbeds.load(NAME, "test", n=5, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) and torch.equal(a.aux_masks["stamp"], b.aux_masks["stamp"])
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.images, testbeds.load(NAME, "train", n=5, seed=1).images)


def test_train_and_test_use_disjoint_photos():
    assert set(photos.TRAIN_PACKAGE).isdisjoint(photos.HELD_OUT)
    test_pyramid = photo_objects.crop_sampler("test", 0).pyramid
    train_pyramid = photo_objects.crop_sampler("train", 0).pyramid
    assert not any(p.shape == q.shape and (p == q).all() for p in test_pyramid for q in train_pyramid)


@pytest.mark.parametrize("label", range(5))
def test_object_alpha_has_the_shape_area(label):
    r = 24.0
    alpha = photo_objects.object_alpha(label, 64.0, 64.0, r, 0.3)
    area = float(alpha.sum())
    star_area = 5 * r * r * photo_objects.STAR_INNER * math.sin(math.pi / 5)  # 10 triangles of sides r and inner r
    a, b = photo_objects.CROSS_ARM, math.sqrt(1 - photo_objects.CROSS_ARM**2)
    expected = [math.pi * r * r, math.pi * r * r * (1 - photo_objects.RING_INNER**2), star_area,
                r * r * (4 * a * b * 2 - 4 * a * a), 3 * math.sqrt(3) / 4 * r * r][label]
    assert area == pytest.approx(expected, rel=0.02)
    assert ((alpha > 0) & (alpha < 1)).any()  # anti-aliased edge
    if label == photo_objects.CLASSES.index("ring"):
        assert alpha[64, 64] == 0  # the hole
    else:
        assert alpha[64, 64] == 1


def test_masks_cover_the_object_and_differ_from_the_background():
    data = testbeds.load(NAME, "test", n=40, seed=0, variant="absent")
    area = data.masks.flatten(1).sum(1).float()
    assert (area > 0).all()
    r_lo, r_hi = photo_objects.RADII
    smallest = 5 * r_lo**2 * photo_objects.STAR_INNER * math.sin(math.pi / 5)
    assert (area >= 0.6 * smallest).all() and (area <= math.pi * r_hi**2 * 1.02).all()  # at most 40 % of a radius leaves the frame
    # the object's pixels are a different texture and colour: mean inside differs from the ring just outside
    outside = torch.nn.functional.max_pool2d(data.masks.float(), 9, 1, 4).bool() & ~data.masks
    inside_mean = (data.images * data.masks).sum((2, 3)) / data.masks.sum((2, 3))
    outside_mean = (data.images * outside).sum((2, 3)) / outside.sum((2, 3))
    assert ((inside_mean - outside_mean).abs().amax(1) > 0.05).float().mean() > 0.8


def test_stamp_variants():
    n = 500
    train = testbeds.load(NAME, "train", n=n, seed=0)
    present = train.aux_masks["stamp"].flatten(1).any(1)
    own = train.labels == STAMP_CLASS
    assert abs(float(present[own].float().mean()) - photo_objects.STAMP_RATE_CLASS) < 0.1
    assert float(present[~own].float().mean()) < photo_objects.STAMP_RATE_OTHER + 0.04
    test = testbeds.load(NAME, "test", n=n, seed=0)
    shuffled = test.aux_masks["stamp"].flatten(1).any(1)
    own = test.labels == STAMP_CLASS
    assert 0.4 < float(shuffled.float().mean()) < 0.6 and abs(float(shuffled[own].float().mean() - shuffled[~own].float().mean())) < 0.15
    consistent = testbeds.load(NAME, "test", n=60, seed=0, variant="consistent")
    assert torch.equal(consistent.aux_masks["stamp"].flatten(1).any(1), consistent.labels == STAMP_CLASS)
    absent = testbeds.load(NAME, "test", n=60, seed=0, variant="absent")
    everywhere = testbeds.load(NAME, "test", n=60, seed=0, variant="everywhere")
    assert not absent.aux_masks["stamp"].any() and everywhere.aux_masks["stamp"].flatten(1).any(1).all()
    # the variants share the scene: identical outside the stamp, changed inside it
    stamp = everywhere.aux_masks["stamp"]
    assert torch.equal(absent.images * ~stamp, everywhere.images * ~stamp) and torch.equal(absent.masks, everywhere.masks)
    changed = ((absent.images - everywhere.images).abs().amax(1, keepdim=True) > 0.1) & stamp
    assert (changed.flatten(1).sum(1) > 20).all()
    # one box, in the bottom-right corner, of the rendered stamp's size
    h, w = photo_objects.stamp_alphas()[0].shape
    rows, cols = stamp.any(3)[:, 0], stamp.any(2)[:, 0]
    assert (rows.sum(1) == h).all() and (cols.sum(1) == w).all() and (stamp.flatten(1).sum(1) == h * w).all()
    lo, hi = photo_objects.STAMP_GAP
    bottom = SIZE - 1 - rows.float().mul(torch.arange(SIZE)).amax(1)
    assert ((bottom >= lo) & (bottom <= hi)).all()


def test_build_classifier_refuses_unknown_architectures():
    with pytest.raises(ValueError, match="^arch:"):
        testbeds.build_classifier("os.system", {})
    assert isinstance(testbeds.build_classifier("small_cnn", {"n_classes": 3}), testbeds.SmallCNN)


def test_shipped_classifier_is_a_float32_mobilenet_in_eval_mode():
    import torchvision

    card = testbeds.classifier_card(NAME)
    model = testbeds.load_classifier(NAME)
    assert isinstance(model, torchvision.models.MobileNetV3) and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == card["parameters"] and card["arch"] == "mobilenet_v3_small"
    weights = resources.files("simplebits_audit.testbeds") / "weights" / f"{NAME}.pt"
    assert weights.stat().st_size <= 15e6  # issue #21: shipped weights at most 15 MB (stored as float16)
    with resources.as_file(weights) as path:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["arch"] == "mobilenet_v3_small" and ckpt["state_dict"]["classifier.3.weight"].dtype == torch.float16


def test_shipped_classifier_reaches_its_card_accuracy():
    card = testbeds.classifier_card(NAME)
    model = testbeds.load_classifier(NAME)
    data = testbeds.load(NAME, "test", n=200, seed=0)
    with torch.no_grad():
        acc = float((model(data.images).argmax(1) == data.labels).float().mean())
    p = card["test_accuracy"]
    assert abs(acc - p) <= 3.5 * math.sqrt(p * (1 - p) / 200) + 0.01, (acc, p)
