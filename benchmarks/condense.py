"""Dataset condensation with simplification (issue #14) on the testbeds, everything measured in one run.

For each testbed (train split, 6000 images; test split, 1000 images): ``simplebits condense`` at its
defaults, i.e. gradient matching with the bits term, the same condensation without it (lam = 0),
and a random real subset of the same size; fresh classifiers trained on each set and tested on
the test split. Printed per set: test accuracy (mean ± std over the classifiers), bits per image
under the estimator and as lossless WebP, and the condensation's minutes; then the issue's targets.

    OMP_NUM_THREADS=1 python benchmarks/condense.py                 # both testbeds, 1 thread (~1 hour)
    python benchmarks/condense.py --testbeds stripes --threads 2
    python benchmarks/condense.py --figure docs/condensed_testbeds.png   # also the README figure

Each testbed's output folder (``benchmarks/out/condense-<testbed>/``, with its report.html) is
resumable: an interrupted benchmark continues where it stopped (minutes are summed over runs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from simplebits_audit._io import save_json

OUT = Path(__file__).parent / "out"
TESTBEDS = ("digits-on-photos", "stripes")
ROWS = ("condensed, simplified", "condensed without bits term", "random real subset")


def figure(results: dict[str, dict], path: Path, per_class: int = 10) -> Path:
    """The README figure: per testbed, the simplified condensed images and those without the bits term (a class per row)."""
    from PIL import Image, ImageDraw

    blocks = []
    for testbed, r in results.items():
        for kind, title in (("without_bits", "without bits term"), ("simplified", "with bits term (simplified)")):
            written = r["sets"][kind]
            grid = Image.open(Path(r["out"]) / written["grid"]).convert("RGB")
            caption = f"{testbed}: {title}, {written['bpd_mean']:.2f} bpd (WebP {written['webp_bpd_mean']:.2f})"
            blocks.append((caption, grid))
    width = max(g.width for _, g in blocks) * 2 + 30
    col_w = width // 2
    rows = [blocks[i : i + 2] for i in range(0, len(blocks), 2)]
    heights = [max(g.height for _, g in row) + 22 for row in rows]
    canvas = Image.new("RGB", (width, sum(heights) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    y = 2
    for row, h in zip(rows, heights):
        for c, (caption, grid) in enumerate(row):
            draw.text((c * col_w + 4, y), caption, fill="black")
            canvas.paste(grid, (c * col_w + 4, y + 16))
        y += h
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbeds", default=",".join(TESTBEDS))
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--lam", type=float, default=None)
    parser.add_argument("--outer-steps", type=int, default=None)
    parser.add_argument("--n-models", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from simplebits_audit.jobs.condense import run_condense

    console = Console(width=160)
    results = {}
    for testbed in args.testbeds.split(","):
        out = args.out / f"condense-{testbed}"
        started = time.perf_counter()
        r = run_condense(testbed, out, images_per_class=args.ipc, lam=args.lam, outer_steps=args.outer_steps, n_models=args.n_models,
                         epochs=args.epochs, seed=args.seed, show_progress=True)
        r["out"], r["wall_seconds_this_run"] = str(out), time.perf_counter() - started
        results[testbed] = r

    table = Table("testbed", "training set", "images", "test acc. % (mean ± std)", "bits / image", "bpd", "WebP bits / image", "WebP bpd",
                  "condense min", title=f"Condensation, {args.ipc} images per class, {args.threads} thread(s)")
    summary = {}
    for testbed, r in results.items():
        minutes = {"condensed, simplified": r["sets"]["simplified"]["seconds"] / 60,
                   "condensed without bits term": r["sets"]["without_bits"]["seconds"] / 60}
        for name in ROWS:
            row = r["evaluation"][name]
            table.add_row(
                testbed,
                name,
                str(row["images"]),
                f"{100 * row['accuracy_mean']:.1f} ± {100 * row['accuracy_std']:.1f}",
                f"{row['bits_per_image']:.0f}",
                f"{row['bpd']:.3f}",
                f"{row['webp_bits_per_image']:.0f}",
                f"{row['webp_bpd']:.3f}",
                f"{minutes[name]:.1f}" if name in minutes else "-",
            )
        ev = r["evaluation"]
        simplified, plain, real = ev["condensed, simplified"], ev["condensed without bits term"], ev["random real subset"]
        summary[testbed] = {
            "accuracy_gap_points": 100 * (plain["accuracy_mean"] - simplified["accuracy_mean"]),
            "above_random_points": 100 * (simplified["accuracy_mean"] - real["accuracy_mean"]),
            # a difference smaller than the spread over classifiers is not evidence either way
            "noise_points": 100 * max(simplified["accuracy_std"], plain["accuracy_std"], real["accuracy_std"]),
            "chance_points": 100 / len(r["data"]["classes"]),
            "bits_ratio": plain["bits_per_image"] / simplified["bits_per_image"],
            "webp_ratio": plain["webp_bits_per_image"] / simplified["webp_bits_per_image"],
            "condense_minutes": minutes["condensed, simplified"],
            "real_bpd": r["data"]["real_bpd_mean"], "real_webp_bpd": r["data"]["real_webp_bpd_mean"],
        }
    console.print(table)
    targets = Table("testbed", "acc. gap to no-bits (≤ 2 pts)", "above random real (> 0)", "bits ratio (≥ 5x #14; ≥ 10x #23)", "WebP ratio",
                    "minutes (≤ 30)", "real images bpd / WebP bpd", title="Targets")
    for testbed, s in summary.items():
        def mark(ok):
            return "[green]met[/]" if ok else "[red]missed[/]"

        noise = f" (spread {s['noise_points']:.1f})" if abs(s["above_random_points"]) <= s["noise_points"] else ""
        targets.add_row(
            testbed,
            f"{s['accuracy_gap_points']:+.1f} {mark(s['accuracy_gap_points'] <= 2)}",
            f"{s['above_random_points']:+.1f} {mark(s['above_random_points'] > 0)}{noise}",
            f"{s['bits_ratio']:.1f}x {mark(s['bits_ratio'] >= 5)}; {mark(s['bits_ratio'] >= 10)}",
            f"{s['webp_ratio']:.1f}x",
            f"{s['condense_minutes']:.1f} {mark(s['condense_minutes'] <= 30)}",
            f"{s['real_bpd']:.2f} / {s['real_webp_bpd']:.2f}",
        )
    console.print(targets)
    for testbed, s in summary.items():
        best = max(row["accuracy_mean"] for row in results[testbed]["evaluation"].values())
        if 100 * best < s["chance_points"] + 5:
            console.print(f"[yellow]{testbed}: every training set is within 5 points of chance ({s['chance_points']:.0f} %): "
                          "the accuracy targets say nothing there[/]")
    record = {"threads": args.threads, "summary": summary,
              "results": {t: {k: r[k] for k in ("settings", "data", "evaluation")} for t, r in results.items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    save_json(record, args.out / "condense.json")  # atomic, strict JSON (NaN as null)
    if args.figure is not None:
        console.print(f"figure: {figure(results, args.figure)}")


if __name__ == "__main__":
    main()
