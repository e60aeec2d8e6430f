"""How deep and how faithful is the simplification? Every engine on the testbeds, IG timed in the same run.

For each testbed (test split, shipped classifier, target = the prediction, keep top-1) and each
engine, on the same images in batches:

* top-1 kept (the returned image keeps the predicted class) and how often the original itself had
  to be returned (nothing simpler kept it);
* bits kept: bits of the returned 8-bit image / bits of the original under the default estimator,
  and the same ratio for WebP lossless, PNG and JPEG-XL lossless (effort 9) file sizes (the
  outside check: real codecs agree);
* seconds per image, and Captum IntegratedGradients (n_steps=50) on the same batches in the same
  process, as the reference;
* localisation AUROC of the SimpleBits map (``auto``: the mask engine's mask) and of the
  ``retained`` map against the ground-truth mask where the testbed has one, beside the trivial map
  ``|x - mean colour|`` on the same images.

    python benchmarks/simplification.py                        # 256 images per testbed, batch 64
    python benchmarks/simplification.py --n 64 --engines mask  # quicker
    python benchmarks/simplification.py --engines mask --estimator context   # charged and rated by another estimator
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

ENGINES = {
    "mask": {},  # the default
    "mask-50": {"steps": 50, "lr": 0.2},  # the deeper setting the README quotes
    "pixels": {"parameterization": "pixels"},  # the earlier default: pixel logits from the original
}


def _ig_seconds(model, images: torch.Tensor, targets: torch.Tensor, batch: int) -> float:
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(model)
    ig.attribute(images[:batch], target=targets[:batch], n_steps=50, internal_batch_size=batch)  # warm-up at full size
    t0 = time.perf_counter()
    for i in range(0, len(images), batch):
        ig.attribute(images[i : i + batch], target=targets[i : i + batch], n_steps=50, internal_batch_size=batch)
    return (time.perf_counter() - t0) / len(images)


def run(testbed: str, n: int, batch: int, engines: list[str], attribution: str, seed: int, estimator: str | None = None) -> list[dict]:
    from simplebits_audit import SimpleBits, testbeds
    from simplebits_audit.codecs import codec_bits
    from simplebits_audit.metrics import auroc

    data = testbeds.load(testbed, "test", n=n, seed=seed)
    model = testbeds.load_classifier(testbed)
    with torch.no_grad():
        targets = model(data.images).argmax(1)
    rows = [{"testbed": testbed, "engine": "Captum IG (n_steps=50)", "seconds_per_image": _ig_seconds(model, data.images, targets, batch)}]
    webp0, png0, jxl0 = codec_bits(data.images), codec_bits(data.images, "png"), codec_bits(data.images, "jxl", effort=9)
    for engine in engines:
        explainer = SimpleBits(model, estimator=estimator, **ENGINES[engine])
        explainer.attribute(data.images[:batch], target=targets[:batch], steps=2)  # warm-up at full size
        maps, results, t0 = [], [], time.perf_counter()
        for i in range(0, n, batch):
            attr, res = explainer.attribute(data.images[i : i + batch], target=targets[i : i + batch], attribution=attribution,
                                            return_result=True, seed=seed + i)
            maps.append(attr[:, :1])
            results.append(res)
        seconds = (time.perf_counter() - t0) / n
        simplified = torch.cat([r.simplified for r in results])
        bits_kept = torch.cat([r.bits_after / r.bits_before for r in results])
        returned_original = torch.cat([(r.simplified == r.original).flatten(1).all(1) for r in results])
        row = {
            "testbed": testbed, "engine": engine, "seconds_per_image": seconds,
            "kept": float(torch.cat([r.kept for r in results]).float().mean()),
            "returned_original": float(returned_original.float().mean()),
            "bits_kept": float(bits_kept.mean()),
            "webp_kept": float((codec_bits(simplified) / webp0).mean()),
            "png_kept": float((codec_bits(simplified, "png") / png0).mean()),
            "jxl_kept": float((codec_bits(simplified, "jxl", effort=9) / jxl0).mean()),
        }
        if data.has_localisation:
            from simplebits_audit.explainers import attribution_map

            row["auroc"] = float(auroc(torch.cat(maps), data.masks).nanmean())
            row["auroc_retained"] = float(auroc(torch.cat([attribution_map(r, "retained") for r in results]), data.masks).nanmean())
            # the trivial map the "retained" reading builds on: how far each pixel is from the mean colour
            contrast = (data.images - data.images.mean((2, 3), keepdim=True)).abs().amax(1, keepdim=True)
            rows[0]["auroc_contrast"] = float(auroc(contrast, data.masks).nanmean())
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbeds", default="digits-on-photos,shortcut,stripes")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--attribution", default="auto")
    parser.add_argument("--seed", type=int, default=0, help="testbed sample (designs were chosen on seed 1)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--estimator", default=None, help="the bit estimator charged and reported (default: the package default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for testbed in args.testbeds.split(","):
        rows += run(testbed, args.n, args.batch, args.engines.split(","), args.attribution, args.seed, args.estimator)
    table = Table(
        title=f"Simplification depth, {args.n} test images per testbed, batch {args.batch}, CPU threads {torch.get_num_threads()}, "
              f"estimator {args.estimator or 'default'}"
    )
    cols = ("testbed", "engine", "top-1 kept", "returned original", "bits kept", "WebP kept", "PNG kept", "JXL e9 kept", "s/img", "x IG",
            f"AUROC ({args.attribution})", "AUROC (retained)", "AUROC |x - mean colour| (trivial)")
    for col in cols:
        table.add_column(col, justify="right")
    ig = {r["testbed"]: r["seconds_per_image"] for r in rows if "kept" not in r}
    fmt = lambda r, k, f="{:.3f}": f.format(r[k]) if k in r else "-"  # noqa: E731
    for r in rows:
        table.add_row(
            r["testbed"],
            r["engine"],
            fmt(r, "kept", "{:.1%}"),
            fmt(r, "returned_original", "{:.1%}"),
            fmt(r, "bits_kept"),
            fmt(r, "webp_kept"),
            fmt(r, "png_kept"),
            fmt(r, "jxl_kept"),
            f"{r['seconds_per_image']:.3f}",
            f"{r['seconds_per_image'] / ig[r['testbed']]:.2f}",
            fmt(r, "auroc"),
            fmt(r, "auroc_retained"),
            fmt(r, "auroc_contrast"),
        )
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
