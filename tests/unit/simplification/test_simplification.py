"""The simplification engine: contract, knob, robustness."""

from __future__ import annotations

import copy

import pytest
import torch

from simplebits_audit import SimplificationResult, load_estimator, simplify

from ...helpers import assert_unchanged, snapshot

FAST = dict(steps=12, n_snapshots=4, estimator="analytic")


def test_result_fields_and_shapes(bright_dark_model, photos16):
    r = simplify(bright_dark_model, photos16, **FAST)
    b = len(photos16)
    assert r.simplified.shape == photos16.shape and r.simplified_inputs.shape == photos16.shape
    assert r.bits_map_before.shape == (b, 1, 16, 16) and r.bit_reduction_map.shape == (b, 1, 16, 16)
    torch.testing.assert_close(r.bits_map_after.flatten(1).sum(1), r.bits_after, rtol=1e-5, atol=1e-2)
    from simplebits_audit.simplification.mask import INSERTION_FRACTIONS

    # the mask engine's path: the original, 4 snapshots, the simplest kept step, the mask-ranked images
    n_path = 1 + 4 + 1 + len(INSERTION_FRACTIONS)
    assert r.probs_before.shape == (b, 2) and r.path_bits.shape == (n_path, b) and r.path_images.shape == (n_path, b, 3, 16, 16)
    assert len(r.path_labels) == n_path and r.mask.shape == (b, 1, 16, 16)
    pixels = simplify(bright_dark_model, photos16, parameterization="pixels", **FAST)
    assert pixels.path_bits.shape == (5, b) and pixels.mask is None
    assert set(r.status) <= {"ok", "not kept", "non-finite"}
    assert r.simplified.min() >= 0 and r.simplified.max() <= 1
    # simplified images are 8-bit
    torch.testing.assert_close(r.simplified, torch.round(r.simplified * 255) / 255)
    assert [s == "ok" for s in r.status] == r.kept.tolist()


def test_simplifies_and_keeps_the_prediction(bright_dark_model, photos16):
    r = simplify(bright_dark_model, photos16, estimator="analytic", steps=40)
    assert r.kept.float().mean() >= 0.75
    assert (r.bits_after <= r.bits_before).all()  # the path starts at the original
    assert r.bits_after.sum() < 0.95 * r.bits_before.sum()
    assert (r.pred_after[r.kept] == r.target[r.kept]).all()


def test_top1_with_a_target_the_model_did_not_predict(bright_dark_model, photos16):
    with torch.no_grad():
        other = 1 - bright_dark_model(photos16).argmax(1)  # the runner-up class of a 2-class model
    r = simplify(bright_dark_model, photos16, target=other, **FAST)
    before = r.probs_before.gather(1, other[:, None])[:, 0]
    after = r.probs_after.gather(1, other[:, None])[:, 0]
    assert r.kept.all()  # the original itself qualifies, so something is always returned as kept
    assert (after >= 0.9 * before - 1e-6).all()


def test_keep_fraction_is_honoured(bright_dark_model, photos16):
    r = simplify(bright_dark_model, photos16, keep=0.9, objective="ce", target=1, **FAST)
    before = r.probs_before[:, 1]
    after = r.probs_after[:, 1]
    assert ((after >= 0.9 * before) == r.kept).all()


def test_same_seed_same_result(bright_dark_model, photos16):
    a = simplify(bright_dark_model, photos16, seed=3, **FAST)
    b = simplify(bright_dark_model, photos16, seed=3, **FAST)
    torch.testing.assert_close(a.simplified, b.simplified, rtol=0, atol=0)


def test_user_model_is_not_modified(bright_dark_model, photos16):
    model = bright_dark_model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    simplify(model, photos16, **FAST)
    assert not model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


@pytest.mark.parametrize("bound", [False, True], ids=["module", "bound-forward"])
def test_train_mode_model_warns_and_is_restored(bright_dark_model, photos16, bound):
    """A BatchNorm model in training mode: every forward pass would move its running statistics.
    ``model.forward`` is the same model (the guard once ignored a bound method and let them move)."""
    model = copy.deepcopy(bright_dark_model).train()  # the shared fixture stays as it is
    before = snapshot(model)
    with pytest.warns(UserWarning, match="training mode"):
        simplify(model.forward if bound else model, photos16[:2], steps=5, estimator="analytic")
    assert_unchanged(before, model)  # running_mean, running_var, num_batches_tracked included


