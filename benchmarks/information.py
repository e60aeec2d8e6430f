"""Which information, not only where (issue 22): the factorised engine against its targets.

For each ground-truth testbed (the information axis that carries the label is known:
``testbeds.CUE_AXES``), simplifies ``--n`` images with ``parameterization="factorised"`` and the
shipped classifier, and reads the information profile inside the object (the testbed's mask):

- right axis named: the share of images on which the label's axis keeps the most of its
  information inside the object; also among the images that needed anything (the others keep
  their answer from the flat grey reference alone: "reference keeps %", nothing to name). Two
  readings: ahead of *every* other axis (the issue's wording), and ahead of the other *removable
  content* axes only (colour, detail: the region is a prerequisite of both, since a removed region
  keeps no colour or detail, so on a colour or a texture testbed the object's region is kept as
  well);
- the mean share kept inside the object per axis (target: the non-cue axes <= 0.3);
- predictions kept, bits kept (estimator, WebP lossless);
- the cue-conflict pair: the two classifiers' mean profiles on the same images, per axis;
- the region map's localisation AUROC against today's mask engine on digits-on-photos and
  shortcut (same images, same steps);
- cost: seconds per image against Captum's IntegratedGradients (n_steps=50), same run, same images.

The report split is the test split, seed 0; ``--split design`` runs the train split, seed 1 (the
split the design choices were measured on: docs/design-log.md).

    python benchmarks/information.py [--n 256] [--quick] [--split report|design] [--steps N]
"""

from __future__ import annotations

import argparse
import time

import torch
from captum.attr import IntegratedGradients

from simplebits_audit import testbeds
from simplebits_audit.codecs import codec_bits
from simplebits_audit.estimators import resolve_estimator
from simplebits_audit.explainers import attribution_map
from simplebits_audit.metrics import auroc, information_profile
from simplebits_audit.simplification import simplify
from simplebits_audit.simplification.factorised import AXES

SPLITS = {"report": ("test", 0), "design": ("train", 1)}
CONFLICT = ("cue-conflict-shape", "cue-conflict-colour")
LOCALISATION = ("digits-on-photos", "shortcut")


def batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def run_factorised(model, x, estimator, options, batch):
    results, seconds = [], 0.0
    for s in batches(len(x), batch):
        t0 = time.perf_counter()
        results.append(simplify(model, x[s], estimator=estimator, parameterization="factorised", **options))
        seconds += time.perf_counter() - t0
    return results, seconds


def cat(values):
    return torch.cat([v.cpu() for v in values])


def profile_of(results, masks, batch):
    """kept_inside per axis (N,) inside the ground-truth masks, and the results' summary numbers."""
    kept = {a: [] for a in AXES}
    for r, s in zip(results, batches(len(masks), batch)):
        p = information_profile(r, estimator=None, region=masks[s], codec=None)
        for a in AXES:
            kept[a].append(p[a]["kept_inside"])
    return {a: cat(v) for a, v in kept.items()}


def summary(results):
    kept = cat([r.kept for r in results]).float()
    bits = cat([r.bits_after / r.bits_before for r in results])
    original = torch.cat([r.original for r in results])
    simplified = torch.cat([r.simplified for r in results])
    webp = codec_bits(simplified, "webp").float() / codec_bits(original, "webp").float()
    return float(kept.mean()), float(bits.mean()), float(webp.mean())


