"""The learned simplifier against the per-image engine and Captum, on the testbeds, in one run.

For each testbed: train a simplifier on the train split at the default settings (timed; or reuse
the file from an earlier run with ``--reuse``), then on the same test images (batch 64, target =
the prediction, keep top-1; on the sigmoid testbeds ``radiograph`` and ``digits-stripes``: label 0, the
finding or the digit, which their masks localise, kept on its side of 0.5):

* Captum IntegratedGradients (n_steps=50): seconds per image, the speed reference (every timed method:
  the fastest of ``--repeat`` passes over the images, the methods' passes interleaved);
* the per-image engine (``SimpleBits`` at its defaults) and the learned simplifier without and with
  ``refine_steps``: seconds per image, top-1 kept of what is returned, how often that is the
  original, bits kept (estimator), WebP and JPEG-XL (effort 9) size kept; for the learned one also the network's own
  output (top-1 kept and bits kept before choosing among the candidates);
* localisation AUROC of each map against the ground-truth mask (testbeds that have one) and its relevance
  mass inside the object (the share of the map's positive mass on the mask, Arras et al. 2022), also over
  only the images whose answer needs something (the flat mean-colour image alone changes it), beside
  every Captum baseline that runs in seconds (saliency, IG, input x gradient, GradientShap,
  DeepLift, occlusion, feature ablation, Grad-CAM).

With ``--audit-n N`` it also times ``simplebits audit --select all`` over N testbed images with the
learned simplifier and over ``--audit-engine-n`` images with the per-image engine (images/s).

    python benchmarks/simplifier.py                                # the three report testbeds, ~40 min on 2 cores (with training)
    python benchmarks/simplifier.py --testbeds digits-on-photos,shortcut,stripes   # the design testbeds
    python benchmarks/simplifier.py --testbeds shortcut --reuse    # reuse benchmarks/out/simplifier-shortcut.pt
    python benchmarks/simplifier.py --shipped                      # the shipped simplifiers (from scripts/train_testbed_simplifiers.py)
    python benchmarks/simplifier.py --audit-n 10000 --testbeds digits-on-photos --reuse
    python benchmarks/simplifier.py --testbeds digits-stripes --refine 0   # a sigmoid head (two labels)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

OUT = Path(__file__).parent / "out"
CAPTUM = ("saliency", "ig", "input_x_gradient", "gradient_shap", "deeplift", "occlusion", "feature_ablation", "gradcam")


def _head(testbed: str) -> str:
    from simplebits_audit import testbeds

    return "sigmoid" if testbed in testbeds.SIGMOID_HEADS else "softmax"


def _simplifier(testbed: str, reuse: bool, shipped: bool, steps: int | None):
    from simplebits_audit import Simplifier, testbeds, train_simplifier

    path = OUT / f"simplifier-{testbed}.pt"
    model = testbeds.load_classifier(testbed)
    if shipped:
        simplifier = Simplifier.pretrained(testbed)
        simplifier.save(path)  # the audit below reads it from a file
        return simplifier, path
    if reuse and path.is_file():
        return Simplifier.load(path, forward_func=model), path
    train = testbeds.load(testbed, "train")
    held_out = testbeds.load(testbed, "test", n=256, seed=1).images  # not the scored sample (seed 0)
    simplifier = train_simplifier(model, train.images, held_out=held_out, steps=steps, data_description=f"testbed {testbed}, train split",
                                  show_progress=True, head=_head(testbed))
    simplifier.save(path)
    return simplifier, path


def _localisation(maps: torch.Tensor, masks: torch.Tensor, needs: torch.Tensor) -> dict:
    """AUROC over all images and over those whose answer needs something (``needs``), relevance mass inside the object."""
    from simplebits_audit.metrics import auroc, relevance_mass

    return {"auroc": float(auroc(maps, masks).nanmean()), "auroc_needs": float(auroc(maps[needs], masks[needs]).nanmean()),
            "mass": float(relevance_mass(maps, masks).nanmean())}


def _scores(name: str, results: list, images: torch.Tensor, maps: list[torch.Tensor], masks, needs, seconds: float) -> dict:
    from simplebits_audit.codecs import codec_bits

    simplified = torch.cat([r.simplified for r in results])
    original_8bit = torch.round(images * 255) / 255
    row = {
        "method": name, "seconds_per_image": seconds,
        "kept": float(torch.cat([r.kept for r in results]).float().mean()),
        "returned_original": float((simplified == original_8bit).flatten(1).all(1).float().mean()),
        "bits_kept": float(torch.cat([r.bits_after / r.bits_before for r in results]).mean()),
        "webp_kept": float((codec_bits(simplified) / codec_bits(original_8bit)).mean()),
        "jxl_kept": float((codec_bits(simplified, "jxl", effort=9) / codec_bits(original_8bit, "jxl", effort=9)).mean()),
    }
    if results[0].path_labels and results[0].path_labels[1] == "learned mask":  # the network's own output, before choosing
        row["raw_kept"] = float(torch.cat([r.path_kept[1] for r in results]).float().mean())
        row["raw_bits_kept"] = float(torch.cat([r.path_bits[1] / r.bits_before for r in results]).mean())
    if masks is not None:
        row.update(_localisation(torch.cat(maps), masks, needs))
    return row


def run(
    testbed: str, n: int, batch: int, refine: list[int], reuse: bool, shipped: bool, steps: int | None, seed: int, repeat: int = 5
) -> tuple[list[dict], dict]:
    from simplebits_audit import SimpleBits, testbeds
    from simplebits_audit.explainers import Context, explain
    from simplebits_audit.simplification.mask import reference_image

    t0 = time.perf_counter()
    simplifier, path = _simplifier(testbed, reuse, shipped, steps)
    train_seconds = simplifier.card.get("training_seconds", time.perf_counter() - t0)
    data = testbeds.load(testbed, "test", n=n, seed=seed)
    model = testbeds.load_classifier(testbed)
    masks = data.masks if data.has_localisation else None
    head = _head(testbed)
    with torch.no_grad():
        logits, flat = model(data.images), model(reference_image(data.images, "mean"))
        # Images whose answer the flat reference (each image's mean colour) already gives need nothing: a
        # faithful map of them is constant, so their AUROC is 0.5 whatever the object. Scored apart.
        if head == "softmax":
            targets = logits.argmax(1)
            needs = flat.argmax(1) != targets
        else:  # sigmoid: label 0 (the finding; digits-stripes' digit, the label its masks localise) and its side
            targets = torch.zeros(len(logits), dtype=torch.long)
            needs = (flat[:, 0] > 0) != (logits[:, 0] > 0)
    # Every timed method: the fastest of ``repeat`` passes over the images (timeit's rule: the machine's noise only adds),
    # and the passes of all methods interleaved, IG's among them: on a shared machine the speed drifts by tens of
    # percent over minutes, and a ratio of passes timed minutes apart measured the drift (27x and 55x on one machine).
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(model)

    def ig_pass() -> None:
        for i in range(0, n, batch):
            ig.attribute(data.images[i : i + batch], target=targets[i : i + batch], n_steps=50, internal_batch_size=batch)

    variants = [("per-image engine", {})] + [(f"learned, refine {k}" if k else "learned", {"simplifier": simplifier, "refine_steps": k})
                                             for k in refine]
    explainers = {name: SimpleBits(model, head=head, **options) for name, options in variants}
    outputs: dict[str, tuple[list, list]] = {}

    def method_pass(name: str) -> None:
        maps, results = [], []
        for i in range(0, n, batch):
            attr, res = explainers[name].attribute(data.images[i : i + batch], target=targets[i : i + batch], return_result=True,
                                                   seed=seed + i)
            maps.append(attr[:, :1])
            results.append(res)
        outputs[name] = (maps, results)

    passes = {"ig": ig_pass, **{name: (lambda name=name: method_pass(name)) for name, _ in variants}}
    ig.attribute(data.images[:batch], target=targets[:batch], n_steps=50, internal_batch_size=batch)  # warm-ups at full size
    for explainer in explainers.values():
        explainer.attribute(data.images[:batch], target=targets[:batch])
    best = dict.fromkeys(passes, float("inf"))
    for _ in range(repeat):
        for name, one_pass in passes.items():
            t1 = time.perf_counter()
            one_pass()
            best[name] = min(best[name], (time.perf_counter() - t1) / n)
    rows = [{"method": "Captum IG (n_steps=50)", "seconds_per_image": best["ig"]}]
    for name, _ in variants:
        maps, results = outputs[name]
        rows.append(_scores(name, results, data.images, maps, masks, needs, best[name]))
    if masks is not None:
        for method in CAPTUM:
            maps = [explain(method, model, data.images[i : i + batch], targets[i : i + batch],
                            context=Context(seed=seed + i, head=head)).map for i in range(0, n, batch)]
            rows.append({"method": f"Captum {method}", **_localisation(torch.cat(maps), masks, needs)})
    info = {"testbed": testbed, "train_seconds": train_seconds, "file": str(path), "card": simplifier.card,
            "needs_share": float(needs.float().mean())}
    return rows, info


def audit_throughput(testbed: str, simplifier: Path, n: int, engine_n: int, batch: int) -> list[dict]:
    """images/s of ``simplebits audit --select all``: the learned simplifier over n images, the per-image engine over engine_n."""
    rows = []
    for label, extra, count in [("learned simplifier", ["--simplifier", str(simplifier)], n), ("per-image engine", [], engine_n)]:
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "simplebits_audit.cli.main", "--quiet", "audit", testbed, "--model", f"testbed:{testbed}",
                       "--testbed-n", str(count), "--select", "all", "--batch-size", str(batch), "--out", tmp, *extra]
            t0 = time.perf_counter()
            res = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if res.returncode != 0:
                sys.exit(f"failed: {' '.join(command)}\n{res.stderr[-2000:]}")
            summary = json.loads((Path(tmp) / "summary.json").read_text())
            timing = summary["timing"]
            rows.append(
                {
                    "audit": label,
                    "images": summary["explained"],
                    "wall_seconds": wall,
                    "images_per_second": summary["explained"] / wall,
                    "explain_per_second": summary["explained"] / max(timing["simplify_seconds"], 1e-9),
                    "kept_rate": summary["kept_rate"],
                    "bpd": f"{summary['bpd_before']:.3f} -> {summary['bpd_after']:.3f}",
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbeds", default="colour-cue,texture-cue,shape-cue",
                        help="default: the report testbeds with softmax heads (defaults were chosen on the design testbeds)")
    parser.add_argument("--n", type=int, default=256, help="test images scored per testbed")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--refine", default="0,10,20", help="refine_steps values of the learned simplifier")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the library default)")
    parser.add_argument("--reuse", action="store_true", help="reuse benchmarks/out/simplifier-<testbed>.pt if it exists")
    parser.add_argument(
        "--shipped", action="store_true", help="use the shipped simplifiers (Simplifier.pretrained); training time from their cards"
    )
    parser.add_argument("--audit-n", type=int, default=0, help="also time an audit of this many images with the simplifier")
    parser.add_argument("--audit-engine-n", type=int, default=256, help="images of the per-image engine's audit")
    parser.add_argument("--seed", type=int, default=0, help="testbed sample (designs were chosen on seed 1)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes over the images per method; the fastest counts")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    console = Console(width=230)
    fmt = lambda r, k, f="{:.3f}": f.format(r[k]) if r.get(k) is not None else "-"  # noqa: E731
    summary = []
    for testbed in args.testbeds.split(","):
        refine = [int(k) for k in args.refine.split(",")]
        rows, info = run(testbed, args.n, args.batch, refine, args.reuse, args.shipped, args.steps, args.seed, args.repeat)
        ig = rows[0]["seconds_per_image"]
        card = info["card"]
        table = Table(title=f"{testbed}: {args.n} test images, batch {args.batch}, {torch.get_num_threads()} threads; simplifier trained "
                            f"{card.get('steps')} steps in {info['train_seconds'] / 60:.1f} min ({info['file']})")
        for col in ("method", "s/img", "x faster than IG", "top-1 kept", "returned original", "bits kept", "WebP kept", "JXL e9 kept",
                    "network output: top-1 kept", "network output: bits kept", "AUROC", "AUROC (needs something)", "mass inside"):
            table.add_column(col, justify="right")
        for r in rows:
            speed = f"{ig / r['seconds_per_image']:.1f}" if r.get("seconds_per_image") else "-"
            table.add_row(
                r["method"],
                fmt(r, "seconds_per_image", "{:.4f}"),
                speed,
                fmt(r, "kept", "{:.1%}"),
                fmt(r, "returned_original", "{:.1%}"),
                fmt(r, "bits_kept"),
                fmt(r, "webp_kept"),
                fmt(r, "jxl_kept"),
                fmt(r, "raw_kept", "{:.1%}"),
                fmt(r, "raw_bits_kept"),
                fmt(r, "auroc"),
                fmt(r, "auroc_needs"),
                fmt(r, "mass"),
            )
        console.print(table)
        console.print(f"{info['needs_share']:.1%} of the images need something (the flat mean colour alone changes the answer)")
        summary.append({"testbed": testbed, "rows": rows, "train_seconds": info["train_seconds"], "needs_share": info["needs_share"]})
        if args.audit_n:
            table = Table(title=f"simplebits audit {testbed} --select all --batch-size {args.batch}")
            for col in ("audit", "images", "wall s", "images/s (wall)", "explanations/s (simplify only)", "kept", "bits/dim"):
                table.add_column(col, justify="right")
            for r in audit_throughput(testbed, Path(info["file"]), args.audit_n, args.audit_engine_n, args.batch):
                table.add_row(r["audit"], str(r["images"]), f"{r['wall_seconds']:.0f}", f"{r['images_per_second']:.1f}",
                              f"{r['explain_per_second']:.1f}", f"{r['kept_rate']:.1%}", r["bpd"])
            table.add_row("Captum IG (n_steps=50), explanation only", "-", "-", "-", f"{1 / ig:.1f}", "-", "-")
            console.print(table)
    # One file for every testbed run so far: this run's testbeds replace their earlier entries.
    record = OUT / "simplifier.json"
    earlier = json.loads(record.read_text()) if record.is_file() else []
    summary = [e for e in earlier if e["testbed"] not in {s["testbed"] for s in summary}] + summary
    record.write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
