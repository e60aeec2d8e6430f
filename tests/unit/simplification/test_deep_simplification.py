"""Simplification must go deep: these tests fail if ``simplify`` returns its input or a near-copy."""

from __future__ import annotations

import math

import pytest
import torch

from simplebits_audit import simplify, testbeds
from simplebits_audit.codecs import codec_bits
from simplebits_audit.simplification.heads import Decision


@pytest.fixture(scope="module")
def shortcut_batch():
    data = testbeds.load("shortcut", "test", n=16, seed=5)
    return testbeds.load_classifier("shortcut"), data


@pytest.fixture(scope="module")
def digits_batch():
    data = testbeds.load("digits-on-photos", "test", n=16, seed=5)
    return testbeds.load_classifier("digits-on-photos"), data


@pytest.fixture(scope="module")
def digits_result(digits_batch):
    model, data = digits_batch
    return simplify(model, data.images, seed=0)


def test_default_is_the_mask_engine(digits_result):
    assert digits_result.settings["parameterization"] == "mask"
    assert digits_result.mask is not None and digits_result.mask.shape == (16, 1, 32, 32)
    assert len(digits_result.path_labels) == digits_result.path_bits.shape[0]


@pytest.mark.slow
@pytest.mark.parametrize("batch", ["digits_batch", "shortcut_batch"])
def test_most_images_lose_most_of_their_bits_per_image(batch, request):
    model, data = request.getfixturevalue(batch)
    result = simplify(model, data.images, seed=0)
    bits_ratio = result.bits_after / result.bits_before
    webp_ratio = codec_bits(result.simplified) / codec_bits(result.original)
    # Per image, not summed: at least 12 of 16 images keep under 60% of their bits, by both measures.
    assert int((bits_ratio < 0.6).sum()) >= 12, bits_ratio
    assert int((webp_ratio < 0.6).sum()) >= 12, webp_ratio
    assert bool(result.kept.all())
    # The answer is a simplified image, not the original (lambda 0) on most images.
    assert int((result.lambda_chosen > 0).sum()) >= 12


def test_returned_image_is_the_simplest_kept_snapshot_on_the_path(digits_result):
    r = digits_result
    score = torch.where(r.path_kept, r.path_bits, torch.full_like(r.path_bits, math.inf))
    simplest = score.min(0).values
    assert torch.allclose(r.bits_after, simplest, rtol=1e-4)
    chosen = score.argmin(0)
    for i in range(len(r)):
        assert torch.equal((r.simplified[i] * 255).round().to(torch.uint8), r.path_images[chosen[i], i])


def test_looser_keep_is_never_more_complex_on_the_same_path(digits_result):
    r = digits_result
    probs_before = r.probs_before
    prob_before = probs_before.gather(1, r.target[:, None])[:, 0]
    target_prob = r.path_target_prob  # (S, B)
    bits = []
    for keep in (0.5, 0.9):
        ok = target_prob >= keep * prob_before
        bits.append(torch.where(ok, r.path_bits, torch.full_like(r.path_bits, math.inf)).min(0).values)
    assert bool((bits[0] <= bits[1]).all())


@pytest.mark.slow
def test_looser_keep_runs_are_never_more_complex(digits_batch):
    model, data = digits_batch
    loose = simplify(model, data.images, keep=0.5, seed=0)
    strict = simplify(model, data.images, keep=0.9, seed=0)
    prob_before = strict.probs_before.gather(1, strict.target[:, None])[:, 0]
    assert bool((strict.probs_after.gather(1, strict.target[:, None])[:, 0] >= 0.9 * prob_before - 1e-6).all())
    # Both runs walk the same path (the bits gate does not depend on keep): per image, never more complex.
    assert bool((loose.bits_after <= strict.bits_after + 1e-3).all())


def test_keep_rule_is_what_the_path_reports(digits_result):
    r = digits_result
    decision = Decision.of(r.probs_before.log(), r.target)
    # path_kept of the original row is the rule applied to the original's probabilities
    assert bool(decision.kept(r.probs_before).eq(r.path_kept[0]).all())


@pytest.mark.slow
def test_mask_finds_the_shortcut_marker(shortcut_batch):
    from simplebits_audit.metrics import auroc, relevance_mass

    model, data = shortcut_batch
    result = simplify(model, data.images, seed=0)
    # The mask is the returned image's: often binary (the top share of pixels restored), all zero
    # where the flat reference kept the prediction, all one where nothing simpler did. Where it
    # says something, most of it sits on the marker (1.6 % of the image).
    flat = result.mask.flatten(1)
    says = flat.amax(1) > flat.amin(1)
    assert int(says.sum()) >= 10
    assert float(relevance_mass(result.mask, data.masks)[says].mean()) > 0.5
    assert float(auroc(result.mask, data.masks)[says].mean()) > 0.8


@pytest.mark.slow
def test_latent_path_from_the_prior_mode_reduces_bits():
    from simplebits_audit.estimators import load_estimator

    glow = load_estimator("glow")
    data = testbeds.load("digits-on-photos", "test", n=4, seed=5)
    model = testbeds.load_classifier("digits-on-photos")
    result = simplify(model, data.images, estimator=glow, parameterization="latent", latent_init="prior", steps=30, lr=0.05, seed=0)
    assert float((result.bits_after / result.bits_before).mean()) < 0.95
    assert bool(result.kept.all())


def test_engine_options_are_checked_before_work():
    x = torch.rand(2, 3, 8, 8)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 3))
    with pytest.raises(ValueError, match="mask_init"):
        simplify(model, x, mask_init=1.5)
    with pytest.raises(ValueError, match="reference"):
        simplify(model, x, reference="sky")
    with pytest.raises(ValueError, match="parameterization"):
        simplify(model, x, parameterization="wavelets")


def test_captum_tools_work_with_their_default_arguments(digits_batch):
    from captum.attr import NoiseTunnel
    from captum.metrics import sensitivity_max

    from simplebits_audit import SimpleBits

    model, data = digits_batch
    x, t = data.images[:2], 3
    sb = SimpleBits(model, steps=3)
    with pytest.warns(UserWarning, match="clamped"):
        attr = NoiseTunnel(sb).attribute(x, nt_type="smoothgrad", target=t)
    assert attr.shape == x.shape and bool(torch.isfinite(attr).all())
    sens = sensitivity_max(sb.attribute, x, target=t)
    assert sens.shape == (2,) and bool(torch.isfinite(sens).all())


def test_a_wrong_normalisation_is_still_an_error(digits_batch):
    from simplebits_audit import SimpleBits

    model, data = digits_batch
    imagenet_normalised = (data.images[:2] - 0.45) / 0.225  # pixels in about [-2, 2.4]
    with pytest.raises(ValueError, match="inputs: .*far outside"):
        SimpleBits(model, steps=2).attribute(imagenet_normalised, target=0)
    with pytest.raises(ValueError, match="inputs"):
        SimpleBits(model, steps=2).attribute(data.images[:2] * 255, target=0)
