"""Which SimpleBits map localises what matters? Measured on the ``digits-on-photos`` testbed.

For test images of the testbed (ground truth: the digit's strokes) and the shipped classifier,
scores every SimpleBits map (``survival``, ``bits_removed``, ``kept``, ``ablation``), Captum's
Integrated Gradients and Occlusion, and trivial reference maps (brightness, maximum over channels,
a centred Gaussian, random) by localisation AUROC (map vs. mask, per image, averaged). A testbed
on which a trivial map beats the real methods measures the wrong thing.

    python benchmarks/attribution_maps.py [--n 64] [--estimator analytic]
"""

from __future__ import annotations

import argparse
import time

import torch
from captum.attr import IntegratedGradients, Occlusion
from rich.console import Console
from rich.table import Table

from simplebits_audit import SimpleBits, attribution_map, load_estimator, testbeds
from simplebits_audit.explainers import ATTRIBUTIONS
from simplebits_audit.metrics import auroc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--estimator", default=None)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    data = testbeds.load("digits-on-photos", "test", n=args.n, seed=11)
    model = testbeds.load_classifier("digits-on-photos")
    x, y, masks = data.images, data.labels, data.masks
    maps: dict[str, torch.Tensor] = {}
    seconds: dict[str, float] = {}
    options = {"steps": args.steps} if args.steps else {}
    t0 = time.perf_counter()
    _, result = SimpleBits(model, load_estimator(args.estimator), **options).attribute(x, target=y, return_result=True)
    seconds["SimpleBits (simplification)"] = time.perf_counter() - t0
    for kind in ATTRIBUTIONS:
        if kind in ("colour", "detail"):  # the factorised engine's maps: benchmarks/information.py
            continue
        t0 = time.perf_counter()
        maps[f"SimpleBits {kind}"] = attribution_map(result, kind, forward_func=model)
        seconds[f"SimpleBits {kind}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    maps["IntegratedGradients |attr|"] = IntegratedGradients(model).attribute(x, target=y, n_steps=50).abs().sum(1, keepdim=True)
    seconds["IntegratedGradients |attr|"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    maps["Occlusion 4x4"] = Occlusion(model).attribute(x, target=y, sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2)).sum(1, keepdim=True)
    seconds["Occlusion 4x4"] = time.perf_counter() - t0
    h, w = x.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    maps["trivial: brightness"] = x.mean(1, keepdim=True)
    maps["trivial: darkness"] = -x.mean(1, keepdim=True)
    maps["trivial: max channel"] = x.amax(1, keepdim=True)
    maps["trivial: centre Gaussian"] = torch.exp(-(yy**2 + xx**2) / (2 * (h / 4) ** 2)).expand(len(x), 1, h, w)
    maps["trivial: random"] = torch.rand(len(x), 1, h, w, generator=torch.Generator().manual_seed(0))
    table = Table(
        title=f"digits-on-photos, {args.n} test images, localisation AUROC against the digit mask "
        f"(estimator {result.settings['estimator']})"
    )
    for col in ("map", "AUROC mean", "AUROC std", "seconds"):
        table.add_column(col, justify="right")
    for name, amap in maps.items():
        scores = auroc(amap, masks)
        table.add_row(name, f"{scores.nanmean():.3f}", f"{scores[~scores.isnan()].std():.3f}", f"{seconds.get(name, 0):.1f}")
    Console(width=200).print(table)
    print(f"SimpleBits simplification: {seconds['SimpleBits (simplification)']:.1f} s; kept top-1 {result.kept.float().mean():.0%}; "
          f"bpd {result.bpd_before.mean():.2f} -> {result.bpd_after.mean():.2f}")


if __name__ == "__main__":
    main()
