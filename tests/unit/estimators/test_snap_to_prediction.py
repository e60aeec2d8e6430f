"""The analytic coder's near-lossless pass (``snap_to_prediction``): what it changes, by how much, and that it pays."""

from __future__ import annotations

import pytest
import torch

from simplebits_audit.codecs import codec_bits
from simplebits_audit.estimators import AnalyticCoder
from simplebits_audit.estimators.analytic import med_predict, snap_to_prediction


def _planes(x: torch.Tensor) -> torch.Tensor:
    v = (x * 255).round()
    return torch.cat([v[:, 1:2], v[:, 0:1] - v[:, 1:2], v[:, 2:3] - v[:, 1:2]], 1) if v.shape[1] == 3 else v


def _raster_reference(x: torch.Tensor, near: int) -> torch.Tensor:
    """The pass written pixel by pixel, in raster order, from the coder's description (LOCO-I's MED, its border rules)."""
    p = _planes(x)
    start = torch.tensor([128.0, 0.0, 0.0] if p.shape[1] == 3 else [128.0])
    h, w = p.shape[-2:]
    for b in range(p.shape[0]):
        for c in range(p.shape[1]):
            for i in range(h):
                for j in range(w):
                    if i == 0 and j == 0:
                        pred = start[c]
                    else:
                        west = p[b, c, i, j - 1] if j > 0 else p[b, c, i - 1, j]
                        north = p[b, c, i - 1, j] if i > 0 else west
                        northwest = p[b, c, i - 1, j - 1] if i > 0 and j > 0 else (west if i == 0 else north)
                        lo, hi = min(west, north), max(west, north)
                        pred = lo if northwest >= hi else hi if northwest <= lo else west + north - northwest
                    if abs(p[b, c, i, j] - pred) <= near:
                        p[b, c, i, j] = pred
    if p.shape[1] == 3:
        p = torch.cat([p[:, 1:2] + p[:, 0:1], p[:, 0:1], p[:, 2:3] + p[:, 0:1]], 1)
    return p.clamp(0, 255) / 255


def _dithered(channels: int, seed: int = 0) -> torch.Tensor:
    """Flat blocks with a third of the pixels a level off: what gradient descent through 8-bit rounding leaves."""
    g = torch.Generator().manual_seed(seed)
    base = torch.full((3, channels, 16, 20), 90.0)
    base[..., 8:, :] = 170.0
    base[..., :, 12:] += 30.0
    off = (torch.rand(base.shape, generator=g) < 1 / 3) * torch.randint(0, 2, base.shape, generator=g).mul(2).sub(1)
    return (base + off) / 255


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("near", [1, 3])
@pytest.mark.parametrize("size", [(7, 9), (1, 6), (5, 1)])
def test_equals_a_pixel_by_pixel_raster_pass(channels, near, size):
    g = torch.Generator().manual_seed(channels * 10 + near)
    x = torch.randint(40, 60, (2, channels, *size), generator=g) / 255
    assert torch.equal(snap_to_prediction(x, near), _raster_reference(x, near))


def test_the_first_pixel_is_predicted_as_the_coder_starts():
    # The coder predicts the corner as grey 128 with no colour (planes G, R - G, B - G = 128, 0, 0).
    x = torch.full((1, 3, 2, 2), 200 / 255)
    x[0, :, 0, 0] = torch.tensor([127.0, 126.0, 128.0]) / 255  # planes 126, 1, 2: all within 2 of the start
    assert torch.equal((snap_to_prediction(x, 2)[0, :, 0, 0] * 255).round(), torch.tensor([128.0, 128.0, 128.0]))
    # near 1: G (2 off) and B - G (2) are kept, R - G (1) goes to 0, so R = G
    assert torch.equal((snap_to_prediction(x, 1)[0, :, 0, 0] * 255).round(), torch.tensor([126.0, 126.0, 128.0]))


def test_saturated_images_stay_in_range_move_little_and_get_cheaper():
    # Near black and white, R = (R - G) + G can leave [0, 255] after the pass and is clamped (documented).
    x = torch.cat([_dithered(3) * 0 + _dithered(3, seed=1) - 89 / 255, _dithered(3, seed=2) + 84 / 255]).clamp(0, 1)
    y = snap_to_prediction(x, 2)
    assert y.min() >= 0 and y.max() <= 1
    assert (_planes(y) - _planes(x)).abs().max() <= 2 and ((y - x) * 255).abs().max() <= 4 + 1e-4
    assert AnalyticCoder().bits(y).sum() < 0.5 * AnalyticCoder().bits(x).sum()


@pytest.mark.parametrize("channels", [1, 3])
def test_every_residual_is_zero_or_beyond_the_tolerance_and_planes_move_at_most_near(channels):
    near = 2
    x = _dithered(channels)
    y = snap_to_prediction(x, near)
    planes_x, planes_y = _planes(x), _planes(y)
    assert (planes_y - planes_x).abs().max() <= near
    start = torch.tensor([128.0, 0.0, 0.0] if channels == 3 else [128.0]).view(1, -1, 1, 1)
    residual = planes_y - med_predict(planes_y, start)
    assert ((residual == 0) | (residual.abs() > near)).all()
    assert (residual == 0).float().mean() > 0.9  # the dither is gone


def test_pays_under_the_coder_and_a_real_codec():
    x = _dithered(3)
    y = snap_to_prediction(x, 2)
    coder = AnalyticCoder()
    assert (coder.bits(y) < 0.5 * coder.bits(x)).all()
    assert (codec_bits(y) < 0.5 * codec_bits(x)).all()  # lossless WebP agrees


def test_near_zero_is_the_rounded_image_and_bad_arguments_name_themselves():
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(snap_to_prediction(x, 0), (x * 255).round() / 255)
    for near in (-1, 1.5, True):
        with pytest.raises(ValueError, match="^near"):
            snap_to_prediction(x, near)
    with pytest.raises(ValueError, match="^pixels"):
        snap_to_prediction(torch.rand(2, 2, 8, 8), 1)
    with pytest.raises(ValueError, match="^pixels"):
        snap_to_prediction(torch.rand(2, 3, 0, 8), 1)
    with pytest.raises(TypeError, match="^pixels"):
        snap_to_prediction(torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8), 1)  # 0-255 integers, not [0, 1]
    assert snap_to_prediction(x.double(), 0).dtype == snap_to_prediction(x.double(), 1).dtype == torch.float64
