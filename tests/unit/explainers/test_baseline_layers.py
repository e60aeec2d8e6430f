"""Baselines and the model's layers: hooks (TorchScript, torch.export), Grad-CAM's ``layer``, one-logit and multi-label heads."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
import torchvision
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from simplebits_audit.explainers import EXPLAINERS, Context, explain, list_explainers, spec
from simplebits_audit.simplification import simplify
from simplebits_audit.testbeds import SmallCNN

from ...helpers import assert_unchanged, snapshot

#: keep every method quick on 16x16 images
FAST: dict[str, dict] = {
    "ig": {"n_steps": 4},
    "gradient_shap": {"n_samples": 4},
    "lime": {"n_samples": 16, "n_segments": 8},
    "kernel_shap": {"n_samples": 16, "n_segments": 8},
    "feature_ablation": {"n_segments": 8},
}
#: the real baselines (no references, no SimpleBits)
BASELINES = list_explainers(reference=False, simplifies=False)
HOOKS = r"hooks the model's layers, but .*TorchScript.*forward hooks do not run.*'package\.module:factory' with --weights.*\)"


@pytest.fixture(scope="module")
def cnn() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN(n_classes=3, size=16, width=4).eval()


def _scripted(model: nn.Module, x: torch.Tensor) -> dict[str, nn.Module]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"script": torch.jit.script(model), "trace": torch.jit.trace(model, x[:1])}


# ---------------------------------------------------------------------------------------------
# hooks: one declared requirement, one check, one clear line


def test_hook_methods_are_declared_in_the_registry():
    assert {n for n, s in EXPLAINERS.items() if s.needs_hooks} == {"deeplift", "gradcam"}
    assert EXPLAINERS["gradcam"].requires == ("hooks",)
    with pytest.raises(ValueError, match="requires: unknown requirement 'gpu'"):
        spec("x", EXPLAINERS["ig"].fn, requires=("gpu",))


@pytest.mark.parametrize(
    ("name", "kind"), [*((n, "script") for n in BASELINES), *((n, "trace") for n in BASELINES if EXPLAINERS[n].needs_hooks)]
)
def test_torchscript_every_baseline_runs_or_refuses_in_one_clear_line(name, kind, cnn, photos16):
    """A hook method names itself, the reason (TorchScript, hooks) and the fix; every other one gives the eager model's answer."""
    x = photos16[:2]
    model = _scripted(cnn, x)[kind]
    if EXPLAINERS[name].needs_hooks:
        with pytest.raises(TypeError, match=rf"forward_func: '{name}' {HOOKS}, or use a method without hooks: ig, ") as err:
            explain(name, model, x, 1, **FAST.get(name, {}))
        assert "\n" not in str(err.value) and "Conv2d" not in str(err.value)
    else:
        got = explain(name, model, x, 1, **FAST.get(name, {})).attributions
        assert torch.allclose(got, explain(name, cnn, x, 1, **FAST.get(name, {})).attributions, atol=1e-5)


def test_hooks_hidden_inside_a_wrapper_or_an_export_graph_are_refused(cnn, photos16):
    x = photos16[:2]
    wrapped = nn.Sequential(nn.Identity(), _scripted(cnn, x)["script"])  # hooks register on the wrapper, not inside
    for name in ("gradcam", "deeplift"):
        with pytest.raises(TypeError, match=rf"'{name}' hooks the model's layers, but its submodule '1' is TorchScript"):
            explain(name, wrapped, x, 1)
    exported = torch.export.export(cnn, (x,)).module()  # what a .pt2 archive loads as: layers inlined into one graph
    graph = r"'gradcam' hooks the model's layers, but the model is a torch.export / torch.fx graph .*'features.0'.*never run"
    with pytest.raises(TypeError, match=graph):
        explain("gradcam", exported, x, 1)
    traced = torch.fx.symbolic_trace(cnn).eval()  # torch.fx keeps calling its layers: hooks run, Grad-CAM works
    assert torch.allclose(explain("gradcam", traced, x, 1).attributions, explain("gradcam", cnn, x, 1).attributions)