def ig_seconds(model, x, y, batch):
    t0 = time.perf_counter()
    ig = IntegratedGradients(model)
    for s in batches(len(x), batch):
        ig.attribute(x[s], target=y[s], n_steps=50)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256, help="images per testbed (the issue asks 256)")
    parser.add_argument("--quick", action="store_true", help="16 images per testbed: a smoke run, not a measurement")
    parser.add_argument("--split", choices=sorted(SPLITS), default="report")
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the engine table's)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--testbeds", nargs="*", default=None, help="single-cue testbeds (default: all of testbeds.CUE_AXES)")
    parser.add_argument("--estimator", default=None)
    parser.add_argument("--only", choices=("cues", "localisation"), default=None, help="run one part of the table")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    n = 16 if args.quick else args.n
    split, seed = SPLITS[args.split]
    cue_axes = testbeds.CUE_AXES
    names = args.testbeds if args.testbeds else [t for t in cue_axes if t not in CONFLICT]
    estimator = resolve_estimator(args.estimator)
    options = {"steps": args.steps} if args.steps else {}
    # every option that changes the numbers, so the printed command reproduces them
    extra = "".join(f" --{flag} {value}" for flag, value in (("steps", args.steps), ("only", args.only), ("estimator", args.estimator),
                                                            ("testbeds", " ".join(args.testbeds or []))) if value)
    print(f"Command: `python benchmarks/information.py --n {n}{' --quick' if args.quick else ''} --split {args.split}{extra}` "
          f"({split} split, seed {seed}, estimator {estimator.name}, "
          f"{torch.get_num_threads()} threads)")

    rows, costs = [], []
    profiles = {}
    run_cues = [*names, *[c for c in CONFLICT if c in cue_axes and c not in names]] if args.only != "localisation" else []
    for name in run_cues:
        data = testbeds.load(name, split, n=n, seed=seed)
        model = testbeds.load_classifier(name)
        cue = data.cue_axis
        results, seconds = run_factorised(model, data.images, estimator, options, args.batch)
        kept_inside = profile_of(results, data.masks, args.batch)
        profiles[name] = kept_inside
        kept, bits, webp = summary(results)
        others = [a for a in AXES if a != cue]
        content = [a for a in others if a != "region"] or others
        ahead_all = torch.stack([kept_inside[cue] > kept_inside[a] for a in others]).all(0)
        ahead_content = torch.stack([kept_inside[cue] > kept_inside[a] for a in content]).all(0)
        # images whose answer the flat grey reference alone keeps: nothing was needed, nothing to name
        needed = cat([r.mask.flatten(1).amax(1) >= 0.5 for r in results])
        named_needed = ahead_content[needed].float().mean() if bool(needed.any()) else torch.tensor(float("nan"))
        with torch.no_grad():
            y = model(data.images).argmax(1)
        ig = ig_seconds(model, data.images, y, args.batch)
        costs.append((name, seconds / n, ig / n))
        rows.append((name, cue, 100 * float(ahead_all.float().mean()), 100 * float(ahead_content.float().mean()),
                     100 * float((~needed).float().mean()), 100 * float(named_needed),
                     *[float(kept_inside[a].nanmean()) for a in AXES], 100 * kept, bits, webp, seconds / n / (ig / n)))

    if run_cues:
        print_cues(rows, profiles)
    if args.only != "cues":
        localisation(n, split, seed, estimator, options, args.batch)
    if costs:
        print("\n### Cost per image (seconds, this machine)\n")
        print("| testbed | factorised | IG n_steps=50 | ratio |")
        print("|---|---|---|---|")
        for name, f, ig in costs:
            print(f"| {name} | {f:.4f} | {ig:.4f} | {f / ig:.1f} |")


def print_cues(rows, profiles) -> None:
    print("\n### Right axis named, depth and cost (kept = share of each axis's information kept inside the object)\n")
    header = ("testbed", "cue axis", "named % (vs all)", "named % (vs colour/detail)", "reference keeps %",
              "named % of the rest (vs colour/detail)", *[f"{a} kept" for a in AXES],
              "predictions kept %", "bits kept (est.)", "bits kept (WebP)", "cost x IG")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")

    if all(c in profiles for c in CONFLICT):
        a, b = (profiles[c] for c in CONFLICT)
        print("\n### Cue-conflict pair (same images): mean share kept inside the object\n")
        print("| axis | " + " | ".join(CONFLICT) + " | difference |")
        print("|---|---|---|---|")
        for axis in AXES:
            ma, mb = float(a[axis].nanmean()), float(b[axis].nanmean())
            print(f"| {axis} | {ma:.2f} | {mb:.2f} | {mb - ma:+.2f} |")


def localisation(n, split, seed, estimator, options, batch) -> None:
    print("\n### Region map localisation AUROC (ground-truth mask), factorised vs today's mask engine\n")
    print("| testbed | mask engine | factorised region | mask engine s/img | factorised s/img |")
    print("|---|---|---|---|---|")
    for name in LOCALISATION:
        data = testbeds.load(name, split, n=n, seed=seed)
        model = testbeds.load_classifier(name)
        scores, seconds = {}, {}
        for engine in ("mask", "factorised"):
            maps, t = [], 0.0
            for s in batches(n, batch):
                t0 = time.perf_counter()
                r = simplify(model, data.images[s], estimator=estimator, parameterization=engine, **options)
                t += time.perf_counter() - t0
                maps.append(attribution_map(r, "mask"))  # the map SimpleBits returns (the mask, its ties ranked)
            scores[engine] = float(auroc(torch.cat(maps), data.masks).nanmean())
            seconds[engine] = t / n
        print(f"| {name} | {scores['mask']:.3f} | {scores['factorised']:.3f} | {seconds['mask']:.3f} | {seconds['factorised']:.3f} |")


if __name__ == "__main__":
    main()
