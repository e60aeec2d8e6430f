"""The README's method figure: originals, simplified images and masks on each testbed.

    python scripts/method_figure.py            # writes docs/simplified_testbeds.png

Test images (seed 0) of each testbed, the shipped classifier, target = its prediction, default
``simplify`` settings. Rows per testbed: original, simplified (the simplest image that keeps the
prediction), the mask (white = the original kept).
"""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from PIL import Image, ImageDraw

from simplebits_audit import simplify, testbeds

N, SCALE, PAD, LABEL_W = 10, 3, 2, 150


def main(out: Path = Path(__file__).resolve().parents[1] / "docs" / "simplified_testbeds.png") -> None:
    rows = []
    for name in ("digits-on-photos", "shortcut", "stripes"):
        data = testbeds.load(name, "test", n=N, seed=0)
        result = simplify(testbeds.load_classifier(name), data.images, parameterization="mask")
        mask = result.mask.expand(-1, 3, -1, -1)
        bits = (result.bits_after / result.bits_before).mean().item()
        for title, images in (
            (f"{name}: original", result.original),
            (f"simplified ({bits:.0%} of the bits)", result.simplified),
            ("mask", mask),
        ):
            rows.append((title, F.interpolate(images, scale_factor=SCALE, mode="nearest")))
    side = rows[0][1].shape[-1]
    width, height = LABEL_W + N * (side + PAD), len(rows) * (side + PAD)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (title, images) in enumerate(rows):
        y = r * (side + PAD)
        draw.text((4, y + side // 2 - 6), title, fill="black")
        for i, img in enumerate(images):
            arr = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            canvas.paste(Image.fromarray(arr), (LABEL_W + i * (side + PAD), y))
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    print(out)


if __name__ == "__main__":
    main()
