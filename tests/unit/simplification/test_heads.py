"""Issue #19: right answers on any head, maps that describe the answer, no silent wrong result.

Each test here failed on the main branch before the fix (the finding it covers is named).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from simplebits_audit import SimpleBits, simplify, testbeds, train_simplifier
from simplebits_audit.simplification.heads import Decision
from simplebits_audit.simplification.mask import blend, reference_image

from ...helpers import assert_refines


class CornerPatch(nn.Module):
    """One sigmoid logit: fires when the 8x8 top-left patch is bright (logit +10 on a white patch)."""

    def __init__(self, outputs: int = 1) -> None:
        super().__init__()
        self.outputs = outputs
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        corner = 20 * (x[:, :, :8, :8].mean((1, 2, 3)) - 0.5)
        if self.outputs == 1:
            return corner[:, None]
        # second label: the bottom-right patch is dark
        other = 20 * (0.5 - x[:, :, -8:, -8:].mean((1, 2, 3)))
        return torch.stack([corner, other], 1)


def corner_images(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = 0.1 + 0.3 * torch.rand(n, 3, 32, 32, generator=g)  # dark: a flat mean-colour image does not fire
    x[:, :, :8, :8] = 1.0
    return x


# ---- finding 1: sigmoid heads


def test_single_logit_under_softmax_head_is_refused():
    with pytest.raises(ValueError, match="head='sigmoid'"):
        simplify(CornerPatch(), corner_images(2), target=0, steps=2)


def test_a_model_that_declares_its_head_is_refused_under_the_other():
    # The newcomer's fault: a multi-label testbed classifier explained under the default softmax head
    # returned "ok, kept" with the labels read as competing classes.
    model, images = testbeds.load_classifier("digits-stripes"), testbeds.load("digits-stripes", "test", n=2).images
    for forward in (model, model.forward):
        with pytest.raises(ValueError, match=r"^head: the model was trained with head='sigmoid'.*--head sigmoid"):
            simplify(forward, images, steps=2)
    with pytest.raises(ValueError, match="^head: .*trained with head='softmax'"):
        simplify(testbeds.load_classifier("stripes"), testbeds.load("stripes", "test", n=2).images, steps=2, head="sigmoid")
    result = simplify(model, images, steps=2, head="sigmoid")
    assert result.simplified.shape == images.shape
    with pytest.raises(ValueError, match="^head: "):
        train_simplifier(model, testbeds.load("digits-stripes", "train", n=16).images, steps=1)


def test_single_logit_sigmoid_head_keeps_the_decision():
    model, x = CornerPatch(), corner_images()
    attr, result = SimpleBits(model, head="sigmoid").attribute(x, target=0, return_result=True)
    assert result.probs_before.shape == (len(x), 1)
    assert bool((result.probs_before[:, 0] > 0.99).all())
    ok = torch.tensor([s == "ok" for s in result.status])
    assert bool(ok.all())
    # every "ok" answer still fires: p >= 0.5 under the model, checked by calling it again
    with torch.no_grad():
        p_after = torch.sigmoid(model(result.simplified_inputs))[:, 0]
    assert bool((p_after >= 0.5).all()), p_after
    assert bool(result.kept.all())
    # and something was removed
    assert bool((result.bits_after < result.bits_before).all())
    # the map points at the corner patch
    inside = attr[:, 0, :8, :8].mean() / attr[:, 0].mean().clamp_min(1e-12)
    assert float(inside) > 3


def test_sigmoid_negative_decision_is_kept_negative():
    model = CornerPatch()
    x = corner_images(3)
    x[:, :, :8, :8] = 0.0  # the label is off
    result = simplify(model, x, head="sigmoid", steps=10)
    with torch.no_grad():
        p_after = torch.sigmoid(model(result.simplified))[:, 0]
    assert bool((p_after < 0.5).all())
    assert bool(result.kept.all())


def test_multilabel_without_target_keeps_every_switched_on_label():
    model = CornerPatch(outputs=2)
    x = corner_images(4)
    x[:, :, -8:, -8:] = 0.9
    x[:2, :, -8:, -8:] = 0.0  # both labels on for the first two, only the first for the others
    result = simplify(model, x, head="sigmoid", steps=15)
    on_before = result.probs_before >= 0.5
    assert on_before[:2].all() and not on_before[2:, 1].any()
    on_after = result.probs_after >= 0.5
    ok = torch.tensor([s == "ok" for s in result.status])
    assert bool(ok.all())
    assert bool((on_after | ~on_before).all()), "a switched-on label was switched off in an 'ok' answer"
    # The result says what was explained: every label that was on, not only ``target``; per batch too.
    assert torch.equal(result.kept_labels, on_before)
    assert torch.equal(simplify(model, x, head="sigmoid", steps=3, internal_batch_size=3).kept_labels, on_before)
    assert torch.equal(simplify(model, x, head="sigmoid", target=1, steps=3).kept_labels, torch.tensor([[False, True]] * 4))
    assert simplify(model, x, target=0, steps=3).kept_labels is None  # softmax: the target is what was explained


def test_sigmoid_keep_rule_and_task_term():
    logits = torch.tensor([[3.0, -2.0], [-1.0, -4.0]])
    d = Decision.of(logits, None, head="sigmoid")
    # image 0: label 0 on -> kept labels {0}; image 1: none on -> all stay off
    assert d.labels.tolist() == [[True, False], [True, True]]
    probs = torch.sigmoid(torch.tensor([[0.5, 5.0], [-1.0, 0.2]]))
    assert d.kept(probs).tolist() == [True, False]
    # the KL term is zero at the original and positive elsewhere
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(d.task_loss(logits, "kl", (1.0, 1.0), g), torch.zeros(2), atol=1e-6)
    assert bool((d.task_loss(logits - 3, "kl", (1.0, 1.0), g) > 0).all())
    # the margin turns negative exactly when the decision is lost
    assert bool((d.margin(torch.logit(probs)) >= 0).eq(d.kept(probs)).all())


# ---- finding 2: the map, the mask and the returned image agree



@pytest.mark.parametrize("name", ["stripes", "digits-on-photos", "shortcut"])
def test_mask_describes_the_returned_image(name):
    data = testbeds.load(name, "test", n=12, seed=1)
    model = testbeds.load_classifier(name)
    attr, r = SimpleBits(model).attribute(data.images, return_result=True, steps=12)
    original = torch.round(r.original * 255) / 255
    ref = reference_image(original, r.settings["reference"])
    assert torch.equal(blend(original, ref, r.mask), r.simplified)
    assert_refines(attr[:, :1], r.mask)
    flat = (r.simplified == ref).flatten(1).all(1)
    # a flat reference answer has an all-zero map, an unchanged original an all-one map
    assert bool((r.mask[flat] == 0).all())
    same = (r.simplified == original).flatten(1).all(1)
    assert bool((r.mask[same & ~flat] == 1).all())


def test_learned_engine_mask_describes_the_returned_image_including_fallbacks():
    data = testbeds.load("shortcut", "test", n=48, seed=3)
    model = testbeds.load_classifier("shortcut")
    from simplebits_audit.simplification.learned import Simplifier

    simplifier = Simplifier.pretrained("shortcut")
    # a target the model did not predict forces fallbacks to the original for some images
    r = simplify(model, data.images, target=(data.labels + 1) % 10, simplifier=simplifier)
    original = torch.round(r.original * 255) / 255
    ref = simplifier.reference(original)
    assert torch.allclose(blend(original, ref, r.mask), r.simplified, atol=1 / 255 + 1e-6)
    back = (r.simplified == original).flatten(1).all(1)
    assert bool(back.any()), "the test needs at least one image that falls back to the original"
    assert bool((r.mask[back] == 1).all())


def test_pixel_engine_retained_map_is_zero_where_the_answer_is_flat():
    data = testbeds.load("digits-on-photos", "test", n=4, seed=2)
    model = testbeds.load_classifier("digits-on-photos")
    attr, r = SimpleBits(model, parameterization="pixels").attribute(data.images, return_result=True, steps=6)
    reference = r.original.mean((2, 3), keepdim=True)
    assert torch.allclose(attr[:, :1], (r.simplified - reference).abs().amax(1, keepdim=True))


# ---- finding 3: no gradient path


class Detached(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)
        self.mode = mode
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "detach":
            x = x.detach()
        if self.mode == "round":
            x = torch.round(x * 4) / 4  # a hard quantiser: zero gradient everywhere
        out = self.head(self.conv(x).mean((2, 3)))
        if self.mode == "numpy":
            out = torch.from_numpy(out.detach().numpy().copy())
        if self.mode == "plain numpy":  # .numpy() without .detach(): torch's own error on a tensor that needs gradients
            out = torch.from_numpy(out.numpy().copy())
        return out


@pytest.mark.parametrize("mode, message", [("detach", "no gradient path"), ("numpy", "no gradient path"), ("round", "zero everywhere"),
                                           ("plain numpy", r"^forward_func: cannot run on an image that needs gradients .*no numpy")])
def test_blocked_gradient_is_an_error_before_any_work(mode, message):
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match=message):
        SimpleBits(Detached(mode)).attribute(x, steps=3)


class ConstantTargetLogit(nn.Module):
    """Logits [f(x), 0] ("shift": [f(x), f(x)], the answer never moves): class 1's logit is a constant, yet its probability is not."""

    def __init__(self, shift: bool = False) -> None:
        super().__init__()
        self.shift = shift
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 20 * (x[:, :, :8, :8].mean((1, 2, 3)) - x.mean((1, 2, 3))) - 1
        return torch.stack([f, f if self.shift else torch.zeros_like(f)], 1)


