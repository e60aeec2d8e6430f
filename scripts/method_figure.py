"""The README's method figure: originals, simplified images and masks on each testbed.

    python scripts/method_figure.py            # writes docs/simplified_testbeds.png
    python scripts/method_figure.py --testbeds photo-objects --n 8 --scale 1 --out docs/photo_objects_simplified.png

Test images (seed 0) of each testbed, the shipped classifier, target = its prediction, default
``simplify`` settings. Rows per testbed: original, simplified (the simplest image that keeps the
prediction), the mask (white = the original kept).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch.nn.functional as F
from PIL import Image, ImageDraw

from simplebits_audit import simplify, testbeds

PAD, LABEL_W = 2, 150
DOCS = Path(__file__).resolve().parents[1] / "docs"


def main(
    out: Path = DOCS / "simplified_testbeds.png", names: tuple[str, ...] = ("digits-on-photos", "shortcut", "stripes"), n: int = 10,
    scale: int = 3,
) -> None:
    rows = []
    for name in names:
        data = testbeds.load(name, "test", n=n, seed=0)
        result = simplify(testbeds.load_classifier(name), data.images, parameterization="mask")
        mask = result.mask.expand(-1, 3, -1, -1)
        bits = (result.bits_after / result.bits_before).mean().item()
        for title, images in (
            (f"{name}: original", result.original),
            (f"simplified ({bits:.0%} of the bits)", result.simplified),
            ("mask", mask),
        ):
            rows.append((title, F.interpolate(images, scale_factor=scale, mode="nearest")))
    side = rows[0][1].shape[-1]
    width, height = LABEL_W + n * (side + PAD), len(rows) * (side + PAD)
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbeds", default="digits-on-photos,shortcut,stripes", help="comma-separated testbed names")
    parser.add_argument("--n", type=int, default=10, help="test images per testbed")
    parser.add_argument("--scale", type=int, default=3, help="pixel magnification")
    parser.add_argument("--out", type=Path, default=DOCS / "simplified_testbeds.png")
    args = parser.parse_args()
    main(args.out, tuple(args.testbeds.split(",")), args.n, args.scale)