class _FailsLater(torch.nn.Module):
    """Runs the wrapped classifier (moving its BatchNorm statistics in training mode), then fails on the third call."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.inner(x)
        if self.calls > 2:
            raise RuntimeError("boom")
        return out


def test_model_restored_after_an_error(bright_dark_model, photos16):
    model = _FailsLater(copy.deepcopy(bright_dark_model)).train()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"), pytest.warns(UserWarning, match="training mode"):
        simplify(model, photos16[:2], steps=5, estimator="analytic")
    assert model.calls == 3
    assert_unchanged(before, model)


def test_normalization_round_trip(bright_dark_model, photos16):
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    model = torch.nn.Sequential(torch.nn.Identity()).eval()
    model.forward = lambda z: bright_dark_model(z * s + m)  # a model that expects normalised input
    r = simplify(model, (photos16 - m) / s, normalization=(mean, std), **FAST)
    torch.testing.assert_close(r.original, photos16, atol=1e-5, rtol=0)
    torch.testing.assert_close(r.simplified_inputs, (r.simplified - m) / s, atol=1e-5, rtol=0)


def test_non_finite_image_is_flagged_and_batch_goes_on(bright_dark_model, photos16):
    def flaky(x):
        out = bright_dark_model(x)
        # image 0's loss turns NaN as soon as it moves away from the original
        bad = (x[0] - photos16[0]).abs().max() > 0.02
        return torch.cat([out[:1] * (float("nan") if bad else 1.0), out[1:]])

    r = simplify(flaky, photos16, steps=15, n_snapshots=3, estimator="analytic")
    assert r.status[0] == "non-finite"
    assert all(s != "non-finite" for s in r.status[1:])
    assert torch.isfinite(r.simplified).all()


def test_save_load_and_to(bright_dark_model, photos16, tmp_path):
    r = simplify(bright_dark_model, photos16, **FAST)
    path = r.save(tmp_path / "r.pt")
    loaded = SimplificationResult.load(path)
    torch.testing.assert_close(loaded.simplified, r.simplified)
    assert loaded.status == r.status and loaded.settings == r.settings
    assert r.to("cpu").bits_after.device.type == "cpu"


def test_latent_parameterisation_with_glow(bright_dark_model, photos16):
    glow = load_estimator("glow")
    for init in ("prior", "input"):
        r = simplify(bright_dark_model, photos16[:2], estimator=glow, parameterization="latent", latent_init=init, steps=4, n_snapshots=2)
        assert r.simplified.shape == photos16[:2].shape and torch.isfinite(r.bits_after).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(objective="mse"), "objective"),
        (dict(parameterization="wavelets"), "parameterization"),
        (dict(keep=1.5), "keep"),
        (dict(target=7), "target"),
        (dict(target=[0, 1]), "target"),
        (dict(lambda_start=0.0), "lambda_start"),
        (dict(parameterization="latent", estimator="analytic"), "Glow"),
    ],
)
def test_bad_arguments_fail_fast(bright_dark_model, photos16, kwargs, message):
    with pytest.raises(ValueError, match=message):
        simplify(bright_dark_model, photos16, **{**FAST, **kwargs})


def test_bad_inputs_fail_fast(bright_dark_model, photos16):
    with pytest.raises(ValueError, match="inputs"):
        simplify(bright_dark_model, photos16[0], **FAST)
    with pytest.raises(ValueError, match="NaN"):
        simplify(bright_dark_model, photos16 * float("nan"), **FAST)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        simplify(bright_dark_model, photos16 * 4 - 2, **FAST)
    with pytest.raises(ValueError, match="forward_func"):
        simplify(lambda x: x, photos16, **FAST)


def test_refine_ties_ranks_a_binary_mask_by_the_order_and_never_against_the_mask():
    from simplebits_audit.simplification.result import TIE_BREAK, refine_ties

    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0, 1.0, 0.0]]).view(1, 1, 1, 6)
    order = torch.tensor([[0.9, 0.2, 0.7, 0.1, 0.5, 0.4]]).view(1, 1, 1, 6)
    out = refine_ties(mask, order)
    flat = out.flatten().tolist()
    # kept pixels above every removed one, each group ranked by the order; values stay in [0, 1] within TIE_BREAK
    assert min(flat[1], flat[2], flat[4]) > max(flat[0], flat[3], flat[5])
    assert flat[2] > flat[4] > flat[1] and flat[0] > flat[5] > flat[3]
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert float((out - mask).abs().max()) <= TIE_BREAK
    # graded masks keep their order exactly; constant masks (nothing or everything needed) are unchanged
    graded = torch.tensor([0.1, 0.1004, 0.5, 0.5, 0.9]).view(1, 1, 1, 5)
    g = refine_ties(graded, torch.tensor([1.0, 0.0, 0.3, 0.6, 1.0]).view(1, 1, 1, 5)).flatten().tolist()
    assert g[0] < g[1] < g[2] < g[3] < g[4]
    for constant in (torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)):
        assert torch.equal(refine_ties(constant, torch.rand(2, 1, 3, 3)), constant)
    # a batch mixing an image whose order is its mask (returned as it is) with one that has ties to break
    both = refine_ties(torch.cat([graded, mask[..., :5]]), torch.cat([graded, order[..., :5]]))
    assert torch.equal(both[0], graded[0])
    assert torch.equal(both[1], refine_ties(mask[..., :5], order[..., :5])[0])


def test_flat_image_needs_nothing(bright_dark_model):
    """On a flat image every snapshot has the same bits: the result is the simplest mask (all zeros), not the original's."""
    flat = torch.full((2, 3, 16, 16), 0.3)
    flat[1] = 0.7
    r = simplify(bright_dark_model, flat, steps=5, estimator="analytic")
    assert r.status == ["ok", "ok"]
    assert float(r.mask.max()) < 0.5  # nothing needed (before: all ones, every pixel "needed")
    torch.testing.assert_close(r.simplified, torch.round(flat * 255) / 255)


