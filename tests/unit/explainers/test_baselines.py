"""The Captum baselines and reference maps in the explainer registry: one call signature, the model left alone."""

from __future__ import annotations

import copy

import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from simplebits_audit import explainers as ex

from ...helpers import assert_unchanged, snapshot

#: keep every method quick on 16x16 images
FAST: dict[str, dict] = {
    "ig": {"n_steps": 8},
    "gradient_shap": {"n_samples": 4},
    "lime": {"n_samples": 24, "n_segments": 8},
    "kernel_shap": {"n_samples": 24, "n_segments": 8},
    "feature_ablation": {"n_segments": 8},
}
#: every explainer that does not simplify: the Captum baselines, then the trivial references
BASELINES = ex.list_explainers(simplifies=False)


def test_registry_lists_methods_and_references():
    names = ex.list_explainers()
    for required in (
        "ig",
        "saliency",
        "input_x_gradient",
        "gradient_shap",
        "deeplift",
        "occlusion",
        "feature_ablation",
        "gradcam",
        "lime",
        "kernel_shap",
    ):
        assert required in BASELINES and not ex.EXPLAINERS[required].reference and ex.EXPLAINERS[required].captum
    for ref in ("brightness", "max_channel", "centre", "random"):
        assert ex.EXPLAINERS[ref].reference and ref in ex.list_explainers(reference=True)
    assert "simplebits" in names and "simplebits" not in BASELINES
    assert set(ex.list_explainers(reference=False, simplifies=False)) | set(ex.list_explainers(reference=True)) == set(BASELINES)
    assert set(BASELINES) | set(ex.list_explainers(simplifies=True)) == set(names)
    assert names[-len(BASELINES):] == BASELINES  # registry order: SimpleBits first, then the baselines
    assert ex.EXPLAINERS["ig"].options["n_steps"] == 50 and "internal_batch_size" in ex.EXPLAINERS["ig"].options
    assert ex.EXPLAINERS["lime"].options["n_samples"] == 200


@pytest.mark.parametrize("name", BASELINES)
def test_every_method_returns_input_shape_and_finite_values(name, bright_dark_model, photos16):
    x = photos16[:3]
    attr = ex.attribute(name, bright_dark_model, x, target=1, **FAST.get(name, {}))
    assert attr.shape == x.shape and attr.dtype == x.dtype and attr.is_contiguous()
    assert torch.isfinite(attr).all()
    amap = ex.to_map(attr, ex.EXPLAINERS[name].map_reduce)
    assert amap.shape == (3, 1, 16, 16)


@pytest.mark.parametrize("target", [None, 0, [0, 1, 1], torch.tensor([1, 0, 1]), torch.tensor(1), (1, 1, 0)])
def test_target_forms(target, bright_dark_model, photos16):
    x = photos16[:3]
    attr = ex.attribute("saliency", bright_dark_model, x, target)
    assert attr.shape == x.shape


def test_none_target_explains_the_prediction(bright_dark_model, photos16):
    x = photos16[:4]
    pred = bright_dark_model(x).argmax(1)
    assert torch.equal(ex.attribute("input_x_gradient", bright_dark_model, x), ex.attribute("input_x_gradient", bright_dark_model, x, pred))


def test_errors_name_the_argument(bright_dark_model, photos16):
    with pytest.raises(ValueError, match=r"name: unknown explainer 'foo'.*'ig'"):
        ex.attribute("foo", bright_dark_model, photos16)
    with pytest.raises(TypeError, match=r"options: 'ig' does not take \['n_stepz'\]"):
        ex.attribute("ig", bright_dark_model, photos16, n_stepz=3)
    with pytest.raises(ValueError, match="inputs"):
        ex.attribute("ig", bright_dark_model, photos16[0])
    with pytest.raises(ValueError, match="target"):
        ex.attribute("ig", bright_dark_model, photos16[:2], [0, 1, 1])
    with pytest.raises(ValueError, match=r"target: class indices"):
        ex.attribute("saliency", bright_dark_model, photos16[:2], 5)
    with pytest.raises(TypeError, match="forward_func"):
        ex.attribute("ig", None, photos16[:2])
    nan = photos16[:2].clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="inputs contains NaN"):
        ex.attribute("saliency", bright_dark_model, nan)
    with pytest.raises(ValueError, match="reduce"):
        ex.to_map(photos16, "max")


def test_model_and_inputs_unchanged(bright_dark_model, photos16):
    model = copy.deepcopy(bright_dark_model)
    # a state a careless method would overwrite: frozen first layer, leftover gradients, one
    # BatchNorm in train mode (its running statistics move with every forward pass)
    first = next(model.parameters())
    first.requires_grad_(False)
    last = list(model.parameters())[-1]
    last.grad = torch.full_like(last, 0.5)
    model.features[1].train()
    before = snapshot(model)
    x = photos16[:2].clone()
    x_before = x.clone()
    for name in BASELINES:
        with pytest.warns(UserWarning, match="training mode"):
            ex.attribute(name, model, x, target=1, **FAST.get(name, {}))
        assert_unchanged(before, model)
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None


def test_model_guard_restores_after_a_failure(bright_dark_model, photos16):
    model = copy.deepcopy(bright_dark_model)
    before = snapshot(model)
    with pytest.raises(ValueError):
        ex.attribute("occlusion", model, photos16[:2], window=99)
    assert_unchanged(before, model)