def test_a_constant_target_logit_is_not_a_blocked_path():
    """The softmax answer depends on the logits' differences: class 1 with a constant logit 0 is explained, not refused."""
    x = torch.rand(2, 3, 16, 16)
    x[:, :, :8, :8] *= 0.2  # a dark corner: f < 0, class 1
    model = ConstantTargetLogit()
    assert (model(x).argmax(1) == 1).all()
    r = simplify(model, x, steps=4)
    assert r.status == ["ok", "ok"] and bool(r.kept.all())
    with pytest.raises(ValueError, match="zero everywhere"):  # logits that move together: the softmax never changes
        simplify(ConstantTargetLogit(shift=True), x, steps=4)


def test_inference_mode_is_an_error():
    model, x = Detached("none"), torch.rand(2, 3, 16, 16)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        simplify(model, x, steps=2)


def test_no_grad_context_still_works():
    model, x = Detached("none"), torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        r = simplify(model, x, steps=2)
    assert r.status == ["ok", "ok"]


# ---- finding 4: training mode


class DropoutNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.conv(x)).mean((2, 3))))


def test_same_seed_same_result_with_dropout_in_training_mode():
    torch.manual_seed(0)
    model = DropoutNet().train()
    x = torch.rand(3, 3, 16, 16)
    with pytest.warns(UserWarning, match="training mode"):
        a = simplify(model, x, seed=4, steps=8)
    state = torch.random.get_rng_state()
    with pytest.warns(UserWarning, match="training mode"):
        b = simplify(model, x, seed=4, steps=8)
    assert torch.equal(a.simplified, b.simplified) and torch.equal(a.mask, b.mask)
    assert torch.equal(a.bits_after, b.bits_after)
    # the caller's random stream is left where it was
    assert torch.equal(torch.random.get_rng_state(), state)


