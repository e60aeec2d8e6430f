"""SimpleBits as a Captum citizen: Captum's own tools must accept it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from captum.attr import IntegratedGradients, NoiseTunnel
from captum.attr import visualization as viz
from captum.metrics import infidelity, sensitivity_max

from simplebits_audit import SimpleBits
from simplebits_audit.explainers import ATTRIBUTIONS

from ...helpers import assert_unchanged, snapshot

FAST = dict(steps=8, n_snapshots=3)


@pytest.fixture(scope="module")
def sb(bright_dark_model):
    return SimpleBits(bright_dark_model, "analytic", **FAST)


def test_shapes_types_and_target_forms(sb, photos16):
    x = photos16[:4]
    for target in (None, 1, [0, 1, 0, 1], torch.tensor([1, 1, 0, 0]), torch.tensor(1)):
        attr = sb.attribute(x, target=target)
        assert isinstance(attr, torch.Tensor) and attr.shape == x.shape and attr.is_contiguous()
    attr_t = sb.attribute((x,), target=1)
    assert isinstance(attr_t, tuple) and len(attr_t) == 1 and attr_t[0].shape == x.shape
    assert not sb.has_convergence_delta() and not sb.multiplies_by_inputs
    assert sb.get_name() == "Simple Bits"


@pytest.mark.parametrize("kind", ATTRIBUTIONS)
def test_every_attribution_kind(sb, photos16, kind):
    # the colour and detail maps are the factorised engine's (issue 22)
    options = {"parameterization": "factorised"} if kind in ("colour", "detail") else {}
    attr, result = sb.attribute(photos16[:2], target=1, attribution=kind, return_result=True, **options)
    assert attr.shape == photos16[:2].shape and torch.isfinite(attr).all()
    assert len(result) == 2


def test_tuple_with_extra_input_gets_zero_attribution(bright_dark_model, photos16):
    def two_inputs(image, scale):
        return bright_dark_model(image) * scale

    sb = SimpleBits(two_inputs, "analytic", **FAST)
    scale = torch.ones(4, 1)
    attr_img, attr_scale = sb.attribute((photos16[:4], scale), target=0)
    assert attr_img.shape == photos16[:4].shape and torch.equal(attr_scale, torch.zeros_like(scale))


def test_noise_tunnel_runs_simplebits(sb, photos16):
    nt = NoiseTunnel(sb)
    attr = nt.attribute(photos16[:2], nt_type="smoothgrad", nt_samples=2, stdevs=0.02, target=1, out_of_range="clamp")
    assert attr.shape == photos16[:2].shape and torch.isfinite(attr).all()


def test_captum_metrics_accept_simplebits(sb, bright_dark_model, photos16):
    x = photos16[:2]
    attr = sb.attribute(x, target=1)

    def perturb(inputs):
        noise = torch.randn_like(inputs) * 0.01
        return noise, (inputs - noise).clamp(0, 1)

    infid = infidelity(bright_dark_model, perturb, x, attr, target=1, n_perturb_samples=2)
    assert infid.shape == (2,) and torch.isfinite(infid).all()
    sens = sensitivity_max(sb.attribute, x, target=1, n_perturb_samples=2, perturb_radius=0.01, out_of_range="clamp")
    assert sens.shape == (2,) and torch.isfinite(sens).all()


def test_side_by_side_with_integrated_gradients_and_visualisation():
    from simplebits_audit import testbeds

    # A digit the classifier needs: the map is the returned image's mask, non-zero on the digit
    # (on bright_dark_model the flat mean colour keeps the answer, and an all-zero map is right
    # there, but Captum's visualisation cannot normalise it).
    model = testbeds.load_classifier("digits-on-photos")
    x = testbeds.load("digits-on-photos", "test", n=2, seed=0).images[1:]  # image 0's flat reference keeps its class
    target = model(x).argmax(1)
    maps = {m.get_name(): m.attribute(x, target=target) for m in (SimpleBits(model, steps=10), IntegratedGradients(model))}
    for attr in maps.values():
        assert float(attr[0].abs().max()) > 0
        fig, _ = viz.visualize_image_attr(
            attr[0].permute(1, 2, 0).detach().numpy(), x[0].permute(1, 2, 0).numpy(), method="blended_heat_map", use_pyplot=False
        )
        assert fig is not None


def test_bad_arguments(sb, photos16):
    with pytest.raises(ValueError, match="attribution"):
        sb.attribute(photos16[:2], attribution="magic")
    with pytest.raises(ValueError, match="target"):
        sb.attribute(photos16[:2], target=[0, 1, 1])
    with pytest.raises(TypeError, match="inputs"):
        sb.attribute([photos16[:2]])


@pytest.mark.parametrize("kind", ["ablation", "survival"])
def test_attribute_leaves_a_train_mode_model_as_it_was(bright_dark_model, photos16, kind):
    """The simplification and the ablation map both run the model; BatchNorm statistics must not move."""
    import copy

    model = copy.deepcopy(bright_dark_model).train()
    last = list(model.parameters())[-1]
    last.grad = torch.full_like(last, 0.5)  # leftover gradients stay
    before = snapshot(model)
    with pytest.warns(UserWarning, match="training mode"):
        SimpleBits(model, "analytic", **FAST).attribute(photos16[:2], target=1, attribution=kind)
    assert_unchanged(before, model)



def _counting(model):
    calls = []

    def forward(x):
        calls.append(len(x))
        return model(x)

    return forward, calls


@pytest.mark.parametrize("kind", ["mask", "region"])
def test_mask_maps_of_a_maskless_engine_are_refused_before_any_work(bright_dark_model, photos16, kind):
    forward, calls = _counting(bright_dark_model)
    with pytest.raises(ValueError, match=f"attribution: '{kind}' needs a mask"):
        SimpleBits(forward, "analytic", parameterization="pixels", **FAST).attribute(photos16[:2], attribution=kind)
    assert calls == []


def test_colour_map_of_single_channel_images_is_refused(bright_dark_model, photos16):
    """A grey image has no colour axis: the map would be the region's, reported as colour."""
    grey = photos16[:2].mean(1, keepdim=True)
    forward, calls = _counting(lambda x: bright_dark_model(x.expand(-1, 3, -1, -1)))
    with pytest.raises(ValueError, match="attribution: 'colour' needs 3-channel"):
        SimpleBits(forward, "analytic", parameterization="factorised", **FAST).attribute(grey, attribution="colour")
    assert calls == []


@pytest.mark.parametrize("reference", ["grey", "blur", "mosaic"])
def test_retained_map_uses_the_engines_reference(sb, photos16, reference, monkeypatch):
    """``retained`` is m * |x - r| with r the reference the mask engine blended towards (it was always the mean colour)."""
    from simplebits_audit.simplification import mask as mask_module
    from simplebits_audit.simplification.mask import reference_image

    monkeypatch.setattr(mask_module, "MOSAIC_CELLS", 4)  # 16 px photos: a 4 x 4 mosaic (a 16 x 16 one would be the image)

    attr, result = sb.attribute(photos16[:2], target=1, attribution="retained", return_result=True, reference=reference)
    r = reference_image(torch.round(result.original * 255) / 255, reference)
    torch.testing.assert_close(attr[:, :1], result.mask * (result.original - r).abs().amax(1, keepdim=True))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_ablation_map_calls_the_model_in_its_dtype(bright_dark_model, photos16, dtype):
    import copy

    model = copy.deepcopy(bright_dark_model).to(dtype)
    attr = SimpleBits(model, "analytic", **FAST).attribute(photos16[:2].to(dtype), target=1, attribution="ablation")
    assert attr.dtype == dtype and torch.isfinite(attr.float()).all()
