"""Metrics with known answers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from simplebits_audit import metrics as M
from simplebits_audit.estimators import load_estimator


def _square_mask(b: int = 2, size: int = 16, lo: int = 4, hi: int = 10) -> torch.Tensor:
    m = torch.zeros(b, 1, size, size, dtype=torch.bool)
    m[..., lo:hi, lo:hi] = True
    return m


def _brute_auroc(score: torch.Tensor, mask: torch.Tensor) -> float:
    s, m = score.flatten(), mask.flatten()
    pos, neg = s[m], s[~m]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


# ---------------------------------------------------------------------------------------------
# localisation


def test_auroc_known_answers():
    mask = _square_mask()
    perfect = mask.float()
    assert torch.allclose(M.auroc(perfect, mask), torch.ones(2, dtype=torch.double))
    assert torch.allclose(M.auroc(-perfect, mask), torch.zeros(2, dtype=torch.double))
    assert torch.allclose(M.auroc(torch.zeros(2, 1, 16, 16), mask), torch.full((2,), 0.5, dtype=torch.double))
    g = torch.Generator().manual_seed(0)
    big = torch.rand(4, 1, 64, 64, generator=g) > 0.6
    noise = torch.rand(4, 1, 64, 64, generator=g)
    assert (M.auroc(noise, big) - 0.5).abs().max() < 0.03


def test_auroc_matches_pairwise_definition_with_ties():
    g = torch.Generator().manual_seed(1)
    maps = (torch.rand(3, 1, 7, 9, generator=g) * 4).floor()  # many ties
    masks = torch.rand(3, 1, 7, 9, generator=g) > 0.5
    ours = M.auroc(maps, masks)
    for i in range(3):
        assert ours[i].item() == pytest.approx(_brute_auroc(maps[i], masks[i]), abs=1e-12)


def test_auroc_nan_without_positives_and_shape_errors():
    maps = torch.rand(2, 1, 4, 4)
    masks = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    masks[1, 0, 0, 0] = True
    out = M.auroc(maps, masks)
    assert torch.isnan(out[0]) and not torch.isnan(out[1])
    with pytest.raises(ValueError, match="maps"):
        M.auroc(torch.rand(2, 3, 4, 4), masks)
    with pytest.raises(ValueError, match="masks"):
        M.auroc(maps, masks[:1])


def test_pointing_game():
    mask = _square_mask(1)
    inside = torch.zeros(1, 1, 16, 16)
    inside[0, 0, 5, 5] = 1
    outside = torch.zeros(1, 1, 16, 16)
    outside[0, 0, 10, 5] = 1  # one pixel below the square
    assert M.pointing_game(inside, mask).item() == 1
    assert M.pointing_game(outside, mask).item() == 0
    assert M.pointing_game(outside, mask, tolerance=1).item() == 1
    # a constant map scores the mask's share of the image, not a lucky hit
    assert M.pointing_game(torch.ones(1, 1, 16, 16), mask).item() == pytest.approx(36 / 256)


def test_relevance_mass_and_rank():
    mask = _square_mask(1)
    assert M.relevance_mass(mask.float(), mask).item() == 1
    assert M.relevance_rank(mask.float(), mask).item() == 1
    assert M.relevance_mass(1 - mask.float(), mask).item() == 0
    assert M.relevance_rank(1 - mask.float(), mask).item() == 0
    # negative relevance is not mass: half of the positive mass inside
    m = torch.where(mask, torch.tensor(1.0), torch.tensor(-5.0))
    m[0, 0].view(-1)[:36] = 1.0  # 36 positive pixels outside the square (rows 0-2)
    assert M.relevance_mass(m, mask).item() == pytest.approx(0.5)
    # ties at the threshold are shared: a constant map gets the mask's area share
    assert M.relevance_rank(torch.ones(1, 1, 16, 16), mask).item() == pytest.approx(36 / 256)
    assert torch.isnan(M.relevance_mass(torch.zeros(1, 1, 16, 16), mask)).all()


# ---------------------------------------------------------------------------------------------
# faithfulness


class _UsesKnownPixels(nn.Module):
    """Two logits: +/- the sum of the pixels in a known square, so only those pixels matter."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", mask[:1].float())

    def forward(self, x):
        s = (x * self.weight).sum((1, 2, 3)) / self.weight.sum() * 8
        return torch.stack([s, -s], 1)


