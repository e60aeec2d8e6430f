"""Where a learned simplifier's mask sits, and what its order head ranks: the diagnostics behind the order head (issue #23).

For each testbed, with the simplifiers ``benchmarks/simplifier_map_design.py`` saved (deletion 0, training seed 0, and
the same with its order head, ``--order-steps 1000``), on 256 test images (seed 0 on report testbeds, 1 on design
testbeds): quantiles of the mask logits on the object's cells; the share of grid cells whose mask is below 1e-4, below
half an 8-bit level (``HALF_LEVEL``) and exactly 0 in float32; localisation AUROC of the mask (what the map was) and of
the raw logits (upsampled alike); and, on the images that need something (the flat mean colour alone changes the
answer), the share of the object's pixels the returned image keeps (mask >= ``HALF_LEVEL``) and the AUROC of the order
head's ranking alone.

Then where the map (``attribution="mask"``, with the order head) loses its AUROC on the images that need something:
1 - AUROC of each image is the share of its (object pixel, background pixel) pairs ranked the wrong way (ties count
half), split by whether each pixel is kept by the returned image (mask >= ``HALF_LEVEL``) or not; the mean over images
of each part, so the parts add up to 1 - the map's AUROC. Among the pairs neither pixel of which is kept (the order
head's), the wrong-way share of the object's interior (eroded by one pixel) and its one-pixel boundary against the
background farther than a pixel from the object, and of the interior against that nearest background ring.

    python benchmarks/simplifier_mask_levels.py --testbeds colour-cue,texture-cue,shape-cue
    python benchmarks/simplifier_mask_levels.py --testbeds digits-on-photos,blended-digits,shortcut
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


def _wrong(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """Pairs (one score of ``pos``, one of ``neg``) ranked the wrong way, ties counting half."""
    if len(pos) == 0 or len(neg) == 0:
        return 0.0
    ordered = neg.sort().values
    below = torch.searchsorted(ordered, pos).double()
    level = torch.searchsorted(ordered, pos, right=True).double() - below
    return float((len(neg) - below - level + 0.5 * level).sum())


def error_parts(maps: torch.Tensor, masks: torch.Tensor, kept: torch.Tensor) -> dict[str, float]:
    """Where 1 - AUROC comes from (means over images of shares of each image's pairs), and the unkept pairs' wrong rates."""
    obj = masks.bool()
    interior = -F.max_pool2d(-obj.float(), 3, 1, 1) > 0.5
    near = (F.max_pool2d(obj.float(), 3, 1, 1) > 0.5) & ~obj
    parts: dict[str, list[float]] = {k: [] for k in ("kept obj / kept bg", "unkept obj / kept bg", "unkept obj / unkept bg")}
    rates: dict[str, list[float]] = {k: [0.0, 0.0] for k in ("interior / far", "boundary / far", "interior / near")}
    for m, o, k, inner, ring in zip(maps[:, 0], obj[:, 0], kept[:, 0], interior[:, 0], near[:, 0]):
        pairs = float(o.sum()) * float((~o).sum())
        if pairs == 0:
            continue
        parts["kept obj / kept bg"].append(_wrong(m[o & k], m[~o & k]) / pairs)
        parts["unkept obj / kept bg"].append(_wrong(m[o & ~k], m[~o & k]) / pairs)  # never right: kept pixels rank above
        parts["unkept obj / unkept bg"].append(_wrong(m[o & ~k], m[~o & ~k]) / pairs)
        far = ~o & ~ring & ~k
        against = {"interior / far": (inner, far), "boundary / far": (o & ~inner, far), "interior / near": (inner, ring & ~k)}
        for name, (a, b) in against.items():
            rates[name][0] += _wrong(m[a & ~k], m[b])
            rates[name][1] += float((a & ~k).sum()) * float(b.sum())
    out = {name: sum(v) / max(len(v), 1) for name, v in parts.items()}
    out.update({f"wrong rate {name}": w / n if n else float("nan") for name, (w, n) in rates.items()})
    return out


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
        maps = SimpleBits(model, simplifier=ordered, refine_steps=0).attribute(data.images, target=targets)[:, :1]
        parts = error_parts(maps[needs], data.masks[needs], kept[needs])
        print(f"  the map's AUROC (needs something) {float(auroc(maps[needs], data.masks[needs]).nanmean()):.3f}; "
              f"1 - AUROC by pair: background also kept {parts['kept obj / kept bg']:.4f}, "
              f"object unkept, background kept {parts['unkept obj / kept bg']:.4f}, "
              f"both unkept {parts['unkept obj / unkept bg']:.4f}; of the last, wrong-way share of the object's interior / "
              f"boundary against the far background {parts['wrong rate interior / far']:.3f} / {parts['wrong rate boundary / far']:.3f}, "
              f"of the interior against the nearest ring {parts['wrong rate interior / near']:.3f}")


if __name__ == "__main__":
    main()