def test_batchnorm_batch_of_one_in_training_mode_says_eval():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.BatchNorm1d(4 * 14 * 14), nn.Linear(4 * 14 * 14, 3)).train()
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"model\.eval\(\)"):
        simplify(model, torch.rand(1, 3, 16, 16), steps=2)


# ---- finding 5: precision


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_models_are_rated_in_float32(dtype):
    data = testbeds.load("digits-on-photos", "test", n=2, seed=3)
    model32 = testbeds.load_classifier("digits-on-photos")
    model = testbeds.load_classifier("digits-on-photos").to(dtype)
    x = data.images.to(dtype)
    attr, r = SimpleBits(model).attribute(x, return_result=True, steps=4)
    ref = simplify(model32, data.images, steps=1)
    # the original's bits are the float32 bits of the 8-bit image
    assert torch.allclose(r.bits_before, ref.bits_before, rtol=1e-5)
    assert r.simplified.dtype == torch.float32
    grid = r.simplified * 255
    assert float((grid - grid.round()).abs().max()) < 1e-4, "the 8-bit image is off the 8-bit grid"
    assert attr.dtype == dtype and attr.shape == x.shape
    assert np.isfinite(r.bits_after.numpy()).all()


# ---- the learned simplifier takes the head too


def test_train_simplifier_with_a_sigmoid_head():
    from simplebits_audit import train_simplifier

    model, x = CornerPatch(), corner_images(16)
    simplifier = train_simplifier(model, x, head="sigmoid", steps=3, batch_size=8, held_out=x[:4])
    assert simplifier.card["head"] == "sigmoid"
    r = simplify(model, x[:4], head="sigmoid", simplifier=simplifier)
    with torch.no_grad():
        assert bool(((torch.sigmoid(model(r.simplified)) >= 0.5) == (r.probs_before >= 0.5)).all())
    with pytest.raises(ValueError, match="head='sigmoid'"):
        train_simplifier(model, x, steps=1, batch_size=8)
    with pytest.raises(ValueError, match="no gradient path"):
        train_simplifier(Detached("detach"), torch.rand(8, 3, 16, 16), steps=1, batch_size=8)