class _RegisteredOutOfOrder(nn.Module):
    """``late`` is registered first but runs last; a Linear head after the convs."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Conv2d(4, 4, 3, padding=1)
        self.early = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.relu(self.late(torch.relu(self.early(x)))).mean((2, 3)))


def test_gradcam_finds_the_last_executed_conv(bright_dark_model, photos16):
    net = _RegisteredOutOfOrder()
    assert ex.find_last_conv(net, photos16[:1]) is net.late
    convs = [m for m in bright_dark_model.modules() if isinstance(m, nn.Conv2d)]
    assert ex.find_last_conv(bright_dark_model, photos16[:1]) is convs[-1]
    # the registry's gradcam is Captum's LayerGradCam on that layer, upsampled and repeated over channels
    x = photos16[:2]
    ours = ex.attribute("gradcam", bright_dark_model, x, 1)
    cam = LayerGradCam(bright_dark_model, convs[-1]).attribute(x, target=1, relu_attributions=True)
    expected = LayerAttribution.interpolate(cam, (16, 16), "bilinear")
    assert torch.allclose(ours[:, :1], expected, atol=1e-6) and torch.equal(ours[:, 0], ours[:, 2])


def test_gradcam_without_conv_is_a_clear_error(photos16):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2)).eval()
    with pytest.raises(ValueError, match=r"forward_func: 'gradcam' needs a model with a torch.nn.Conv2d"):
        ex.attribute("gradcam", mlp, photos16[:2])
    with pytest.raises(TypeError, match=r"forward_func: 'gradcam' needs a torch.nn.Module"):
        ex.attribute("gradcam", lambda x: mlp(x), photos16[:2])


def test_deeplift_refuses_reused_activations(photos16):
    class Reused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2, self.relu = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU()
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.relu(self.conv2(self.relu(self.conv1(x)))).mean((2, 3)))

    with pytest.raises(ValueError, match=r"forward_func: 'deeplift' needs each non-linear module used once.*relu"):
        ex.attribute("deeplift", Reused().eval(), photos16[:2])
    with pytest.raises(TypeError, match=r"forward_func: 'deeplift' needs a torch.nn.Module"):
        ex.attribute("deeplift", lambda x: Reused()(x), photos16[:2])


def test_reference_maps_need_no_model(photos16):
    x = photos16[:2]
    bright = ex.attribute("brightness", None, x)
    # without to_pixels each image is rescaled to [0, 1] by its own min and max
    lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    assert torch.allclose(bright[:, :1], ((x - lo) / (hi - lo)).mean(1, keepdim=True))
    # with to_pixels the references read real pixel values
    mean, std = 0.5, 0.25
    model_space = (x - mean) / std
    assert torch.allclose(
        ex.attribute("max_channel", None, model_space, to_pixels=lambda z: z * std + mean)[:, :1], x.amax(1, keepdim=True), atol=1e-6
    )
    # contrast: a flat image with one bright pixel points at that pixel only
    flat = torch.full((1, 3, 8, 8), 0.4)
    flat[0, :, 2, 5] = 0.9
    spot = ex.attribute("contrast", None, flat, to_pixels=lambda z: z)[0, 0]
    assert spot.argmax().item() == 2 * 8 + 5 and spot[2, 5] > 10 * spot[0, 0]
    centre = ex.attribute("centre", None, x)[0, 0]
    assert centre[7:9, 7:9].min() == centre.max() and centre[0, 0] < centre[8, 8]
    r1, r2 = ex.attribute("random", None, x, seed=3), ex.attribute("random", None, x, seed=3)
    assert torch.equal(r1, r2) and not torch.equal(r1, ex.attribute("random", None, x, seed=4))
    assert ex.attribute("edges", None, x).shape == x.shape


def test_to_map_and_timing(bright_dark_model, photos16):
    attr = torch.tensor([[[[1.0, -2.0]], [[-3.0, 1.0]]]])  # (1, 2, 1, 2)
    assert torch.equal(ex.to_map(attr), torch.tensor([[[[4.0, 3.0]]]]))
    assert torch.equal(ex.to_map(attr, "sum"), torch.tensor([[[[-2.0, -1.0]]]]))
    e = ex.explain("saliency", bright_dark_model, photos16[:2])
    assert e.attributions.shape == photos16[:2].shape and e.seconds > 0
    assert torch.equal(e.map, ex.to_map(e.attributions, ex.EXPLAINERS["saliency"].map_reduce))


def test_seeded_methods_are_deterministic_and_leave_global_rng(bright_dark_model, photos16):
    x = photos16[:2]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = ex.attribute("lime", bright_dark_model, x, 1, **FAST["lime"])
    assert torch.equal(torch.get_rng_state(), state)
    b = ex.attribute("lime", bright_dark_model, x, 1, **FAST["lime"])
    assert torch.equal(a, b)


def test_additional_forward_args(bright_dark_model, photos16):
    def scaled(x, scale):
        return bright_dark_model(x) * scale

    x = photos16[:2]
    scale = torch.tensor([[1.0], [2.0]])
    for name in ("ig", "gradient_shap", "occlusion"):
        attr = ex.attribute(name, scaled, x, 1, additional_forward_args=scale, **FAST.get(name, {}))
        assert attr.shape == x.shape and torch.isfinite(attr).all()


def test_gradient_shap_seed_fixes_numpy_draws_too(bright_dark_model, photos16):
    """Captum's GradientShap draws the points on the path with numpy: the seed fixes them, numpy's global RNG is left alone."""
    import numpy as np

    x = photos16[:2]
    np.random.seed(5)
    state = np.random.get_state()
    a = ex.attribute("gradient_shap", bright_dark_model, x, 1, n_samples=4, seed=2)
    assert all(np.array_equal(u, v) if isinstance(u, np.ndarray) else u == v for u, v in zip(np.random.get_state(), state))
    np.random.seed(6)
    assert torch.equal(a, ex.attribute("gradient_shap", bright_dark_model, x, 1, n_samples=4, seed=2))
    assert not torch.equal(a, ex.attribute("gradient_shap", bright_dark_model, x, 1, n_samples=4, seed=3))