def test_pixel_order_is_a_seeded_permutation():
    maps = torch.zeros(2, 1, 4, 4)
    maps[0, 0, 1, 2] = 3
    ranks = M.pixel_order(maps, seed=0)
    assert sorted(ranks[0].flatten().tolist()) == list(range(16))
    assert ranks[0, 0, 1, 2] == 0
    assert torch.equal(ranks, M.pixel_order(maps, seed=0)) and not torch.equal(ranks, M.pixel_order(maps, seed=1))
    assert ranks[1].flatten().tolist() != list(range(16))  # ties broken at random, not in raster order


def test_deletion_and_insertion_prefer_the_map_of_the_used_pixels(photos16):
    mask = _square_mask(4)
    model = _UsesKnownPixels(mask)
    x = photos16[:4] * 0.5
    x = torch.where(mask, x + 0.5, x)  # the used square is bright, so replacing it lowers class 0
    good, reverse = mask.float(), 1 - mask.float()
    kw = {"steps": 8, "reference": 0.0}
    d_good, d_rev = M.deletion_auc(model, x, good, 0, **kw), M.deletion_auc(model, x, reverse, 0, **kw)
    i_good, i_rev = M.insertion_auc(model, x, good, 0, **kw), M.insertion_auc(model, x, reverse, 0, **kw)
    assert (d_good < d_rev - 0.1).all() and (i_good > i_rev + 0.1).all()
    assert ((d_good >= 0) & (d_good <= 1)).all()


def test_perturbation_curve_endpoints(bright_dark_model, photos16):
    x = photos16[:3]
    maps = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    fr, del_curve = M.perturbation_curve(bright_dark_model, x, maps, 1, mode="deletion", steps=4)
    _, ins_curve = M.perturbation_curve(bright_dark_model, x, maps, 1, mode="insertion", steps=4)
    assert fr.tolist() == [0, 0.25, 0.5, 0.75, 1] and del_curve.shape == (5, 3)
    p = torch.softmax(bright_dark_model(x), 1)[:, 1]
    p_ref = torch.softmax(bright_dark_model(M.make_reference(x, "blur")), 1)[:, 1]
    assert torch.allclose(del_curve[0], p, atol=1e-5) and torch.allclose(del_curve[-1], p_ref, atol=1e-5)
    assert torch.allclose(ins_curve[0], p_ref, atol=1e-5) and torch.allclose(ins_curve[-1], p, atol=1e-5)
    with pytest.raises(ValueError, match="mode"):
        M.perturbation_curve(bright_dark_model, x, maps, mode="both")
    with pytest.raises(ValueError, match="reference"):
        M.deletion_auc(bright_dark_model, x, maps, reference="grey")


def test_infidelity_zero_for_exact_linear_attribution(photos16):
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    x = photos16[:3]
    exact = lin[1].weight[0].detach().view(1, 3, 16, 16).expand_as(x).contiguous()
    wrong = torch.rand_like(x)
    inf_exact = M.infidelity(lin, x, exact, 0, n_perturb_samples=4)
    inf_wrong = M.infidelity(lin, x, wrong, 0, n_perturb_samples=4)
    assert inf_exact.shape == (3,) and (inf_exact < 1e-6).all() and (inf_wrong > inf_exact).all()
    with pytest.raises(ValueError, match="attributions"):
        M.infidelity(lin, x, wrong[:, :1], 0)


def test_sensitivity_zero_for_constant_explanation(bright_dark_model, photos16):
    x = photos16[:2]
    const = M.sensitivity(lambda inp, target: torch.ones_like(inp), x, torch.tensor([0, 1]), n_perturb_samples=2)
    identity = M.sensitivity(lambda inp, target: inp.clone(), x, torch.tensor([0, 1]), n_perturb_samples=2)
    assert torch.equal(const, torch.zeros(2)) and (identity > 0).all()


# ---------------------------------------------------------------------------------------------
# bits-efficiency


def _curve(x: list[list[float]], y: list[list[float]]) -> M.BitsCurve:
    """One list of points per image (bits fractions x, probabilities y); the original has 4 bpd."""
    bpd = torch.tensor(x, dtype=torch.double).T * 4
    prob = torch.tensor(y, dtype=torch.double).T
    return M.BitsCurve(bpd, prob, torch.full((bpd.shape[1],), 4.0, dtype=torch.double), torch.ones(bpd.shape[1], dtype=torch.double))


