"""The estimator as a real lossless codec (codecs.encode / decode) and JPEG-XL sizes (issue #24)."""

from __future__ import annotations

import io
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from simplebits_audit import codecs, entropy_coding
from simplebits_audit.estimators import AnalyticCoder, BitEstimator, list_estimators, load_estimator
from simplebits_audit.photos import held_out_crops

#: beyond the reported bits the payload holds the ANS coder's 32-bit initial state and rounding to
#: a whole 32-bit word
CODER_SLACK_BITS = 64


@pytest.fixture(scope="module")
def est() -> AnalyticCoder:
    return load_estimator("analytic")


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Four 32x32 held-out photo crops as uint8 (4, 3, 32, 32)."""
    return (held_out_crops(4, size=32, seed=7) * 255).round().to(torch.uint8)


def _bits(est: BitEstimator, u8: torch.Tensor) -> float:
    with torch.no_grad():
        return float(est.bits(u8.float()[None] / 255))


def _check(est: BitEstimator, u8: torch.Tensor) -> bytes:
    """Round trip bit for bit, and the payload is the estimator's bits within 1 % + coder slack."""
    data = codecs.encode(u8, est)
    back = codecs.decode(data)
    assert back.dtype == torch.uint8 and back.shape == u8.shape
    assert torch.equal(back, u8)
    header = codecs.read_header(data)
    assert header.size <= 32
    payload = 8 * (len(data) - header.size)
    bits = _bits(est, u8)
    assert 0.99 * bits <= payload <= 1.01 * bits + CODER_SLACK_BITS, (payload, bits)
    return data