# ---- finding 8: the map depends on the model


def test_simplebits_map_changes_when_the_model_is_reinitialised():
    from simplebits_audit.metrics.sanity import model_randomisation

    data = testbeds.load("shortcut", "test", n=8, seed=2)
    model = testbeds.load_classifier("shortcut")

    def explain_fn(m, x, t):
        return SimpleBits(m, steps=12).attribute(x, target=t, seed=0)[:, :1]

    rho = model_randomisation(explain_fn, model, data.images)
    # A constant map (the re-initialised model keeps its answer on the flat reference) shares no
    # ranking with the trained model's map: counted as 0.
    score = torch.where(torch.isnan(rho), torch.zeros_like(rho), rho)
    assert float(score.mean()) < 0.3, rho


def test_an_empty_batch_and_a_dtype_the_model_cannot_take_are_one_line_errors():
    # torch's own errors came out: "min(): Expected reduction dim ..." and "Input type (double) and bias type (float) ..."
    model = Detached("none")
    x = torch.rand(2, 3, 16, 16)
    for call in (lambda: SimpleBits(model).attribute(x[:0], target=0), lambda: simplify(model, x[:0])):
        with pytest.raises(ValueError, match=r"^inputs: an empty batch, shape \(0, 3, 16, 16\)$"):
            call()
    with pytest.raises(ValueError, match=r"^forward_func: failed on model inputs of dtype float64, the model's weights are float32 "
                                         r"\(.*\); give images of the model's dtype \(inputs\.to\(torch\.float32\)\)$"):
        SimpleBits(model).attribute(x.double(), target=0, steps=1)
    with pytest.raises(ValueError, match=r"weights are bfloat16 .*\(inputs\.to\(torch\.bfloat16\)\)$"):  # the advice names the real dtype
        simplify(Detached("none").to(torch.bfloat16), x, target=0, steps=1)


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.sub_(0.5)  # the image the engine passes needs gradients: torch refuses the in-place change
        return self.conv(x).mean((2, 3))


def test_a_forward_that_changes_its_input_in_place_is_told_so():
    with pytest.raises(ValueError, match=r"^forward_func: changes its input in place \(.*\); .*write x = x - \.\.\. instead"):
        simplify(InPlace(), torch.rand(2, 3, 16, 16), target=0, steps=1)
