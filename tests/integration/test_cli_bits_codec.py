"""``simplebits bits``: the JPEG-XL column, and ``--encode`` / ``--decode`` restoring the image bit for bit (issue #24, part)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from simplebits_audit import testbeds

from ..helpers import run_cli


@pytest.mark.slow
def test_bits_encode_then_decode_restores_the_image(tmp_path):
    image = testbeds.load("digits-on-photos", "test", n=1, seed=0).images[0]
    array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    png = tmp_path / "digit.png"
    Image.fromarray(array).save(png)

    table = run_cli("bits", str(png))
    assert table.returncode == 0, table.stderr
    assert "JPEG-XL" in table.stdout

    enc = run_cli("bits", str(png), "--encode", str(tmp_path / "digit.sbits"))
    assert enc.returncode == 0, enc.stderr
    size = (tmp_path / "digit.sbits").stat().st_size
    bits = float(enc.stdout.split("the estimator's bits")[1].split()[0])
    header = int(enc.stdout.split("header ")[1].split(")")[0])
    # the file is the estimator's bits plus the header and at most 64 bits of coder state, give or
    # take the 24-bit quantisation's round-off (about 1e-4 of the bits)
    assert -1e-3 * bits <= size * 8 - header * 8 - bits <= 64 + 1e-3 * bits + 1

    dec = run_cli("bits", "--decode", str(tmp_path / "digit.sbits"), "--out", str(tmp_path / "back.png"))
    assert dec.returncode == 0, dec.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "back.png")), array)

    # a damaged file is a one-line error, and nothing is written
    damaged = tmp_path / "bad.sbits"
    damaged.write_bytes((tmp_path / "digit.sbits").read_bytes()[:-7])
    bad = run_cli("bits", "--decode", str(damaged), "--out", str(tmp_path / "bad.png"))
    assert bad.returncode == 2 and "error: --decode: " in bad.stderr and not (tmp_path / "bad.png").exists()


def test_encode_restores_grey_and_palette_files_and_refuses_what_it_cannot_restore(tmp_path):
    """A grey file is coded on one plane and decodes to the same grey PNG; a palette file to its RGB pixels;
    transparency and 16-bit samples are refused before anything is written (the CLI's functions, in process)."""
    import pytest

    from simplebits_audit.jobs.bits import decode_file, encode_file

    rng = np.random.default_rng(0)
    grey = (rng.random((21, 30)) * 255).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    palette = Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).convert("P")
    palette.save(tmp_path / "palette.png")
    for name, expected in (("grey", grey), ("palette", np.asarray(palette.convert("RGB")))):
        encode_file(tmp_path / f"{name}.png", tmp_path / f"{name}.sbits")
        decode_file(tmp_path / f"{name}.sbits", tmp_path / f"{name}-back.png")
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{name}-back.png")), expected), name
    rgba = np.dstack([np.asarray(palette.convert("RGB")), np.full((16, 16), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    for name, what in (("alpha", "transparent pixels"), ("deep", "more than 8 bits")):
        with pytest.raises(ValueError, match=f"IMAGES: .*{what}"):
            encode_file(tmp_path / f"{name}.png", tmp_path / f"{name}.sbits")
        assert not (tmp_path / f"{name}.sbits").exists()
    res = run_cli("bits", str(tmp_path / "alpha.png"), "--encode", str(tmp_path / "alpha.sbits"))  # the CLI's one-line error
    assert res.returncode == 2 and "transparent pixels" in res.stderr and "IMAGES" in res.stderr, res.stderr