def test_curve_auc_and_bits_needed_known_answers():
    # image 0: prob 1 from half the bits on -> area 0.5; image 1: 0.5 at 0.25 bits, 1 at the original -> 0.375
    c = _curve([[1.0, 0.5], [1.0, 0.25]], [[1.0, 1.0], [1.0, 0.5]])
    assert torch.allclose(M.curve_auc(c), torch.tensor([0.5, 0.375], dtype=torch.double))
    assert torch.allclose(M.bits_needed(c, 0.9), torch.tensor([0.5, 1.0], dtype=torch.double))
    assert torch.allclose(M.bits_needed(c, 0.5), torch.tensor([0.5, 0.25], dtype=torch.double))
    # order of points does not matter; a point worse than a cheaper one adds nothing (envelope)
    c2 = _curve([[0.5, 1.0, 0.8]], [[1.0, 1.0, 0.2]])
    assert M.curve_auc(c2).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="keep"):
        M.bits_needed(c, 0)


def test_bits_efficiency_curve_endpoints(bright_dark_model, photos16):
    est = load_estimator("analytic")
    x = photos16[:3]
    maps = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    curve = M.bits_efficiency_curve(bright_dark_model, x, maps, 1, est, fractions=(0.0, 0.5, 1.0))
    assert curve.bpd.shape == (3, 3) and curve.target_prob.shape == (3, 3)
    x8 = (x * 255).round() / 255
    assert torch.allclose(curve.bpd[-1], est.bpd(x8), atol=1e-5) and torch.allclose(curve.bpd_original, est.bpd(x8), atol=1e-5)
    blurred = (M.make_reference(x8, "blur") * 255).round() / 255
    assert torch.allclose(curve.bpd[0], est.bpd(blurred), atol=1e-5)
    assert (curve.bits_fraction[0] < 1).all()  # the blurred reference is cheaper
    auc = M.curve_auc(curve)
    assert ((auc >= 0) & (auc <= 1)).all()
    flat = M.bits_efficiency_curve(bright_dark_model, x, maps, 1, est, fractions=(0.0,), reference="mean")
    assert (flat.bpd[0] < curve.bpd[0]).all()
    with pytest.raises(ValueError, match="fractions"):
        M.bits_efficiency_curve(bright_dark_model, x, maps, 1, est, fractions=(1.5,))


def test_simplebits_curve_reads_the_lambda_path():
    result = SimpleNamespace(
        original=torch.zeros(2, 3, 4, 4),
        path_bits=torch.tensor([[96.0, 48.0], [48.0, 48.0], [24.0, 12.0]]),
        path_target_prob=torch.tensor([[0.9, 0.8], [0.9, 0.4], [0.45, 0.1]]),
        path_lambdas=torch.tensor([0.0, 1.0, 2.0]),
    )
    c = M.simplebits_curve(result)
    assert torch.allclose(c.bpd_original, torch.tensor([2.0, 1.0])) and torch.allclose(c.prob_original, torch.tensor([0.9, 0.8]))
    assert torch.allclose(c.bits_fraction[:, 0], torch.tensor([1.0, 0.5, 0.25]))
    # image 0 keeps everything at half the bits, half the probability at a quarter
    assert M.curve_auc(c)[0].item() == pytest.approx(0.25 * 0.5 + 0.5 * 1.0)


# ---------------------------------------------------------------------------------------------
# simplicity


def test_bits_removed_and_codec_check(photos16):
    x = photos16[:2]
    flat = x.mean((2, 3), keepdim=True).expand_as(x).contiguous()
    assert torch.allclose(M.bits_removed(x, x, "analytic"), torch.zeros(2, dtype=M.bits_removed(x, x, "analytic").dtype))
    assert (M.bits_removed(x, flat, "analytic") > 0).all()
    check = M.codec_check(x, flat)
    assert set(check) == {f"{c}_bpd_{w}" for c in ("png", "webp", "jxl") for w in ("before", "after")}
    assert all((check[f"{c}_bpd_after"] < check[f"{c}_bpd_before"]).all() for c in ("png", "webp", "jxl"))
    with pytest.raises(ValueError, match="simplified"):
        M.codec_check(x, flat[:1])


def test_top_share_hit_needs_half_the_mask_in_the_top_share_and_a_non_constant_map():
    from simplebits_audit.metrics import top_share_hit

    masks = torch.zeros(3, 1, 10, 10, dtype=torch.bool)
    masks[:, :, :2, :2] = True  # 4 of 100 pixels
    maps = torch.zeros(3, 1, 10, 10)
    maps[0, :, :2, :2] = 1.0  # the whole marker on top
    maps[1, :, 0, 0] = 1.0  # one marker pixel of four on top: not half
    # maps[2] constant: every pixel ties at the cut, nothing counts as inside
    assert top_share_hit(maps, masks).tolist() == [True, False, False]