# ---------------------------------------------------------------------------------------------
# Grad-CAM's layer


def _convs(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def test_gradcam_layer_option_on_a_cnn(cnn, photos16):
    x = photos16[:2]
    names = _convs(cnn)
    assert "layer" in EXPLAINERS["gradcam"].options and EXPLAINERS["gradcam"].options["layer"] is None
    default = explain("gradcam", cnn, x, 1).attributions
    assert torch.equal(default, explain("gradcam", cnn, x, 1, layer=names[-1]).attributions)  # the default: the last Conv2d
    middle = explain("gradcam", cnn, x, 1, layer=names[1]).attributions
    assert torch.equal(middle, explain("gradcam", cnn, x, 1, layer=cnn.get_submodule(names[1])).attributions)  # name or module
    cam = LayerGradCam(cnn, cnn.get_submodule(names[1])).attribute(x, target=1, relu_attributions=True)
    assert torch.allclose(middle[:, :1], LayerAttribution.interpolate(cam, (16, 16), "bilinear"), atol=1e-6)
    assert not torch.allclose(middle, default)
    with pytest.raises(ValueError, match=rf"layer: '{names[0]}' is the model's input stem .*give a later layer, e.g. '{names[-1]}'"):
        explain("gradcam", cnn, x, 1, layer=names[0])
    with pytest.raises(ValueError, match=r"layer: 'features.99' is not a submodule of SmallCNN"):
        explain("gradcam", cnn, x, 1, layer="features.99")
    with pytest.raises(ValueError, match=r"layer: '' outputs shape \(1, 3\)"):
        explain("gradcam", cnn, x, 1, layer="")
    with pytest.raises(ValueError, match="layer: the given Conv2d is not a submodule of the model"):
        explain("gradcam", cnn, x, 1, layer=nn.Conv2d(3, 3, 1))


def test_gradcam_one_conv_model_keeps_its_only_conv(photos16):
    """The input stem is refused only when later feature maps exist: a one-conv CNN keeps its map."""
    torch.manual_seed(0)
    one = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    x = photos16[:2]
    assert torch.equal(explain("gradcam", one, x, 1).attributions, explain("gradcam", one, x, 1, layer="0").attributions)
    # a patch-embedding name late in a CNN is no patch embedding: only what the image reaches first is
    late = nn.Sequential()
    late.add_module("stem", nn.Conv2d(3, 4, 3, padding=1))
    late.add_module("conv_proj", nn.Conv2d(4, 4, 1))
    late.add_module("head", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)))
    late.eval()
    assert torch.equal(explain("gradcam", late, x, 1).attributions, explain("gradcam", late, x, 1, layer="conv_proj").attributions)


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=3,
    )
    nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision zero-initialises the head: every gradient would be 0
    return model.eval()


