"""Where a learned simplifier's mask sits, and what its order head ranks: the diagnostics behind the order head (issue #23).

For each testbed, with the simplifiers ``benchmarks/simplifier_map_design.py`` saved (deletion 0, training seed 0, and
the same with its order head, ``--order-steps 1000``), on 256 test images (seed 0 on report testbeds, 1 on design
testbeds): quantiles of the mask logits on the object's cells; the share of grid cells whose mask is below 1e-4, below
half an 8-bit level (``HALF_LEVEL``) and exactly 0 in float32; localisation AUROC of the mask (what the map was) and of
the raw logits (upsampled alike); and, on the images that need something (the flat mean colour alone changes the
answer), the share of the object's pixels the returned image keeps (mask >= ``HALF_LEVEL``) and the AUROC of the order
head's ranking alone.

    python benchmarks/simplifier_mask_levels.py --testbeds colour-cue,texture-cue,shape-cue
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from simplebits_audit import SimpleBits, Simplifier, testbeds
from simplebits_audit.metrics import auroc
from simplebits_audit.simplification.mask import reference_image
from simplebits_audit.simplification.result import HALF_LEVEL

OUT = Path(__file__).parent / "out"


def _up(grid: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(grid, size=tuple(size), mode="bilinear", align_corners=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbeds", default="colour-cue,texture-cue,shape-cue")
    parser.add_argument("--n", type=int, default=256)
    args = parser.parse_args()
    for testbed in args.testbeds.split(","):
        seed = 1 if testbed in testbeds.DESIGN_TESTBEDS else 0
        model = testbeds.load_classifier(testbed)
        data = testbeds.load(testbed, "test", n=args.n, seed=seed)
        with torch.no_grad():
            targets = model(data.images).argmax(1)
            needs = model(reference_image(data.images, "mean")).argmax(1) != targets
        plain = Simplifier.load(OUT / f"simplifier-map-{testbed}-deletion0-seed0.pt")
        ordered = Simplifier.load(OUT / f"simplifier-map-{testbed}-deletion0-seed0-order1000.pt")
        x = torch.round(data.images * 255) / 255
        with torch.no_grad():
            logits = plain.mask_logits(x)
        mask = torch.sigmoid(logits)
        inside = F.adaptive_avg_pool2d(data.masks.float(), logits.shape[-2:]) > 0.5
        q = torch.tensor([0.01, 0.1, 0.5, 0.9, 0.99])
        print(f"{testbed} ({args.n} images, seed {seed}, {float(needs.float().mean()):.1%} need something)")
        print("  mask logits on the object's cells, quantiles 1/10/50/90/99 %:", [round(v, 1) for v in logits[inside].quantile(q).tolist()])
        print(f"  cells with mask < 1e-4: {float((mask < 1e-4).float().mean()):.3f}, < HALF_LEVEL: "
              f"{float((mask < HALF_LEVEL).float().mean()):.3f}, exactly 0: {float((mask == 0).float().mean()):.3f}")
        print(f"  AUROC (all images) of the mask {float(auroc(plain.mask(x), data.masks).nanmean()):.3f}, "
              f"of the raw logits {float(auroc(_up(logits, x.shape[-2:]), data.masks).nanmean()):.3f}")
        _, result = SimpleBits(model, simplifier=ordered, refine_steps=0).attribute(data.images, target=targets, return_result=True)
        kept = result.mask >= HALF_LEVEL
        obj = data.masks.bool()
        print(f"  images that need something: object pixels kept {float((kept & obj)[needs].sum() / obj[needs].sum()):.3f}, "
              f"AUROC of the order head alone {float(auroc(result.removed_order[needs], data.masks[needs]).nanmean()):.3f}")


if __name__ == "__main__":
    main()
