"""Training with simplification: the trade-off between input bits and accuracy, on the report testbeds.

For each testbed, ``simplebits train`` at its defaults (SmallCNN from scratch, one run per bits
budget, train split to train, 500 test images to validate) and then, from what it wrote:

* validation accuracy on simplified images, its drop from the reference (budget 1 or lambda 0),
  and accuracy on originals;
* bits kept (estimator, mean per-image ratio) and lossless WebP size kept;
* on testbeds with masks: the share of the simplified images' bits inside the digit's mask, as a
  multiple of the mask's share of the image (1 = no preference; the issue's reference: 1.3x for
  today's per-image explanations);
* minutes per lambda (training plus validation) and for the whole curve;
* held out (``--test-n``, default 2000): every run scored on test images no training, validation
  or choice used (the test split at ``--test-seed``), and each run's paired difference from the
  reference with its standard error. On testbeds at 80-90 % accuracy the 500 validation images
  put a standard error of about 2 points on a run's Δ, the size of the target (design log).

Then the targets (issues #13 and #23), checked on the same numbers (the accuracy on the held-out
Δ where it was scored): a run within 2 points of the
reference with bits kept <= 0.30 and WebP kept <= 0.40; there, bits inside the mask >= 3x its
share; one run <= 10 minutes, the curve <= 40 minutes. The default testbeds are the report
testbeds the train job takes at 32 px (``testbeds.REPORT_TESTBEDS``: no design choice of this
setting looked at them; the budget was designed on ``benchmarks/training_design.py``'s design
testbeds). Runs resume (the train job's folders under ``benchmarks/out/tradeoff/``), and
``--figure`` writes the docs' figure.

    python benchmarks/tradeoff.py                                  # 3 report testbeds x 4 budgets, ~1.3 hours on 2 cores
    python benchmarks/tradeoff.py --testbeds blended-digits --lams 0,1
    python benchmarks/tradeoff.py --budgets 1,0.3 --seed 1 --out benchmarks/out/tradeoff-seed1   # another draw
    python benchmarks/tradeoff.py --testbeds radiograph --budgets 1,0.3 --reference mosaic --out benchmarks/out/tradeoff-rad-mosaic
    python benchmarks/tradeoff.py --testbeds photo-objects --budgets 1,0.3 --testbed-n 4000 --out benchmarks/out/tradeoff-po
    python benchmarks/tradeoff.py --figure docs/tradeoff.png       # after a run: curves and examples
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from simplebits_audit import testbeds
from simplebits_audit.estimators import resolve_estimator
from simplebits_audit.jobs.train import train_job
from simplebits_audit.models import build_architecture
from simplebits_audit.results import read_tradeoff, removal_order, strength_label, strength_name
from simplebits_audit.testbeds import REPORT_TESTBEDS
from simplebits_audit.testbeds import TESTBEDS as REGISTRY
from simplebits_audit.training.joint import TrainingResult, paired_difference

OUT = Path(__file__).parent / "out" / "tradeoff"
#: the report testbeds the train job takes at 32 px (radiograph and digits-stripes have sigmoid heads; photo-objects is 128 px)
TESTBEDS = tuple(t for t in ("colour-cue", "texture-cue", "shape-cue") if t in REPORT_TESTBEDS and t in REGISTRY)
TARGETS = {
    "accuracy_drop": 0.02,
    "bits_kept": 0.30,
    "webp_kept": 0.40,
    "inside_ratio": 3.0,
    "minutes_per_lambda": 10.0,
    "minutes_curve": 40.0,
}
#: the held-out test images' seed: far from the train job's validation seeds (seed + 1 of the draws run so far)
TEST_SEED = 1000


def held_out(folder: Path, record: dict, n: int, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """Per-image scores (:meth:`TrainingResult.score`) of each run in a train job's ``folder`` on ``n`` held-out test images."""
    settings = json.loads((folder / "train.json").read_text())
    data = testbeds.load(str(settings["data"]).removeprefix("testbed:"), "test", n=n, seed=seed)
    estimator = resolve_estimator(None if settings["estimator"] == "default" else settings["estimator"])  # the runs' own
    scores = {}
    for point in record["points"]:
        network = build_architecture(settings["arch"], record["settings"]["n_classes"], data.images.shape[1], data.images.shape[-1])
        scores[run_name(point)] = TrainingResult.load(folder / run_name(point), network).score(data.images, data.labels, estimator)
    return scores


def within(delta: float) -> bool:
    """Whether a Δ in points is within the target's drop (a tolerance: shares of 500 images do not round-trip exactly)."""
    return delta >= -100 * TARGETS["accuracy_drop"] - 1e-6