def _half_flat(u8: torch.Tensor, vertical: bool) -> torch.Tensor:
    out = u8.clone()
    if vertical:
        out[..., : out.shape[-1] // 2] = out[..., : out.shape[-1] // 2].float().mean((1, 2), keepdim=True).round().to(torch.uint8)
    else:
        out[:, : out.shape[1] // 2] = 200
    return out


def test_photo_round_trip_rgb_and_gray_with_size_of_the_reported_bits(est, photos):
    for u8 in photos:
        _check(est, u8)
        _check(est, u8.float().mean(0, keepdim=True).round().to(torch.uint8))  # native single channel


def test_code_length_is_minus_log2_of_the_estimators_own_probabilities(est, photos):
    """The coded events' ideal length equals bits(x) to float precision: the same probabilities."""
    model = entropy_coding.coding_model(est)
    for u8 in [photos[0], photos[1, :1], _half_flat(photos[2], True)]:
        assert model.code_length(u8.numpy()) == pytest.approx(_bits(est, u8), rel=1e-4, abs=0.05)


def test_flat_and_simplified_looking_images(est, photos):
    for value in (0, 128, 255):
        data = _check(est, torch.full((3, 32, 32), value, dtype=torch.uint8))
        assert len(data) <= 24 + 8 + 0.15 * 3 * 32 * 32 / 8  # a flat image stays cheap
    _check(est, torch.full((1, 17, 23), 7, dtype=torch.uint8))
    for u8 in photos[:2]:
        _check(est, _half_flat(u8, vertical=True))
        _check(est, _half_flat(u8, vertical=False))


def test_improbable_values_cost_at_most_the_uniform_parts_bits_and_the_file_matches(est):
    """Jumps into a flat region: under a pure Laplace of scale 0.15 each cost hundreds of bits (a
    255-level jump about 2,400); the uniform part caps every value at log2(256 / w) = 18 bits, and
    the file still matches the reported bits."""
    u8 = torch.zeros((3, 16, 16), dtype=torch.uint8)
    u8[:, 5, 7] = torch.tensor([255, 0, 200], dtype=torch.uint8)
    u8[0, 11, 2] = 90
    u8[2, 3:6, 12] = 255
    _check(est, u8)
    cap = np.log2(256 / est.uniform_weight)
    assert cap == pytest.approx(18.0)
    with torch.no_grad():
        per_value = est.bits_map(u8.float()[None] / 255)  # (1, 1, H, W): summed over the planes
    assert float(per_value.max()) <= 3 * cap + 1e-3
    assert float(per_value.max()) > 17  # the jumps do cost about the cap: the test sees them
    assert _bits(est, u8) < 3 * 16 * 16 * 1.0  # under 1 bit per dimension (a pure Laplace: about 28)


def test_pure_laplace_and_tiny_uniform_weights_are_refused_as_codecs():
    for weight in (0.0, 2.0**-15):
        with pytest.raises(ValueError, match="uniform_weight"):
            codecs.encode(torch.zeros((1, 4, 4), dtype=torch.uint8), AnalyticCoder(uniform_weight=weight))


def test_odd_sizes_and_thin_images(est):
    gen = torch.Generator().manual_seed(0)
    for shape in [(3, 17, 23), (1, 17, 23), (3, 1, 1), (1, 1, 1), (3, 1, 9), (1, 9, 1), (3, 2, 31)]:
        smooth = torch.rand(shape, generator=gen).cumsum(-1).cumsum(-2)
        u8 = (smooth / smooth.max() * 255).round().to(torch.uint8)
        _check(est, u8)
        _check(est, torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8))


def test_float_input_equals_uint8_input_and_defaults(est, photos):
    u8 = photos[3]
    data = codecs.encode(u8)  # default estimator
    assert codecs.encode(u8.float() / 255, est) == data
    assert codecs.encode(u8.numpy(), "analytic") == data
    assert codecs.read_header(data).estimator == "analytic"
    assert torch.equal(codecs.decode(data, est), u8)
    bits = codecs.encoded_bits(torch.stack([u8.float() / 255] * 2), est)
    assert bits.tolist() == [8.0 * len(data)] * 2


def test_bitstream_is_stable():
    """A fixed image always gives the same bytes (format version 2): a change in the coding model,
    the tables or constriction's quantisation would make old files undecodable."""
    y, x = np.mgrid[0:12, 0:13]
    img = np.stack([(x * 37 + y * 91) % 256, (x * x + 3 * y) % 256, np.where(x < 6, 40, (x * y * 29) % 256)]).astype(np.uint8)
    data = codecs.encode(img)
    assert codecs.read_header(data).size == 24
    assert (len(data), zlib.crc32(data)) == (416, 0xA509B247), f"bitstream changed: {len(data)} bytes, crc {zlib.crc32(data):#010x}"
    assert np.array_equal(codecs.decode(data).numpy(), img)


def test_det_exp_is_accurate():
    z = -np.linspace(0, 700, 100_001)
    got = entropy_coding.det_exp(z)
    assert np.allclose(got, np.exp(z), rtol=2e-15, atol=0)


def test_decoding_speed(est, photos):
    data = codecs.encode(photos[0], est)
    t0 = time.perf_counter()
    codecs.decode(data, est)
    assert time.perf_counter() - t0 < 3.0


def test_estimators_without_a_coding_model_are_refused(photos):
    class Custom(BitEstimator):
        name = "custom"

        def _bits_map(self, x, noise, generator):
            return torch.zeros_like(x[:, :1])

    class TweakedAnalytic(AnalyticCoder):  # may change the model: not trusted as a codec
        pass

    refused = [Custom(), TweakedAnalytic()] + [load_estimator(n) for n in list_estimators() if n != "analytic"]
    for estimator in refused:
        with pytest.raises(ValueError, match="^estimator: .*cannot be used as a codec"):
            codecs.encode(photos[0], estimator)
    with pytest.raises(TypeError, match="estimator"):
        codecs.encode(photos[0], object())


def test_decoding_needs_the_same_coding_parameters(photos):
    data = codecs.encode(photos[0])
    with pytest.raises(ValueError, match="^estimator: the file was written by 'analytic'"):
        codecs.decode(data, AnalyticCoder(min_scale=0.2).freeze())


@pytest.mark.parametrize(
    "pixels, error, match",
    [
        (torch.zeros(1, 3, 8, 8), ValueError, r"\(C, H, W\).*x\[0\]"),
        (torch.zeros(8, 8), ValueError, r"\(C, H, W\)"),
        (torch.zeros(2, 8, 8), ValueError, "1 or 3 channels"),
        (torch.zeros(3, 0, 8), ValueError, "empty"),
        (torch.zeros(3, 8, 8, dtype=torch.int16), TypeError, "uint8 or floating point"),
        (torch.full((3, 8, 8), 2.0), ValueError, r"\[0, 1\]"),
        (torch.full((3, 8, 8), float("nan")), ValueError, "NaN"),
        ([[[0]]], TypeError, "torch.Tensor or numpy array"),
    ],
)
def test_bad_pixels_raise_clear_errors(pixels, error, match):
    with pytest.raises(error, match=match):
        codecs.encode(pixels)


def test_corrupt_files_raise_clear_errors(photos):
    data = codecs.encode(photos[1])
    with pytest.raises(TypeError, match="data must be bytes"):
        codecs.decode("not bytes")
    with pytest.raises(ValueError, match="not a simplebits estimator-codec file"):
        codecs.decode(b"\x89PNG\r\n\x1a\n" + data)
    with pytest.raises(ValueError, match="format version"):
        codecs.decode(data[:3] + bytes([99]) + data[4:])
    with pytest.raises(ValueError, match="^data: "):
        codecs.decode(data[:10])
    with pytest.raises(ValueError, match="^data: "):
        codecs.decode(data[:-4])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    with pytest.raises(ValueError, match="^data: "):
        codecs.decode(bytes(flipped))


# -- JPEG-XL --------------------------------------------------------------------------------------
@pytest.mark.parametrize("effort", [codecs.JXL_EFFORT, 9])
def test_jxl_round_trips_one_and_three_channels_of_odd_sizes(effort):
    rng = np.random.default_rng(0)
    for shape in [(17, 23), (17, 23, 3), (1, 1), (5, 1, 3)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        assert np.array_equal(codecs.jxl_decode(codecs.jxl_encode(img, effort)), img)


def test_jxl_codec_bits(photos):
    x = photos[:2].float() / 255
    bits = codecs.codec_bits(x, "jxl")
    expected = [8.0 * len(codecs.jxl_encode(img.numpy().transpose(1, 2, 0), codecs.JXL_EFFORT)) for img in photos[:2]]
    assert bits.tolist() == expected
    assert codecs.codec_bpd(x[:, :1], "jxl", effort=9).shape == (2,)
    assert (codecs.codec_bits(x, "jxl", effort=9) <= bits * 1.05).all()
    assert (codecs.codec_bits(x, "jxl") < codecs.codec_bits(x, "png")).all()


def test_webp_sizes_are_unchanged(photos):
    x = photos[:2].float() / 255
    expected = []
    for img in photos[:2]:
        buf = io.BytesIO()
        Image.fromarray(img.numpy().transpose(1, 2, 0)).save(buf, format="WEBP", lossless=True, quality=100, method=4)
        expected.append(8.0 * buf.tell())
    assert codecs.codec_bits(x).tolist() == expected


def test_codec_arguments_are_checked(photos):
    x = photos[:1].float() / 255
    with pytest.raises(ValueError, match="codec: expected one of"):
        codecs.codec_bits(x, "jpegxl")
    with pytest.raises(ValueError, match="effort: only the 'jxl' codec"):
        codecs.codec_bits(x, "webp", effort=9)
    for effort in (0, 11, 2.5, True):
        with pytest.raises(ValueError, match="effort: expected an integer from 1 to 10"):
            codecs.codec_bits(x, "jxl", effort=effort)
