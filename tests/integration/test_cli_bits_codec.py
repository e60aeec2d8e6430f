"""``simplebits bits``: the JPEG-XL column, and ``--encode`` / ``--decode`` restoring the image bit for bit (issue #24, part)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from simplebits_audit import testbeds

from ..helpers import run_cli


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
    # the file is the estimator's bits plus the header and at most 64 bits of coder state
    assert 0 <= size * 8 - header * 8 - bits <= 64 + 1

    dec = run_cli("bits", "--decode", str(tmp_path / "digit.sbits"), "--out", str(tmp_path / "back.png"))
    assert dec.returncode == 0, dec.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "back.png")), array)

    # a damaged file is a one-line error, and nothing is written
    damaged = tmp_path / "bad.sbits"
    damaged.write_bytes((tmp_path / "digit.sbits").read_bytes()[:-7])
    bad = run_cli("bits", "--decode", str(damaged), "--out", str(tmp_path / "bad.png"))
    assert bad.returncode == 2 and "data" in bad.stderr and not (tmp_path / "bad.png").exists()