def run_name(point: dict) -> str:
    """The folder (and examples key) of one point of ``tradeoff.json``."""
    return strength_name(point["lam"], point["budget"])


def paired(run: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """:func:`paired_difference` of per-image accuracies, in points."""
    delta, se = paired_difference(run, reference)
    return 100 * delta, 100 * se


def qualifying(record: dict, deltas: dict[str, tuple[float, float | None]]) -> dict | None:
    """The simplest point within 2 points of the reference that also meets the bits and WebP targets, else the simplest within 2 points.

    ``deltas``: per run name, its accuracy from the reference in points (held out where scored) and a standard error.
    """
    close = [p for p in record["points"] if within(deltas[run_name(p)][0])]
    meeting = [p for p in close if p["val_bits_kept"] <= TARGETS["bits_kept"] and p["webp_kept"] <= TARGETS["webp_kept"]]
    pool = meeting or close
    return min(pool, key=lambda p: p["val_bits_kept"]) if pool else None


def figure(records: dict[str, dict], path: Path) -> None:
    """Accuracy against bits kept per testbed, and one original and its simplified versions per lambda."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(records)
    fig = plt.figure(figsize=(4.2 * len(names), 7.2))
    grid = fig.add_gridspec(2, len(names), height_ratios=[1.3, 1])
    for col, name in enumerate(names):
        record, examples = records[name]
        points = sorted(record["points"], key=removal_order)
        ax = fig.add_subplot(grid[0, col])
        ax.plot([p["val_bits_kept"] for p in points], [p["val_accuracy_simplified"] for p in points], "o-", label="estimator bits")
        ax.plot([p["webp_kept"] for p in points], [p["val_accuracy_simplified"] for p in points], "s--", alpha=0.6, label="WebP size")
        for p in points:
            ax.annotate(
                strength_label(p), (p["val_bits_kept"], p["val_accuracy_simplified"]), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
        ax.set_xlim(0, 1.05)
        ax.set_title(name)
        ax.set_xlabel("share of the original kept")
        if col == 0:
            ax.set_ylabel("validation accuracy (simplified)")
            ax.legend(fontsize=8, loc="lower right")
        keys = ["original"] + [strength_name(p["lam"], p.get("budget")) for p in points]
        rows = [examples[k][:4] for k in keys if k in examples]
        strip = torch.cat([torch.cat([torch.from_numpy(img) for img in row], 1) for row in rows], 0).numpy()
        ax2 = fig.add_subplot(grid[1, col])
        ax2.imshow(strip, interpolation="nearest")
        ax2.set_yticks([(i + 0.5) * examples["original"].shape[1] for i in range(len(rows))])
        ax2.set_yticklabels(["original"] + [strength_label(p) for p in points][: len(rows) - 1], fontsize=8)
        ax2.set_xticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbeds", nargs="+", default=list(TESTBEDS))
    parser.add_argument("--budgets", default=None, help="Shares of the bits to keep (default: the library's default budgets).")
    parser.add_argument("--lams", default=None, help="Fixed lambdas instead of budgets.")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--reference", default=None,
                        help="what a removed mask cell becomes (the train job's reference; default training's 'auto')")
    parser.add_argument("--warmup", type=float, default=None, help="share of the joint steps before the simplifier starts (a diagnostic)")
    parser.add_argument("--testbed-n", type=int, default=None, help="training images per testbed (default: its train size)")
    parser.add_argument("--arch", default=None, help="the classifier's architecture (the train job's --arch; default: smallcnn)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="the train job's seed (data draw, validation images, initialisation)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--figure", type=Path, default=None, help="Write the curves-and-examples figure (PNG) from the runs.")
    parser.add_argument("--test-n", type=int, default=2000, help="held-out test images per testbed (0: none)")
    parser.add_argument("--test-seed", type=int, default=TEST_SEED, help="the held-out test images' seed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=170)
    records = {}
    for name in args.testbeds:
        started = time.perf_counter()
        train_job(name, args.out / name, budgets=args.budgets, lams=args.lams, epochs=args.epochs, warmup=args.warmup,
                  reference=args.reference, seed=args.seed, testbed_n=args.testbed_n, **({"arch": args.arch} if args.arch else {}),
                  show_progress=True)
        console.print(f"{name}: done in {(time.perf_counter() - started) / 60:.1f} min (this call; finished lambdas are reloaded)")
        records[name] = read_tradeoff(args.out / name)
    table = Table(
        "testbed",
        "run",
        "λ (final)",
        "acc. simplified",
        "Δ vs reference",
        "acc. original",
        "bits kept",
        "WebP kept",
        "JXL kept",
        "inside mask / share",
        "minutes",
        title=f"Training with simplification ({args.threads} threads)",
    )
    for name, (record, _) in records.items():
        ref = min(record["points"], key=removal_order)
        for p in sorted(record["points"], key=removal_order):
            ratio = f"{p['bits_inside_mask']:.2f} / {p['mask_share']:.2f} = {p['inside_ratio']:.1f}×" if "inside_ratio" in p else "n/a"
            table.add_row(
                name,
                strength_label(p),
                f"{p['lam']:.3g}",
                f"{100 * p['val_accuracy_simplified']:.1f}%",
                f"{100 * (p['val_accuracy_simplified'] - ref['val_accuracy_simplified']):+.1f}",
                f"{100 * p['val_accuracy_original']:.1f}%",
                f"{p['val_bits_kept']:.3f}",
                f"{p['webp_kept']:.3f}",
                f"{p['jxl_kept']:.3f}" if "jxl_kept" in p else "-",
                ratio,
                f"{p['training_seconds'] / 60:.1f}",
            )
    console.print(table)
    tests = {}
    if args.test_n:
        tests = {name: held_out(args.out / name, record, args.test_n, args.test_seed) for name, (record, _) in records.items()}
        held = Table("testbed", "run", "acc. simplified", "Δ vs reference ± s.e. (paired)", "acc. original", "bits kept",
                     title=f"Held out: {args.test_n} test images per testbed (test split, seed {args.test_seed})")
        for name, (record, _) in records.items():
            ref = tests[name][run_name(min(record["points"], key=removal_order))]
            for p in sorted(record["points"], key=removal_order):
                score = tests[name][run_name(p)]
                delta, se = paired(score["accuracy_simplified"], ref["accuracy_simplified"])
                percent = {k: f"{100 * float(score[k].mean()):.1f}%" for k in ("accuracy_simplified", "accuracy_original")}
                held.add_row(name, strength_label(p), percent["accuracy_simplified"], f"{delta:+.1f} ± {se:.1f}",
                             percent["accuracy_original"], f"{float(score['bits_kept'].mean()):.3f}")
        console.print(held)
    targets = Table(
        "testbed",
        "run chosen",
        "within 2 pt",
        "bits ≤ 0.30",
        "WebP ≤ 0.40",
        "inside ≥ 3× share",
        "max min/λ ≤ 10",
        "curve min ≤ 40",
        title="Targets (issues #13, #23)",
    )
    for name, (record, _) in records.items():
        ref = min(record["points"], key=removal_order)
        # Points from the reference and the standard error: held out where scored (design log: 500 validation images
        # cannot resolve 2 points), else on validation.
        deltas = {run_name(p): paired(tests[name][run_name(p)]["accuracy_simplified"], tests[name][run_name(ref)]["accuracy_simplified"])
                  if name in tests else (100 * (p["val_accuracy_simplified"] - ref["val_accuracy_simplified"]), None)
                  for p in record["points"]}
        best = qualifying(record, deltas)
        minutes = [p["training_seconds"] / 60 for p in record["points"]]
        if best is None:
            targets.add_row(name, "none", "no", "-", "-", "-", f"{max(minutes):.1f}", f"{sum(minutes):.1f}")
            continue
        shift, se = deltas[run_name(best)]
        validation = 100 * (best["val_accuracy_simplified"] - ref["val_accuracy_simplified"])
        accuracy_text = f"{validation:+.1f} pt validation"
        if se is not None:
            accuracy_text = f"{shift:+.1f} ± {se:.1f} pt held out; {accuracy_text}"
        yes = lambda ok, text: f"{'yes' if ok else 'NO'} ({text})"  # noqa: E731
        targets.add_row(
            name,
            strength_label(best),
            yes(within(shift), accuracy_text),
            yes(best["val_bits_kept"] <= TARGETS["bits_kept"], f"{best['val_bits_kept']:.3f}"),
            yes(best["webp_kept"] <= TARGETS["webp_kept"], f"{best['webp_kept']:.3f}"),
            yes(best["inside_ratio"] >= TARGETS["inside_ratio"], f"{best['inside_ratio']:.1f}×") if "inside_ratio" in best else "n/a",
            yes(max(minutes) <= TARGETS["minutes_per_lambda"], f"{max(minutes):.1f}"),
            yes(sum(minutes) <= TARGETS["minutes_curve"], f"{sum(minutes):.1f}"),
        )
    console.print(targets)
    if args.figure:
        figure(records, args.figure)


if __name__ == "__main__":
    main()
