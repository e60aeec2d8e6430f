"""Training with simplification: the trade-off between input bits and accuracy, on the report testbeds.

For each testbed, ``simplebits train`` at its defaults (SmallCNN from scratch, one run per bits
budget, train split to train, 500 test images to validate) and then, from what it wrote:

* validation accuracy on simplified images, its drop from the reference (budget 1 or lambda 0),
  and accuracy on originals;
* bits kept (estimator, mean per-image ratio) and lossless WebP size kept;
* on testbeds with masks: the share of the simplified images' bits inside the digit's mask, as a
  multiple of the mask's share of the image (1 = no preference; the issue's reference: 1.3x for
  today's per-image explanations);
* minutes per lambda (training plus validation) and for the whole curve.

Then the targets (issues #13 and #23), checked on the same numbers: a run within 2 points of the
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
    python benchmarks/tradeoff.py --figure docs/tradeoff.png       # after a run: curves and examples
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from simplebits_audit.jobs.train import train_job
from simplebits_audit.results import read_tradeoff, removal_order, strength_label, strength_name
from simplebits_audit.testbeds import REPORT_TESTBEDS
from simplebits_audit.testbeds import TESTBEDS as REGISTRY

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


def qualifying(record: dict) -> dict | None:
    """The simplest point within 2 points of the reference that also meets the bits and WebP targets, else the simplest within 2 points."""
    ref = min(record["points"], key=removal_order)
    close = [p for p in record["points"] if p["val_accuracy_simplified"] >= ref["val_accuracy_simplified"] - TARGETS["accuracy_drop"]]
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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="the train job's seed (data draw, validation images, initialisation)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--figure", type=Path, default=None, help="Write the curves-and-examples figure (PNG) from the runs.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=170)
    records = {}
    for name in args.testbeds:
        started = time.perf_counter()
        train_job(name, args.out / name, budgets=args.budgets, lams=args.lams, epochs=args.epochs, warmup=args.warmup,
                  reference=args.reference, seed=args.seed,
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
        best = qualifying(record)
        ref = min(record["points"], key=removal_order)
        minutes = [p["training_seconds"] / 60 for p in record["points"]]
        if best is None:
            targets.add_row(name, "none", "no", "-", "-", "-", f"{max(minutes):.1f}", f"{sum(minutes):.1f}")
            continue
        drop = ref["val_accuracy_simplified"] - best["val_accuracy_simplified"]
        yes = lambda ok, text: f"{'yes' if ok else 'NO'} ({text})"  # noqa: E731
        targets.add_row(
            name,
            strength_label(best),
            yes(drop <= TARGETS["accuracy_drop"], f"{-100 * drop:+.1f} pt"),
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