def test_chunked_batch_checks_target_before_any_chunk(bright_dark_model, photos16):
    calls = []

    def forward(x):
        calls.append(len(x))
        return bright_dark_model(x)

    with pytest.raises(ValueError, match=r"target: class indices must be in \[0, 1\]"):
        simplify(forward, photos16[:3], [0, 1, 7], internal_batch_size=1, steps=5, estimator="analytic")
    assert calls == [2]  # one forward pass of two images, for the number of classes


@pytest.mark.parametrize("target", [torch.tensor([1.7, 0.2]), torch.tensor([True, False]), torch.tensor([1.0, 0.0])])
def test_a_target_tensor_that_is_not_integer_is_refused_not_truncated(bright_dark_model, photos16, target):
    # .long() would read 1.7 as class 1 and True as class 1: the explanation of a class nobody asked for
    with pytest.raises(ValueError, match=r"target: expected a tensor of integer class indices, got dtype torch\.(float32|bool)"):
        simplify(bright_dark_model, photos16[:2], target, steps=2, estimator="analytic")


class _PooledBatchNorm(torch.nn.Module):
    """BatchNorm1d after global pooling: in training mode it refuses a batch of one image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.norm, self.fc = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.conv(x).relu().mean((2, 3))))


def test_chunks_never_leave_one_image_to_a_train_mode_batchnorm(photos16):
    """Batch 3 in chunks of 2: the last image joins the first chunk (a chunk of one image was refused, after the first's work)."""
    model = _PooledBatchNorm().train()
    before = snapshot(model)
    with pytest.warns(UserWarning, match="training mode"):
        r = simplify(model, photos16[:3], internal_batch_size=2, steps=5, estimator="analytic")
    assert len(r) == 3
    assert_unchanged(before, model)


def test_latent_parameterization_refuses_shapes_its_glow_cannot_take(bright_dark_model, photos16):
    with pytest.raises(ValueError, match="inputs: parameterization='latent' needs 3 channels"):
        simplify(lambda x: bright_dark_model(x.expand(-1, 3, -1, -1)), photos16[:2, :1], parameterization="latent", estimator="glow")
    with pytest.raises(ValueError, match="multiples of 8"):
        simplify(bright_dark_model, photos16[:2, :, :12, :12], parameterization="latent", estimator="glow")


def test_the_mosaic_reference_is_each_cells_mean_colour():
    # reference="mosaic": each cell of a MOSAIC_CELLS x MOSAIC_CELLS grid takes its mean colour (8-bit), so a removed cell
    # keeps its coarse brightness; the cells partition the image also where a side does not divide by the grid.
    from simplebits_audit.simplification.mask import MOSAIC_CELLS, reference_image

    torch.manual_seed(0)
    x = torch.round(torch.rand(2, 3, 4 * MOSAIC_CELLS, 4 * MOSAIC_CELLS) * 255) / 255
    ref = reference_image(x, "mosaic")
    cell_means = torch.nn.functional.avg_pool2d(x, 4)
    assert ref.shape == x.shape and torch.equal(ref, torch.round(ref * 255) / 255)
    torch.testing.assert_close(ref[..., ::4, ::4], cell_means, atol=0.5 / 255 + 1e-6, rtol=0)  # 8-bit rounding
    assert torch.equal(ref, ref[..., ::4, ::4].repeat_interleave(4, -2).repeat_interleave(4, -1))  # constant on each cell
    odd = torch.rand(1, 1, MOSAIC_CELLS + 4, 2 * MOSAIC_CELLS - 4)  # 20 x 28: cells of 1-2 rows and 1-2 columns
    ref = reference_image(odd, "mosaic")
    h, w = odd.shape[-2:]
    for i in range(MOSAIC_CELLS):
        rows = [y for y in range(h) if y * MOSAIC_CELLS // h == i]
        for j in range(MOSAIC_CELLS):
            cols = [c for c in range(w) if c * MOSAIC_CELLS // w == j]
            cell = ref[0, 0, rows][:, cols]
            assert (cell == cell[0, 0]).all() and abs(float(cell[0, 0] - odd[0, 0, rows][:, cols].mean())) <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match="reference: 'mosaic' needs images larger"):
        reference_image(x[..., :MOSAIC_CELLS, :MOSAIC_CELLS], "mosaic")  # its own mosaic: nothing could be removed
    with pytest.raises(ValueError, match="reference"):
        reference_image(x, "mosaics")


def test_the_auto_reference_is_the_mosaic_on_large_images_only():
    # "auto": the mosaic once its cells are AUTO_MOSAIC_CELL_PIXELS a side (both sides), else the flat mean.
    from simplebits_audit.simplification.mask import AUTO_MOSAIC_CELL_PIXELS, MOSAIC_CELLS, reference_image, resolve_reference

    side = MOSAIC_CELLS * AUTO_MOSAIC_CELL_PIXELS
    torch.manual_seed(0)
    large, small = torch.rand(1, 3, side, side + 8), torch.rand(1, 3, side - 8, side + 8)
    assert torch.equal(reference_image(large, "auto"), reference_image(large, "mosaic"))
    assert torch.equal(reference_image(small, "auto"), reference_image(small, "mean"))
    assert [resolve_reference("auto", s) for s in ((side, side), (side - 1, 4 * side), (32, 32))] == ["mosaic", "mean", "mean"]
    assert resolve_reference("blur", (8, 8)) == "blur"


def test_wrong_channels_size_or_normalization_are_one_clear_error_naming_the_argument(photos16):
    # torch's own messages name no argument; the library says whose call failed, and on what
    rgb = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 14 * 14, 3)).eval()
    with pytest.raises(ValueError, match=r"forward_func: failed on model inputs of shape \(2, 1, 16, 16\)"):
        simplify(rgb, photos16[:2, :1], steps=2, estimator="analytic")
    with pytest.raises(ValueError, match=r"forward_func: failed on model inputs of shape \(2, 3, 20, 20\)"):
        simplify(rgb, torch.nn.functional.interpolate(photos16[:2], size=(20, 20)), steps=2, estimator="analytic")
    with pytest.raises(ValueError, match=r"normalization: 2 values per mean and std, but the images have 3 channels"):
        simplify(rgb, photos16[:2], normalization=([0.5, 0.5], [0.2, 0.2]), steps=2, estimator="analytic")
    # a torch.export archive traced on one batch size fails on another with an AssertionError: named, with the fix
    exported = torch.export.export(rgb, (photos16[:1],)).module()
    with pytest.raises(ValueError, match=r"forward_func: failed on model inputs of shape \(2, 3, 16, 16\).*dynamic batch dimension"):
        simplify(exported, photos16[:2], steps=2, estimator="analytic")
    # a dtype the model cannot take is named as a dtype, not blamed on the inputs' shape
    dtype = r"^forward_func: failed on model inputs of dtype float64, the model's weights are float32 \(.*should be the same"
    with pytest.raises(ValueError, match=dtype):
        simplify(rgb, photos16[:2].double(), steps=2, estimator="analytic")
