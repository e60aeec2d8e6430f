"""The estimator contract (SPEC section 3), checked on every registered estimator."""

from __future__ import annotations

import socket

import pytest
import torch

from simplebits_audit import list_estimators, load_estimator
from simplebits_audit.estimators import ARCHITECTURES, DEFAULT_ESTIMATOR, ContextCoder, Glow, model_card
from simplebits_audit.photos import held_out_crops


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def estimator(request):
    return load_estimator(request.param)


@pytest.fixture(scope="module")
def photos32():
    return held_out_crops(8, size=32, seed=5)


def test_every_architecture_is_registered_with_weights():
    assert sorted(list_estimators()) == sorted(ARCHITECTURES)
    assert DEFAULT_ESTIMATOR in list_estimators()


def test_map_sums_to_total_and_shapes(estimator, photos32):
    bmap = estimator.bits_map(photos32)
    assert bmap.shape == (8, 1, 32, 32)
    bits = estimator.bits(photos32)
    assert bits.shape == (8,)
    torch.testing.assert_close(bmap.flatten(1).sum(1), bits, rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(estimator.bpd(photos32), bits / (3 * 32 * 32))


def test_gradients_are_finite_and_nonzero(estimator, photos32):
    x = photos32.clone().requires_grad_(True)
    estimator.bits(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_frozen_and_deterministic(estimator, photos32):
    assert not estimator.training
    assert all(not p.requires_grad for p in estimator.parameters())
    torch.testing.assert_close(estimator.bits(photos32), estimator.bits(photos32), rtol=0, atol=0)


def test_noise_is_only_used_when_asked(estimator, photos32):
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    noisy1 = estimator.bits(photos32, noise=True, generator=g1)
    noisy2 = estimator.bits(photos32, noise=True, generator=g2)
    torch.testing.assert_close(noisy1, noisy2)


def test_smooth_images_cost_fewer_bits_than_noise(estimator):
    torch.manual_seed(0)
    ramp = torch.linspace(0.2, 0.8, 32).view(1, 1, 1, 32).expand(2, 3, 32, 32).contiguous()
    noise = torch.rand(2, 3, 32, 32)
    assert (estimator.bpd(ramp) + 2 < estimator.bpd(noise)).all()


def test_grayscale_and_odd_sizes(estimator):
    torch.manual_seed(0)
    gray = torch.rand(2, 1, 13, 21)
    bmap = estimator.bits_map(gray)
    assert bmap.shape == (2, 1, 13, 21)
    torch.testing.assert_close(bmap.flatten(1).sum(1), estimator.bits(gray), rtol=1e-5, atol=1e-2)
    assert torch.isfinite(bmap).all()


def test_clear_errors(estimator):
    with pytest.raises(ValueError, match="dimensions"):
        estimator.bits(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        estimator.bits(torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        estimator.bits(torch.rand(1, 3, 8, 8) * 255)
    with pytest.raises(ValueError, match="NaN"):
        estimator.bits(torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(TypeError, match="floating"):
        estimator.bits(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_unknown_names_and_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="name_or_path"):
        load_estimator("no-such-estimator")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable estimator checkpoint"):
        load_estimator(bad)


def test_shipped_weights_load_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for name in list_estimators():
        est = load_estimator(name)
        card = model_card(name)
        assert card["parameters"] == est.num_parameters
        if name != "analytic":
            assert card["held_out_bpd"] < card["held_out_webp_bpd"]


@pytest.mark.slow
def test_glow_encode_decode_roundtrip(photos32):
    glow = load_estimator("glow")
    assert isinstance(glow, Glow)
    latents = glow.encode(photos32)
    assert [z.shape[1:] for z in latents] == [(6, 16, 16), (12, 8, 8), (48, 4, 4)]
    torch.testing.assert_close(glow.decode(latents), photos32, atol=1e-3, rtol=0)
    # The all-zeros latent (the prior's mode) is a valid, simple image.
    simple = glow.decode([torch.zeros_like(z) for z in latents])
    assert glow.bpd(simple).mean() < glow.bpd(photos32).mean()


def test_resolve_estimator_one_way_for_every_argument():
    from simplebits_audit.estimators import AnalyticCoder, resolve_estimator

    assert isinstance(resolve_estimator(None), AnalyticCoder)
    assert isinstance(resolve_estimator("analytic", device="cpu"), AnalyticCoder)
    given = AnalyticCoder()
    assert resolve_estimator(given) is given
    assert resolve_estimator(given, device="cpu") is given  # already there: no copy
    with pytest.raises(TypeError, match="estimator: expected a BitEstimator"):
        resolve_estimator(3)
    with pytest.raises(ValueError, match="name_or_path"):
        resolve_estimator("no-such-estimator")


def test_a_pickled_file_as_estimator_is_one_line_without_torch_advice(tmp_path):
    """torch's refusal runs to several lines and advises weights_only=False (which would run the file's code)."""
    path = tmp_path / "pickled.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    from simplebits_audit.estimators import resolve_estimator

    with pytest.raises(ValueError) as caught:
        resolve_estimator(path)
    expected = "is not a readable estimator checkpoint (UnpicklingError: not a weights-only checkpoint)"
    assert str(caught.value) == f"name_or_path: {str(path)!r} {expected}"


def _autograd_log_prob(value, pred, scale, low, high):
    """The analytic coder's bin probability with autograd through every branch (the reference)."""
    from simplebits_audit.estimators.analytic import _log_prob

    edge = (value > high - 0.5).to(torch.int8) - (value < low + 0.5).to(torch.int8)
    return _log_prob(value - pred, scale, edge)


@pytest.mark.parametrize("kind", ["random", "edges", "flat", "tiny scale"])
def test_the_analytic_coders_closed_form_gradient_equals_autograd(kind):
    from simplebits_audit.estimators.analytic import _d_log_prob

    g = torch.Generator().manual_seed(3)
    n = 4000
    value = torch.randint(0, 256, (n,), generator=g).double()
    pred = torch.rand(n, generator=g, dtype=torch.double) * 300 - 20
    scale = torch.rand(n, generator=g, dtype=torch.double) * 30 + 0.15
    if kind == "edges":
        value = torch.where(torch.rand(n, generator=g) < 0.5, torch.zeros_like(value), torch.full_like(value, 255.0))
    elif kind == "flat":
        pred = value + torch.rand(n, generator=g, dtype=torch.double) - 0.5  # the centre bin
    elif kind == "tiny scale":
        scale = torch.full_like(scale, 0.15)
        pred = value + torch.randint(-3, 4, (n,), generator=g).double()
    low, high = torch.zeros_like(value), torch.full_like(value, 255.0)
    args = [t.clone().requires_grad_(True) for t in (value, pred, scale)]
    ref_grads = torch.autograd.grad(_autograd_log_prob(*args, low, high).sum(), args)
    edge = (value > high - 0.5).to(torch.int8) - (value < low + 0.5).to(torch.int8)
    de, db = _d_log_prob(value - pred, scale, edge)
    for a, b in zip((de, -de, db), ref_grads):  # d/dvalue, d/dpred, d/dscale
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_the_analytic_coders_pixel_gradient_is_finite_and_matches_finite_differences():
    est = load_estimator("analytic")
    x = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(0), dtype=torch.double)
    est = est.double()
    assert torch.autograd.gradcheck(lambda t: est.bits(t), (x.requires_grad_(True),), eps=1e-7, atol=1e-4)


def test_the_analytic_bin_probability_equals_the_laplace_cdf_difference():
    """Independent float64 reference: P(bin) = F(e + 1/2) - F(e - 1/2) inside, the whole tail at the edges."""
    from simplebits_audit.estimators.analytic import _log_prob

    g = torch.Generator().manual_seed(5)
    n = 5000
    e = torch.randint(-40, 41, (n,), generator=g).double() + (torch.rand(n, generator=g, dtype=torch.double) - 0.5) * 0.9
    b = torch.rand(n, generator=g, dtype=torch.double) * 10 + 0.3
    edge = torch.randint(-1, 2, (n,), generator=g).to(torch.int8)

    def cdf(t):
        return torch.where(t < 0, 0.5 * torch.exp(t / b), 1 - 0.5 * torch.exp(-t / b))

    expected = torch.where(edge < 0, cdf(e + 0.5), torch.where(edge > 0, 1 - cdf(e - 0.5), cdf(e + 0.5) - cdf(e - 0.5)))
    keep = expected > 1e-9  # where the naive difference is still accurate
    torch.testing.assert_close(_log_prob(e, b, edge)[keep], expected.log()[keep], rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("kind", ["photo", "flat and ties", "grey", "saturated", "one row", "one column"])
def test_the_analytic_coders_hand_written_gradient_equals_autograd(kind):
    from simplebits_audit.estimators.analytic import autograd_bits_map

    coder = load_estimator("analytic").double()
    g = torch.Generator().manual_seed(7)
    x = {
        "photo": lambda: held_out_crops(2, size=12, seed=1).double(),
        "flat and ties": lambda: (torch.rand(2, 3, 9, 11, generator=g, dtype=torch.double) * 4).round() / 255 + 0.4,
        "grey": lambda: (torch.rand(2, 1, 10, 10, generator=g, dtype=torch.double) * 255).round() / 255,
        "saturated": lambda: torch.rand(2, 3, 8, 8, generator=g, dtype=torch.double).round(),
        "one row": lambda: torch.rand(1, 3, 1, 9, generator=g, dtype=torch.double),
        "one column": lambda: torch.rand(1, 3, 9, 1, generator=g, dtype=torch.double),
    }[kind]()
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got, want = coder.bits(a), autograd_bits_map(coder, b).sum((1, 2, 3))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-8)
    (ga,), (gb,) = torch.autograd.grad(got.sum(), a), torch.autograd.grad(want.sum(), b)
    torch.testing.assert_close(ga, gb, rtol=1e-8, atol=1e-8)


def test_the_analytic_coders_no_grad_path_rates_exactly_as_the_gradient_path():
    # Without a gradient the coder skips what the adjoint keeps; the bits must not move by a bit.
    coder = load_estimator("analytic")
    x = torch.cat([held_out_crops(3, size=16, seed=2), torch.full((1, 3, 16, 16), 0.5), torch.rand(1, 3, 16, 16).round()])
    with torch.no_grad():
        fast = coder.bits_map(x)
    slow = coder.bits_map(x.clone().requires_grad_(True))
    assert torch.equal(fast, slow.detach())


# -- the learned context coder ------------------------------------------------------------------
def test_the_context_coders_probabilities_sum_to_one_over_the_256_values():
    """An exact coding model: the last pixel's 256 values (all else fixed) have probabilities summing to 1,
    including the edge bins 0 and 255 that hold the tails."""
    torch.manual_seed(0)
    for coder in (ContextCoder(), load_estimator("context")):
        gray = (torch.rand(1, 1, 6, 7) * 255).round() / 255
        batch = gray.repeat(256, 1, 1, 1)
        batch[:, 0, -1, -1] = torch.arange(256) / 255
        with torch.no_grad():
            bits = coder.bits_map(batch)[:, 0, -1, -1].double()
        assert float((2.0 ** -bits).sum()) == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_context_coder_is_causal(channels):
    """Each pixel's bits depend on it and the pixels before it in raster order only (what makes it a codec)."""
    coder = load_estimator("context")
    x = torch.rand(1, channels, 12, 12, requires_grad=True)
    coder.bits_map(x)[0, 0, 6, 5].backward()
    grad = x.grad[0].abs().sum(0)
    assert float(grad[6, 5]) > 0
    assert float(grad[7:].sum()) == 0 and float(grad[6, 6:].sum()) == 0
    assert float(grad[6, 3] + grad[5, 7] + grad[4, 6]) > 0  # it reads W, NE and NNE-side context


def test_the_context_coders_planes_read_only_the_planes_coded_before_at_the_same_pixel():
    """G's bits at a pixel do not depend on that pixel's R or B, R - G's not on its B."""
    coder = load_estimator("context")
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    planes = coder.plane_bits_map(x)
    assert planes.shape == (1, 3, 8, 8)
    torch.testing.assert_close(planes.sum(1, keepdim=True), coder.bits_map(x))
    for plane, later in ((0, (0, 2)), (1, (2,))):  # channels of x: R = 0, G = 1, B = 2
        (grad,) = torch.autograd.grad(planes[0, plane, 4, 4], x, retain_graph=True)
        assert all(float(grad[0, ch, 4, 4]) == 0 for ch in later), (plane, later)
        assert float(grad[0, 1, 4, 4].abs()) > 0  # each plane reads the pixel's G


def test_the_context_coder_beats_the_analytic_coder_on_held_out_photos():
    crops = held_out_crops(32, size=32, seed=9)
    assert float(load_estimator("context").bpd(crops).mean()) < 0.97 * float(load_estimator("analytic").bpd(crops).mean())


def test_the_analytic_coder_rates_few_level_images_near_a_real_codec_and_photos_as_before():
    """A posterised photo (2 levels per channel) cost 28.6 bits per dimension under the pure Laplace
    (more than its raw 8, 95x its WebP file); with the uniform part it costs under 2x WebP, and
    photos cost no more than under the pure Laplace."""
    from simplebits_audit.codecs import codec_bits
    from simplebits_audit.estimators.analytic import AnalyticCoder

    photos = (held_out_crops(16, size=32, seed=3) * 255).round() / 255
    two_levels = photos.round()
    mixed, pure = AnalyticCoder(), AnalyticCoder(uniform_weight=0)
    with torch.no_grad():
        assert float(pure.bpd(two_levels).mean()) > 8  # the defect this guards against
        bpd = float(mixed.bpd(two_levels).mean())
        webp = float(codec_bits(two_levels, "webp").mean()) / two_levels[0].numel()
        assert bpd < 2 * webp and bpd < 1.0
        assert float(mixed.bpd(photos).mean()) <= float(pure.bpd(photos).mean())


def test_the_analytic_coders_uniform_weight_is_checked():
    from simplebits_audit.estimators.analytic import AnalyticCoder

    for bad in (-0.1, 1.0, True, "0.01", float("nan"), None):
        with pytest.raises(ValueError, match="uniform_weight"):
            AnalyticCoder(uniform_weight=bad)
    import numpy as np

    assert AnalyticCoder(uniform_weight=np.float32(0.25)).uniform_weight == 0.25  # a numpy number is a number


@pytest.mark.parametrize("weight", [0.0, 2.0**-10, 0.25])
def test_the_analytic_coders_gradient_equals_autograd_with_and_without_the_uniform_part(weight):
    from simplebits_audit.estimators.analytic import AnalyticCoder, autograd_bits_map

    coder = AnalyticCoder(uniform_weight=weight).double()
    x = torch.rand(2, 3, 7, 8, generator=torch.Generator().manual_seed(1), dtype=torch.double)
    x[:, :, :3] = (x[:, :, :3] > 0.5).double()  # two-level rows: residuals where the uniform part dominates
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    coder.bits(a).sum().backward()
    autograd_bits_map(coder, b).sum().backward()
    torch.testing.assert_close(coder.bits(x), autograd_bits_map(coder, x).sum((1, 2, 3)))
    torch.testing.assert_close(a.grad, b.grad)
