"""The factorised engine (issue 22): one mask per kind of information, a profile that says which the model needed."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from simplebits_audit import testbeds
from simplebits_audit.explainers.simple_bits import SimpleBits
from simplebits_audit.metrics import information_profile
from simplebits_audit.simplification import ENGINE_DEFAULTS, SimplificationResult, SimplifyConfig, simplify
from simplebits_audit.simplification.common import round_8bit
from simplebits_audit.simplification.factorised import AXES, compose, region_reference, remove

from ...helpers import assert_refines


class Colourfulness(nn.Module):
    """Class 1 when the image is colourful (mean |R - G| + |G - B| above a bar): colour decides, detail does not."""

    def __init__(self, bar: float) -> None:
        super().__init__()
        self.bar = bar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chroma = ((x[:, 0] - x[:, 1]).abs() + (x[:, 1] - x[:, 2]).abs()).mean((1, 2))
        score = 40 * (chroma - self.bar)
        return torch.stack([-score, score], 1)


def colour_blobs(n: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    """One saturated hue per image under a strong grey fine texture (bits the colour model does not need)."""
    g = torch.Generator().manual_seed(seed)
    hue = torch.rand(n, 3, 1, 1, generator=g)
    hue = (hue - hue.mean(1, keepdim=True)) * 1.5 + 0.45
    texture = 0.3 * torch.rand(n, 1, size, size, generator=g)
    return (hue + texture - 0.15).clamp(0, 1)


def _expected(r: SimplificationResult) -> torch.Tensor:
    original = round_8bit(r.original, False)
    ref = region_reference(original, r.settings["reference"])
    return round_8bit(compose(original, r.axis_masks, reference=ref, blur_sigma=r.settings["blur_sigma"],
                              order=tuple(r.settings["composition"])), False)


def test_the_engine_table_has_a_factorised_entry_resolved_into_the_config():
    resolved = SimplifyConfig(parameterization="factorised").resolved()
    assert resolved.blur_sigma == ENGINE_DEFAULTS["factorised"]["blur_sigma"]
    assert resolved.axis_mask_size == ENGINE_DEFAULTS["factorised"]["axis_mask_size"]
    # other engines leave the factorised options alone
    assert SimplifyConfig().resolved().blur_sigma is None
    assert SimplifyConfig(parameterization="factorised", blur_sigma=3.5).resolved().blur_sigma == 3.5
    for options, field in [({"blur_sigma": 0.0}, "blur_sigma"), ({"axis_mask_size": 0}, "axis_mask_size")]:
        with pytest.raises(ValueError, match=field):
            SimplifyConfig(parameterization="factorised", **options)
    with pytest.raises(TypeError, match="axis_mask_size"):
        dataclasses.replace(SimplifyConfig(), axis_mask_size=2.5)


@pytest.mark.parametrize("name", ["stripes", "shortcut"])
def test_axis_masks_describe_the_returned_image(name):
    data = testbeds.load(name, "test", n=8, seed=1)
    model = testbeds.load_classifier(name)
    attr, r = SimpleBits(model, parameterization="factorised").attribute(data.images, return_result=True, steps=8)
    assert set(r.axis_masks) == set(AXES)
    for axis, m in r.axis_masks.items():
        assert m.shape == (8, 1, 32, 32) and float(m.min()) >= 0 and float(m.max()) <= 1, axis
    assert r.mask is r.axis_masks["region"] or torch.equal(r.mask, r.axis_masks["region"])
    assert_refines(attr[:, :1], r.mask)  # default map = the region's mask, ties broken
    assert torch.equal(_expected(r), r.simplified)
    # fallbacks: an unchanged original has every axis at one; the flat reference has the region at zero
    original = round_8bit(r.original, False)
    same = (r.simplified == original).flatten(1).all(1)
    for m in r.axis_masks.values():
        assert bool((m[same] == 1).all())
    flat = (r.simplified == region_reference(original, "mean")).flatten(1).all(1)
    assert bool((r.axis_masks["region"][flat] == 0).all())


def test_fallback_to_the_original_sets_every_axis_to_one():
    data = testbeds.load("shortcut", "test", n=6, seed=2)
    model = testbeds.load_classifier("shortcut")
    # keeping all of the original's probability: few simpler images do, the others fall back to the original
    r = simplify(model, data.images, parameterization="factorised", steps=3, keep=1.0)
    back = (r.simplified == round_8bit(r.original, False)).flatten(1).all(1)
    assert bool(back.any())
    for m in r.axis_masks.values():
        assert bool((m[back] == 1).all())
    assert torch.equal(_expected(r), r.simplified)


def test_a_one_channel_image_has_no_colour_axis_and_the_profile_says_na():
    data = testbeds.load("digits-on-photos", "test", n=4, seed=1)
    grey = data.images.mean(1, keepdim=True)

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    torch.manual_seed(0)
    r = simplify(model.eval(), grey, parameterization="factorised", steps=4)
    assert torch.equal(r.axis_masks["colour"], torch.ones_like(r.axis_masks["colour"]))
    assert torch.equal(_expected(r), r.simplified)
    profile = information_profile(r, codec=None)
    assert bool(profile["colour"]["kept_inside"].isnan().all())
    assert not bool(profile["detail"]["kept_inside"].isnan().all()) or not bool((r.mask > 0.5).any())
    with pytest.raises(ValueError, match="axis"):
        remove(grey, "colour", reference=grey, blur_sigma=1.0)


def test_attribution_values_are_checked_naming_attribution():
    model = testbeds.load_classifier("stripes")
    x = testbeds.load("stripes", "test", n=2, seed=1).images
    with pytest.raises(ValueError, match="attribution") as info:
        SimpleBits(model).attribute(x, attribution="colour", steps=2)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="attribution"):
        SimpleBits(model, parameterization="factorised").attribute(x, attribution="texture", steps=2)
    with pytest.raises(ValueError, match="attribution"):
        SimpleBits(model, parameterization="pixels").attribute(x, attribution="detail", steps=2)


def test_maps_work_with_captum_noise_tunnel_and_the_result_saves(tmp_path):
    from captum.attr import NoiseTunnel

    model = testbeds.load_classifier("stripes")
    x = testbeds.load("stripes", "test", n=2, seed=1).images
    sb = SimpleBits(model, parameterization="factorised", steps=3)
    for axis in AXES:
        attr = NoiseTunnel(sb).attribute(x, nt_type="smoothgrad", nt_samples=2, stdevs=0.01, attribution=axis)
        assert attr.shape == x.shape and float(attr.min()) >= 0 and float(attr.max()) <= 1
    _, r = sb.attribute(x, attribution="detail", return_result=True)
    back = SimplificationResult.load(r.save(tmp_path / "r.pt"))
    assert all(torch.equal(back.axis_masks[a], r.axis_masks[a]) for a in AXES)


def test_a_colour_only_model_keeps_colour_and_gives_up_detail():
    x = colour_blobs()
    chroma = ((x[:, 0] - x[:, 1]).abs() + (x[:, 1] - x[:, 2]).abs()).mean((1, 2))
    model = Colourfulness(bar=0.6 * float(chroma.min())).eval()
    # towards mid-grey: a blur keeps each image's hue, the grey reference and the luminance do not
    r = simplify(model, x, parameterization="factorised", steps=30, reference="grey")
    assert bool(r.kept.all())
    # read over the whole image: the object is the whole image here
    profile = information_profile(r, codec=None, region=torch.ones_like(r.mask))
    colour, detail = profile["colour"]["kept_inside"], profile["detail"]["kept_inside"]
    assert bool((colour > detail).all()), (colour, detail)
    assert float(colour.mean()) > float(detail.mean()) + 0.2, (colour, detail)
