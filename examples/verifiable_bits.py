"""Bits you can check: one photo under each estimator beside PNG, WebP and JPEG-XL, then the default
estimator as a real lossless codec.

1. A crop of a held-out photo (never seen by any estimator in training), at 32, 64 and 224 px.
2. Bits per dimension under the analytic coder (the default) and the learned context coder,
   beside the file sizes of three real lossless codecs.
3. ``codecs.encode`` writes a file whose size is the default estimator's bits plus a small header;
   ``codecs.decode`` restores the image bit for bit.

    python examples/verifiable_bits.py
"""

from __future__ import annotations

import torch

from simplebits_audit import codecs, load_estimator
from simplebits_audit.photos import held_out_crops


def main(sizes: tuple[int, ...] = (32, 64, 224)) -> dict[int, dict[str, float]]:
    estimators = {name: load_estimator(name) for name in ("analytic", "context")}
    rows: dict[int, dict[str, float]] = {}
    for size in sizes:
        x = held_out_crops(1, size=size, seed=7)  # (1, 3, size, size) in [0, 1]
        with torch.no_grad():
            row = {name: float(est.bpd(x)) for name, est in estimators.items()}
        for codec in ("png", "webp", "jxl"):
            row[codec] = float(codecs.codec_bpd(x, codec, effort=9 if codec == "jxl" else None))
        rows[size] = row
        print(f"{size:>4} px  " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()) + "  (bits per dimension)")

    # the default estimator as a codec: file size = its bits + a header, decoded bit for bit
    x = held_out_crops(1, size=64, seed=7)[0]
    data = codecs.encode(x)
    restored = codecs.decode(data)
    bits = float(load_estimator().bits(x[None]))
    header = codecs.read_header(data)
    print(f"64 px: estimator {bits:.0f} bits, file {8 * len(data)} bits ({8 * header.size} of them header), "
          f"decoded bit for bit: {torch.equal(restored, torch.round(x * 255).to(torch.uint8))}")
    return rows


if __name__ == "__main__":
    main()
