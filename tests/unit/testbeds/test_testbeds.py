"""Testbeds: shapes, determinism, held-out photos, ground truth that means what it says, shipped classifiers."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from simplebits_audit import photos, testbeds
from simplebits_audit.testbeds import digits_on_photos, shortcut, stripes

#: the 32 px class-index testbeds (``photo-objects`` and ``faint-regions``, 128 px, have their own tests:
#: test_photo_objects.py, test_faint_regions.py)
NAMES = [name for name in testbeds.list_testbeds() if name not in ("photo-objects", "faint-regions")]
ROOT = Path(__file__).resolve().parents[3]


def _validity():
    spec = importlib.util.spec_from_file_location("benchmarks_testbeds", ROOT / "benchmarks" / "testbeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_registry():
    assert set(testbeds.list_testbeds()) == {
        "digits-on-photos", "stripes", "shortcut", "blended-digits", "twin-digits", "photo-objects", "faint-regions", *testbeds.CUE_AXES,
    }
    assert testbeds.HAS_LOCALISATION == {"digits-on-photos": True, "stripes": False, "shortcut": True, "blended-digits": True,
                                         "twin-digits": True}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split", ["train", "test"])
def test_shapes_dtypes_ranges(name, split):
    data = testbeds.load(name, split, n=12, seed=3)
    assert data.images.shape == (12, 3, 32, 32) and data.images.dtype == torch.float32
    assert data.labels.shape == (12,) and data.labels.dtype == torch.long
    assert data.masks.shape == (12, 1, 32, 32) and data.masks.dtype == torch.bool
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert torch.equal(data.images, (data.images * 255).round() / 255)  # 8-bit values
    assert 0 <= data.labels.min() and data.labels.max() < len(data.classes)
    image, label = data[0]
    assert image.shape == (3, 32, 32) and isinstance(label, int) and len(data) == 12


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_by_seed(name):
    a, b, c = (testbeds.load(name, "test", n=6, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, c.images)


def test_train_and_test_photos_and_digits_are_disjoint():
    assert set(digits_on_photos.TRAIN_BACKGROUNDS).isdisjoint(photos.HELD_OUT)
    assert set(photos.TRAIN_PACKAGE).isdisjoint(photos.HELD_OUT)
    # the pools the generators use: test = the held-out photos, train = the others
    held = {p.shape for p in (photos.load_rgb(q, max_side=512) for q in photos.held_out_photos())}
    for module in (digits_on_photos, stripes):
        assert {p.shape for p in module.photo_pool("test")} == held
        assert not any(any(p.shape == q.shape and (p == q).all() for q in module.photo_pool("test")) for p in module.photo_pool("train"))
    train_glyphs, _ = digits_on_photos.digit_glyphs("train")
    test_glyphs, _ = digits_on_photos.digit_glyphs("test")
    assert len(train_glyphs) + len(test_glyphs) == 1797


def test_digit_masks_nonempty_and_mostly_visible():
    data = testbeds.load("digits-on-photos", "test", n=64, seed=0)
    assert data.has_localisation
    area = data.masks.flatten(1).sum(1)
    assert (area > 0).all()
    # glyph centres are uniform over the canvas: some digits touch the frame, none is mostly cut off
    touches = data.masks[:, 0, [0, -1], :].any(-1).any(-1) | data.masks[:, 0, :, [0, -1]].any(1).any(-1)
    assert 0.2 < touches.float().mean() < 0.9


def test_blended_digits_are_half_glyph_half_photo():
    data = testbeds.load("blended-digits", "test", n=64, seed=0)
    assert data.has_localisation and (data.masks.flatten(1).sum(1) > 0).all()
    # grey glyph: inside the strokes each pixel is 0.5 * photo + 0.5 (white strokes) or 0.5 * photo (black strokes);
    # outside the other way round, so strokes and background differ by about half the range wherever the photo is smooth
    inside = (data.images * data.masks).flatten(1).sum(1) / (3 * data.masks.flatten(1).sum(1))
    outside = (data.images * ~data.masks).flatten(1).sum(1) / (3 * (~data.masks).flatten(1).sum(1))
    assert ((inside - outside).abs() > 0.25).float().mean() > 0.9
    assert 0.3 < ((inside - outside) > 0).float().mean() < 0.7  # white and black strokes alike: brightness does not tell


def test_twin_digits_draw_the_digit_twice_and_either_copy_names_it():
    data = testbeds.load("twin-digits", "test", n=200, seed=0)
    first, second = data.aux_masks["first"], data.aux_masks["second"]
    assert data.has_localisation and torch.equal(data.masks, first | second)
    assert (first.flatten(1).any(1) & second.flatten(1).any(1)).all()  # both copies visible on every image
    # two placements, not one glyph twice: the copies share few of their stroke pixels
    overlap = (first & second).flatten(1).sum(1) / torch.minimum(first.flatten(1).sum(1), second.flatten(1).sum(1))
    assert float(overlap.median()) < 0.2
    # either copy alone names the digit: the shipped classifier, with one copy's strokes replaced by the
    # image's mean colour, still answers the label well above chance (10 %) for each copy
    model = testbeds.load_classifier("twin-digits")
    mean = data.images.mean((2, 3), keepdim=True)
    with torch.no_grad():
        for gone in (first & ~second, second & ~first):
            acc = float((model(torch.where(gone, mean, data.images)).argmax(1) == data.labels).float().mean())
            assert acc > 0.5, acc


def test_stripes_labels_match_orientation():
    data = testbeds.load("stripes", "test", n=64, seed=5)
    assert not data.has_localisation and data.masks.all()
    spectrum = torch.fft.fft2(data.images.mean(1) - data.images.mean((1, 2, 3)).view(-1, 1, 1)).abs()
    low, high = 32 // 8, 32 // 3 + 1  # stripe periods 3-8 px
    along_y = spectrum[:, low:high, 0].amax(1)  # kx = 0: pattern varies along y (horizontal lines)
    along_x = spectrum[:, 0, low:high].amax(1)
    predicted = (along_x > along_y).long()
    assert (predicted == data.labels).float().mean() >= 0.95
    assert 0.3 < data.labels.float().mean() < 0.7


def test_shortcut_marker_in_mask_and_correlated_only_in_train():
    train = testbeds.load("shortcut", "train", n=400, seed=0)
    test = testbeds.load("shortcut", "test", n=400, seed=0)
    for data in (train, test):
        expected = torch.zeros(32, 32, dtype=torch.bool)
        expected[: shortcut.MARKER_SIDE, : shortcut.MARKER_SIDE] = True
        assert (data.masks[:, 0] == expected).all()
        marker = data.images[:, :, : shortcut.MARKER_SIDE, : shortcut.MARKER_SIDE]
        assert (marker == marker[..., :1, :1]).all()  # a flat square
    agree_train = (shortcut.marker_classes(train.images) == train.labels).float().mean()
    agree_test = (shortcut.marker_classes(test.images) == test.labels).float().mean()
    assert agree_train > 0.9 and agree_test < 0.25
    consistent = testbeds.load("shortcut", "test", n=50, variant="consistent")
    assert (shortcut.marker_classes(consistent.images) == consistent.labels).all()
    absent = testbeds.load("shortcut", "test", n=5, variant="absent")
    assert not absent.masks.any()
    weak = testbeds.load("shortcut", "train", n=1000, variant="weak")  # the marker names the label in 70 % of images
    agree_weak = float((shortcut.marker_classes(weak.images) == weak.labels).float().mean())
    assert abs(agree_weak - shortcut.WEAK_AGREEMENT) < 0.05
    assert torch.equal(weak.images[:, :, 8:], testbeds.load("shortcut", "train", n=1000).images[:, :, 8:])  # only the marker differs


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"name": "nope"}, "name"), ({"name": "stripes", "split": "val"}, "split"), ({"name": "stripes", "n": 0}, "n"),
     ({"name": "stripes", "variant": "shuffled"}, "variant"), ({"name": "shortcut", "variant": "odd"}, "variant")],
)
def test_errors_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=rf"^{argument}:"):
        testbeds.load(**kwargs)


def test_unknown_classifier_names_the_argument():
    with pytest.raises(ValueError, match="^name:"):
        testbeds.load_classifier("nope")
    with pytest.raises(ValueError, match="^name:"):
        testbeds.classifier_card("nope")


@pytest.mark.parametrize("name", [*NAMES, "faint-regions"])
def test_shipped_classifier_reaches_its_card_accuracy(name):
    card = testbeds.classifier_card(name)
    model = testbeds.load_classifier(name)
    assert not model.training and sum(p.numel() for p in model.parameters()) == card["parameters"]
    data = testbeds.load(name, "test", n=200, seed=0)
    with torch.no_grad():
        acc = float((model(data.images).argmax(1) == data.labels).float().mean())
    # 200 images: binomial standard error <= 0.035; allow 3.5 of them (a false alarm about 1 in 2000)
    p = card["test_accuracy"]
    assert abs(acc - p) <= 3.5 * math.sqrt(p * (1 - p) / 200) + 0.01, (acc, p)


@pytest.mark.parametrize("name", ["digits-on-photos", "blended-digits", "twin-digits"])
def test_trivial_maps_do_not_localise_digits(name):
    validity = _validity()
    data = testbeds.load(name, "test", n=64, seed=validity.EVAL_SEED)
    scores = {k: validity.mean_auroc(v, data.masks) for k, v in validity.trivial_maps(data.images).items()}
    assert all(v <= 0.65 for v in scores.values()), scores


def test_design_and_report_testbeds_split_the_registry():
    # A default chosen on a testbed must not be judged on it (issue #23): the two sets never overlap,
    # and every testbed is in one of them, so a new testbed has to be placed.
    design, report = set(testbeds.DESIGN_TESTBEDS), set(testbeds.REPORT_TESTBEDS)
    assert not design & report
    assert design | report == set(testbeds.TESTBEDS)
    for name in ("radiograph", "photo-objects", "colour-cue", "texture-cue", "shape-cue"):  # the heads, real-sizes, information issues
        assert name in report
