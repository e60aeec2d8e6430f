"""SimpleBits against every Captum baseline and the trivial reference maps, on a testbed with ground truth.

Loads ``testbeds.load(NAME, "test", n, seed)`` and the testbed's shipped classifier, runs every
method through :func:`simplebits_audit.jobs.comparison` (same images, same model, same target: the
model's prediction unless ``--target label``) and prints one table: bits-efficiency, localisation
against the ground-truth mask, faithfulness, seconds per image (and as a multiple of Integrated
Gradients, n_steps=50, timed in the same run), rank. Then two plain verdicts: does a trivial
reference map beat the best real method (the testbed is then flawed), and does SimpleBits meet its
targets (first on bits-efficiency; localisation AUROC at least the best Captum baseline's).

    python benchmarks/compare.py --testbed digits-on-photos [--n 200] [--quick] [--out results/]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from simplebits_audit import testbeds
from simplebits_audit.explainers import SIMPLEBITS
from simplebits_audit.jobs.comparison import Comparison, all_methods, compare

COLUMNS = [  # (key, header, format)
    ("seconds_per_image", "s/img", "{:.3f}"),
    ("x_ig", "xIG", "{:.2f}"),
    ("bits_auc", "bits AUC^", "{:.3f}"),
    ("bits_needed", "bits@90%v", "{:.3f}"),
    ("bits_auc_map", "bits AUC map^", "{:.3f}"),
    ("auroc", "AUROC^", "{:.3f}"),
    ("pointing_game", "point^", "{:.3f}"),
    ("relevance_mass", "mass^", "{:.3f}"),
    ("relevance_rank", "rank-acc^", "{:.3f}"),
    ("deletion_auc", "deletion v", "{:.3f}"),
    ("insertion_auc", "insertion^", "{:.3f}"),
    ("infidelity", "infid v", "{:.4f}"),
    ("sensitivity", "sens v", "{:.3f}"),
    ("rank", "rank", "{}"),
]


def _fmt(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def verdicts(cmp: Comparison) -> list[str]:
    """Plain sentences: trivial maps beating real methods; SimpleBits against its targets."""
    lines = []
    wins = cmp.reference_beats_real()
    if wins:
        for metric, ref, real in wins:
            lines.append(
                f"TESTBED FLAWED on {metric}: the trivial map '{ref}' ({cmp.mean(ref, metric):.3f}) beats the best real method "
                f"'{real}' ({cmp.mean(real, metric):.3f})."
            )
    else:
        lines.append("No trivial reference map beats the best real method on AUROC, deletion, insertion or bits-efficiency.")
    if SIMPLEBITS in cmp.methods:
        real = [m for m in cmp.methods if not cmp.reference[m]]
        best_bits = cmp.best("bits_auc")
        sb_bits = cmp.mean(SIMPLEBITS, "bits_auc")
        met = best_bits == SIMPLEBITS
        lines.append(
            f"SimpleBits bits-efficiency target (first among real methods): {'MET' if met else 'NOT MET'} -- "
            f"SimpleBits {sb_bits:.3f}, best {best_bits} {cmp.mean(best_bits, 'bits_auc'):.3f} (of {len(real)} real methods)."
        )
        if cmp.mean(SIMPLEBITS, "auroc") is not None:
            captum = [m for m in real if m != SIMPLEBITS and cmp.mean(m, "auroc") is not None]
            best = max(captum, key=lambda m: cmp.mean(m, "auroc")) if captum else None
            if best is not None:
                sb, b = cmp.mean(SIMPLEBITS, "auroc"), cmp.mean(best, "auroc")
                lines.append(
                    f"SimpleBits localisation target (AUROC >= best Captum baseline): {'MET' if sb >= b else 'NOT MET'} -- "
                    f"SimpleBits {sb:.3f}, best Captum {best} {b:.3f}."
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbed", required=True, choices=testbeds.list_testbeds())
    parser.add_argument("--n", type=int, default=None, help="test images (default 200, --quick 32)")
    parser.add_argument("--quick", action="store_true", help="fewer images and samples: a smoke run in about a minute")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimator", default=None, help="bit estimator name or checkpoint (default: the package default)")
    parser.add_argument("--target", choices=("prediction", "label"), default="prediction")
    parser.add_argument("--methods", default=None, help=f"comma-separated subset of {all_methods()}")
    parser.add_argument("--out", type=Path, default=None, help="directory for compare.csv and compare.json")
    args = parser.parse_args()

    n = args.n or (32 if args.quick else 200)
    # simplebits_learned needs a trained simplifier (benchmarks/simplifier.py measures it)
    methods = args.methods.split(",") if args.methods else [m for m in all_methods() if m != "simplebits_learned"]
    data = testbeds.load(args.testbed, "test", n, args.seed)
    model = testbeds.load_classifier(args.testbed)
    x, labels, masks = data.images, data.labels, data.masks
    with torch.no_grad():
        pred = model(x).argmax(1)
    target = labels if args.target == "label" else pred
    method_options = {m: {"n_samples": 50 if args.quick else 200} for m in ("lime", "kernel_shap") if m in methods}
    if args.quick and SIMPLEBITS in methods:
        method_options[SIMPLEBITS] = {"steps": 20}
    options = {
        "method_options": method_options,
        "sensitivity_images": 4 if args.quick else 8,
        "infidelity_samples": 5 if args.quick else 10,
    }
    t0 = time.perf_counter()
    cmp = compare(model, x, target, methods=methods, masks=masks, estimator=args.estimator, seed=args.seed, show_progress=True, **options)
    total = time.perf_counter() - t0

    title = (
        f"{args.testbed}: {n} test images, target = {args.target}, classifier accuracy {(pred == labels).float().mean():.0%}, "
        f"estimator {cmp.settings['estimator']}, reference {cmp.settings['reference']}, CPU threads {torch.get_num_threads()}"
    )
    table = Table(title=title)
    table.add_column("method", justify="left")
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right")
    for row in cmp.to_rows():
        name = f"ref: {row['method']}" if row["reference"] else row["method"]
        table.add_row(name, *[_fmt(row.get(key), fmt) for key, _, fmt in COLUMNS])
    console = Console(width=220)
    console.print(table)
    console.print(
        "^ higher is better, v lower is better. bits AUC: probability kept vs. share of the original's bits (SimpleBits: its "
        "lambda path; others: top-k% of the map on a blurred reference); bits@90%: cheapest bits share keeping 90% of the "
        "probability; rank: mean rank over bits AUC, localisation, deletion and insertion. "
        f"Sensitivity on the first {cmp.settings['sensitivity_images']} images."
    )
    if cmp.result is not None:
        r = cmp.per_image[SIMPLEBITS]
        console.print(
            f"SimpleBits: top-1 kept {r['kept'].mean():.0%}; bpd removed {r['bits_removed'].mean():.3f} "
            f"({cmp.result.bpd_before.mean():.3f} -> {cmp.result.bpd_after.mean():.3f}); "
            + (f"PNG bpd {r['png_bpd_before'].mean():.3f} -> {r['png_bpd_after'].mean():.3f}; "
               f"WebP bpd {r['webp_bpd_before'].mean():.3f} -> {r['webp_bpd_after'].mean():.3f}" if "png_bpd_before" in r else "")
        )
    for line in verdicts(cmp):
        console.print(line)
    console.print(f"total {total:.0f} s")
    if args.out:
        cmp.to_csv(args.out / "compare.csv")
        cmp.to_json(args.out / "compare.json")
        console.print(f"wrote {args.out / 'compare.csv'} and {args.out / 'compare.json'}")


if __name__ == "__main__":
    main()
