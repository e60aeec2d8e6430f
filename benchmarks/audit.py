"""How fast is a batch audit on CPU? One process vs. two (torchrun), with Captum IG as the reference.

Runs ``simplebits audit`` on a 32x32 testbed (its shipped classifier, ``--select all --limit N``)
once in one process and once with ``torchrun --nproc_per_node=2``, and Captum's
IntegratedGradients (n_steps=50) on the same images in the same run. Prints explanations per
second, the time split (prediction / simplification / writing) and peak memory per process.

    python benchmarks/audit.py [--testbed digits-on-photos] [--n 400] [--limit 64] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from captum.attr import IntegratedGradients
from rich.console import Console
from rich.table import Table

from simplebits_audit import testbeds


def run(command: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(command, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{res.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbed", default="digits-on-photos")
    parser.add_argument("--n", type=int, default=400, help="testbed images predicted")
    parser.add_argument("--limit", type=int, default=64, help="images explained")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    script = shutil.which("simplebits", path=str(Path(sys.executable).parent)) or "simplebits"
    audit = ["--quiet", "audit", args.testbed, "--model", f"testbed:{args.testbed}", "--testbed-n", str(args.n),
             "--select", "all", "--limit", str(args.limit), "--batch-size", str(args.batch_size)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, command in [
            ("1 process (2 threads)", [script, *audit, "--out", f"{tmp}/one"]),
            ("torchrun, 2 processes (1 thread each)", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                                                        "-m", "simplebits_audit.cli.main", *audit, "--out", f"{tmp}/two"]),
        ]:
            wall = run(command)
            out = Path(command[-1])
            summary = json.loads((out / "summary.json").read_text())
            t = summary["timing"]
            rows.append((label, summary["explained"] / wall, summary["explained"] / t["wall_seconds_this_run"],
                         t["predict_seconds"], t["simplify_seconds"], t["write_seconds"], wall, max(summary["peak_rss_mb_per_process"])))

    # Reference in the same run: Captum IG (n_steps=50) on the same images, in this process.
    data = testbeds.load(args.testbed, "test", n=args.n, seed=0)
    model = testbeds.load_classifier(args.testbed)
    x = data.images[: args.limit]
    with torch.no_grad():
        target = model(x).argmax(1)
    t0 = time.perf_counter()
    ig = IntegratedGradients(model)
    for i in range(0, len(x), args.batch_size):
        ig.attribute(x[i : i + args.batch_size], target=target[i : i + args.batch_size], n_steps=50)
    ig_seconds = time.perf_counter() - t0

    ig_row = ("Captum IG n_steps=50, in-process (reference)", None, len(x) / ig_seconds, None, ig_seconds, None, None, None)
    runs = [*rows, ig_row]
    table = Table(title=f"simplebits audit on {args.testbed} ({args.n} predicted, {args.limit} explained, batch {args.batch_size})")
    table.add_column("")
    for run_row in runs:
        table.add_column(run_row[0], justify="right")
    labels = ["explained / s (whole command)", "explained / s (audit work)", "predict s", "simplify s (summed over ranks)",
              "write s", "whole command s", "peak RSS MB per process"]
    for i, label in enumerate(labels, start=1):
        table.add_row(label, *("-" if r[i] is None else f"{r[i]:.2f}" if r[i] < 100 else f"{r[i]:.0f}" for r in runs))
    Console(width=200).print(table)
    print(f"torchrun speed-up over one process: {rows[1][1] / rows[0][1]:.2f}x whole command, {rows[1][2] / rows[0][2]:.2f}x audit work")
    print(f"one process vs Captum IG (audit work, explanations per second): {ig_row[2] / rows[0][2]:.1f}x slower")


if __name__ == "__main__":
    main()