def test_gradcam_on_a_vision_transformer(vit):
    torch.manual_seed(1)
    x = torch.rand(2, 3, 32, 32)
    # no layer: the only Conv2d is the patch embedding, refused; the message offers the last block's first LayerNorm
    no_map = r"layer: 'gradcam' found no spatial feature map: the model's last Conv2d 'conv_proj' is its patch embedding"
    with pytest.raises(ValueError, match=no_map + r".*'encoder.layers.encoder_layer_1.ln_1'"):
        explain("gradcam", vit, x, 0)
    with pytest.raises(ValueError, match=r"layer: 'conv_proj' is the model's patch embedding"):
        explain("gradcam", vit, x, 0, layer="conv_proj")
    # a token layer: (B, 1 + 4*4, D) reshaped to (B, D, 4, 4), the class token dropped, as pytorch-grad-cam's reshape_transform
    name = "encoder.layers.encoder_layer_1.ln_1"
    before = snapshot(vit)
    got = explain("gradcam", vit, x, 0, layer=name, relu_attributions=False).attributions
    assert_unchanged(before, vit)
    assert got.shape == x.shape and torch.equal(got[:, 0], got[:, 2])
    saved = {}
    handle = vit.get_submodule(name).register_forward_hook(lambda m, i, o: saved.update(out=o))
    logits = vit(x)
    handle.remove()
    grads = torch.autograd.grad(logits[:, 0].sum(), saved["out"])[0]

    def grid(t):
        return t[:, 1:, :].reshape(t.size(0), 4, 4, t.size(2)).transpose(2, 3).transpose(1, 2)

    cam = (grid(grads).mean((2, 3), keepdim=True) * grid(saved["out"].detach())).sum(1, keepdim=True)
    assert torch.allclose(got[:, :1], LayerAttribution.interpolate(cam, (32, 32), "bilinear"), atol=1e-5)
    # and it is not the patch embedding's map
    patch = LayerAttribution.interpolate(LayerGradCam(vit, vit.conv_proj).attribute(x, target=0), (32, 32), "bilinear")
    assert not torch.allclose(got[:, :1], patch, atol=1e-3)
    # after the final norm only the class token feeds the head: refused rather than an empty map
    with pytest.raises(ValueError, match=r"layer: the target's gradient never reaches the patch tokens of 'encoder.ln'"):
        explain("gradcam", vit, x, 0, layer="encoder.ln")
    with pytest.raises(ValueError, match=r"layer: '.*self_attention' returns a tuple, not a tensor"):
        explain("gradcam", vit, x, 0, layer="encoder.layers.encoder_layer_1.self_attention")


# ---------------------------------------------------------------------------------------------
# one logit, several labels, the head


@pytest.mark.parametrize("n_outputs", [1, 4])
def test_every_baseline_on_one_logit_and_multi_label_models(n_outputs, photos16):
    torch.manual_seed(0)
    model = SmallCNN(n_classes=n_outputs, size=16, width=4).eval()
    x = photos16[:2]
    targets = 0 if n_outputs == 1 else [3, 1]
    for name in list_explainers(simplifies=False):
        e = explain(name, model, x, targets, **FAST.get(name, {}))
        assert e.attributions.shape == x.shape and torch.isfinite(e.attributions).all(), name
        assert e.map.shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"target: class indices"):
        explain("saliency", model, x, n_outputs)


def test_kernel_shap_on_a_single_segment_is_a_clear_error(cnn):
    torch.manual_seed(0)
    noise = torch.rand(1, 3, 16, 16)  # SLIC at the default compactness merges noise into one segment
    with pytest.raises(ValueError, match=r"compactness: SLIC found a single segment in image 0 .*'kernel_shap' needs two or more"):
        explain("kernel_shap", cnn, noise, 0, n_samples=8)
    assert explain("kernel_shap", cnn, noise, 0, n_samples=8, compactness=100.0).attributions.shape == noise.shape


def test_context_head_fills_the_explainers_that_take_it(monkeypatch, cnn, photos16):
    seen = {}

    def probe(forward_func, inputs, target, additional_forward_args=None, *, head: str = "softmax"):
        """Records its head."""
        seen["head"] = head
        return torch.zeros_like(inputs)

    monkeypatch.setitem(EXPLAINERS, "probe", spec("probe", probe))
    x = photos16[:1]
    explain("probe", cnn, x, 0, context=Context(head="sigmoid"))
    assert seen["head"] == "sigmoid"
    explain("probe", cnn, x, 0, context=Context(head="sigmoid"), head="softmax")  # an explicit option wins
    assert seen["head"] == "softmax"
    explain("ig", cnn, x, 0, n_steps=2, context=Context(head="sigmoid"))  # not forwarded where not taken
    assert Context().head == "softmax"
    with pytest.raises(ValueError, match=r"head: expected one of \('softmax', 'sigmoid'\), got 'probability'"):
        Context(head="probability")
    # SimpleBits gets it through simplify() exactly when simplify takes it
    takes = "head" in inspect.signature(simplify).parameters
    assert ("head" in EXPLAINERS["simplebits"].options) == takes
    assert Context(head="sigmoid").options_for(EXPLAINERS["simplebits"], {}).get("head") == ("sigmoid" if takes else None)
