"""The factorised engine's design choices, measured on the design split (train split, seed 1; never the report split).

For each variant (composition order, colour/detail grid size, blur sigma, where the colour and
detail masks start, the region's reference: the flat mean's luminance, mid-grey, a strong blur's
luminance, or the flat mean colour itself), simplifies ``--n`` images of each testbed and prints predictions kept, bits
kept under the estimator, and each axis's mean share kept inside the object (the testbed's mask;
the information profile's ``kept_inside``), plus how often the testbed's cue axis is ahead of the
other content axis. Results: docs/design-log.md, "Factorised engine".

    python benchmarks/information_design.py [--n 64] [--testbeds stripes digits-on-photos]
"""

from __future__ import annotations

import argparse
import time

from simplebits_audit import testbeds
from simplebits_audit.metrics import information_profile
from simplebits_audit.simplification import factorised, simplify
from simplebits_audit.simplification.mask import reference_image as mask_reference

#: the cue axis of testbeds that predate testbeds.CUE_AXES (stripes: grey gratings of period 3-8 px)
OLD_CUES = {"stripes": "detail", "digits-on-photos": "region"}
DEFAULT = {"order": ("colour", "detail", "region"), "blur_sigma": 2.0, "axis_mask_size": 8, "axis_init": 0.4,
           "reference": "mean", "grey_reference": True}
VARIANTS = {
    "default": {},
    "order detail, colour, region": {"order": ("detail", "colour", "region")},
    "order region, colour, detail": {"order": ("region", "colour", "detail")},
    "blur sigma 1": {"blur_sigma": 1.0},
    "blur sigma 3": {"blur_sigma": 3.0},
    "axis grid 4": {"axis_mask_size": 4},
    "axis grid 16": {"axis_mask_size": 16},
    "axis init 0.7": {"axis_init": 0.7},
    "axis init 0.95": {"axis_init": 0.95},
    "reference mid-grey": {"reference": "grey"},
    "reference blur (its luminance)": {"reference": "blur"},
    "reference mean colour (not grey)": {"grey_reference": False},
}
GREY_REFERENCE = factorised.region_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--testbeds", nargs="*", default=["stripes", "digits-on-photos"])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    cues = {**OLD_CUES, **dict(getattr(testbeds, "CUE_AXES", {}))}
    variants = " ".join(repr(v) for v in args.variants)
    testbed_names = " ".join(args.testbeds)
    print(f"# python benchmarks/information_design.py --n {args.n} --testbeds {testbed_names} --variants {variants}  (train split, seed 1)")
    print("| testbed | variant | kept % | bits kept | colour | detail | region | cue ahead of other content axis % "
          "| reference keeps % | s/img |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.testbeds:
        data = testbeds.load(name, "train", n=args.n, seed=1)
        model = testbeds.load_classifier(name)
        cue = cues[name]
        for variant in args.variants:
            v = {**DEFAULT, **VARIANTS[variant]}
            factorised.COMPOSITION, factorised.AXIS_INIT = v["order"], v["axis_init"]
            # the engine reads factorised.region_reference at call time; the colour variant skips its luminance step
            factorised.region_reference = GREY_REFERENCE if v["grey_reference"] else mask_reference
            t0 = time.perf_counter()
            r = simplify(model, data.images, parameterization="factorised", blur_sigma=v["blur_sigma"],
                         axis_mask_size=v["axis_mask_size"], reference=v["reference"])
            seconds = time.perf_counter() - t0
            p = information_profile(r, region=data.masks, codec=None)
            other = "colour" if cue != "colour" else "detail"
            ahead = float((p[cue]["kept_inside"] > p[other]["kept_inside"]).float().mean()) if cue != "region" else float("nan")
            if cue == "region":  # the outline: region ahead of both content axes
                ahead = float(((p["region"]["kept_inside"] > p["colour"]["kept_inside"])
                               & (p["region"]["kept_inside"] > p["detail"]["kept_inside"])).float().mean())
            # images whose answer the region's reference alone keeps (benchmarks/information.py's reading)
            reference_keeps = float((r.mask.flatten(1).amax(1) < 0.5).float().mean())
            print(f"| {name} | {variant} | {100 * float(r.kept.float().mean()):.0f} | {float((r.bits_after / r.bits_before).mean()):.3f} | "
                  + " | ".join(f"{float(p[a]['kept_inside'].nanmean()):.2f}" for a in factorised.AXES)
                  + f" | {100 * ahead:.0f} | {100 * reference_keeps:.0f} | {seconds / args.n:.3f} |", flush=True)
    factorised.COMPOSITION, factorised.AXIS_INIT = DEFAULT["order"], DEFAULT["axis_init"]
    factorised.region_reference = GREY_REFERENCE


if __name__ == "__main__":
    main()
