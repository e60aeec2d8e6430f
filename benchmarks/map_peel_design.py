"""Design trial: rank what the returned image drops by what the model can use *instead* (issue #21).

The mask map puts the returned image's kept region A first and orders the rest by the mean mask
along the path. On ``photo-objects`` A is often one corner of the object (it suffices), and the
rest of the object is ranked little above the background. This trial asks the model again with
A removed (set to the reference): if the image without A still gets the same answer, the engine
finds the next region B that suffices, then C without A and B, and so on ("peeling", up to
``--peels`` times). The map ranks A, then B, then C, then the path mean's order; A stays first,
so the map still describes the returned image. Scored by localisation AUROC on 64 test images
per testbed:
design testbeds first (``digits-on-photos``, ``shortcut``, test split seed 1), then the report
testbed ``photo-objects`` (seed 11). Each peel costs one more run of the engine on the images
that still keep their answer without what was found.

    OMP_NUM_THREADS=1 python benchmarks/map_peel_design.py                    # design testbeds, then photo-objects
    python benchmarks/map_peel_design.py digits-on-photos:1 --peels 3
"""

from __future__ import annotations

import argparse
import time

import torch

from simplebits_audit import simplify, testbeds
from simplebits_audit.metrics import auroc
from simplebits_audit.simplification.mask import reference_image
from simplebits_audit.simplification.result import refine_ties

DEFAULT = ("digits-on-photos:1", "shortcut:1", "photo-objects:11")


def peel(model, x: torch.Tensor, target: torch.Tensor, found: torch.Tensor, peels: int) -> list[torch.Tensor]:
    """The regions (B, 1, H, W) in {0, 1} the model can use instead of ``found``, one per peel (zeros where none)."""
    regions = []
    removed = found.clone()
    for _ in range(peels):
        # the image with everything found so far set to the flat reference: does it still get the answer?
        without = removed * reference_image(x, "mean") + (1 - removed) * x
        with torch.no_grad():
            still = model(without).argmax(1) == target
        region = torch.zeros_like(found)
        if bool(still.any()):
            r = simplify(model, without[still], target=target[still])
            region[still] = (r.mask >= 0.5).float() * (1 - removed[still])
        regions.append(region)
        removed = torch.maximum(removed, region)
        if not bool(region.flatten(1).any(1).any()):
            break
    return regions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="*", default=list(DEFAULT), help="testbed:seed")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--peels", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for spec in args.specs:
        name, seed = spec.split(":")
        data = testbeds.load(name, "test", n=args.n, seed=int(seed))
        model = testbeds.load_classifier(name).requires_grad_(False)
        t0 = time.perf_counter()
        r = simplify(model, data.images)
        engine_s = time.perf_counter() - t0
        found = (r.mask >= 0.5).float()
        t0 = time.perf_counter()
        regions = peel(model, r.original, r.target, found, args.peels)
        peel_s = time.perf_counter() - t0
        localised = data.masks.flatten(1).any(1)
        print(f"{name} (seed {seed}, {int(localised.sum())} of {args.n} images with a mask; engine {engine_s / args.n:.2f} s/img, "
              f"peels {peel_s / args.n:.2f} s/img)")
        for k in range(len(regions) + 1):
            # A (the returned image's mask) first, then each peel's region, then the path mean
            weights = [len(regions) + 1 - j for j in range(k)]
            order = (r.mask_mean + sum(w * reg for w, reg in zip(weights, regions))) / (1 + sum(weights))
            scores = refine_ties(r.mask, order)
            score = auroc(scores[localised], data.masks[localised]).nanmean()
            found_share = [float(reg.flatten(1).any(1).float().mean()) for reg in regions[:k]]
            line = f"  peels {k}: AUROC {float(score):.3f}"
            if found_share:
                line += "  (images with a region at each peel: " + ", ".join(f"{s:.2f}" for s in found_share) + ")"
            print(line)


if __name__ == "__main__":
    main()
