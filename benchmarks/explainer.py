"""SimpleBits against Captum's Integrated Gradients (n_steps=50), measured in the same run.

Rows: a classifier, an image size and a batch size. Each method runs in its own subprocess so
that its peak resident memory (max RSS, includes Python and torch) is its own. Columns: seconds
per image for SimpleBits (default settings) and IG, their ratio, peak memory, the fraction of
images whose top-1 class is kept, and bpd before/after (default estimator).

    python benchmarks/explainer.py                 # the default grid
    python benchmarks/explainer.py --quick         # 32x32 rows only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from rich.console import Console
from rich.table import Table


def _data(model_name: str, size: int, batch: int):
    from simplebits_audit import testbeds
    from simplebits_audit.photos import held_out_crops

    if model_name == "testbed-cnn":
        test = testbeds.load("digits-on-photos", "test", n=batch, seed=7)
        return testbeds.load_classifier("digits-on-photos"), test.images
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    return model, held_out_crops(batch, size=size, seed=7)


def run_one(model_name: str, size: int, batch: int, method: str) -> dict:
    from captum.attr import IntegratedGradients

    from simplebits_audit import SimpleBits

    model, x = _data(model_name, size, batch)
    with torch.no_grad():
        pred = model(x).argmax(1)
    # Warm-up on one image (imports, allocator, estimator loading) so that batch 1 times the method.
    if method == "ig":
        IntegratedGradients(model).attribute(x[:1], target=pred[:1], n_steps=50)
    else:
        SimpleBits(model, steps=2, n_snapshots=1).attribute(x[:1], target=pred[:1])
    t0 = time.perf_counter()
    out: dict = {}
    if method == "ig":
        IntegratedGradients(model).attribute(x, target=pred, n_steps=50, internal_batch_size=max(batch, 64))
    else:
        _, result = SimpleBits(model).attribute(x, target=pred, return_result=True)
        out = {
            "kept": result.kept.float().mean().item(),
            "bpd_before": result.bpd_before.mean().item(),
            "bpd_after": result.bpd_after.mean().item(),
        }
    out["seconds_per_image"] = (time.perf_counter() - t0) / batch
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


GRID = [
    ("testbed-cnn", 32, 1),
    ("testbed-cnn", 32, 64),
    ("resnet18-random", 32, 1),
    ("resnet18-random", 32, 64),
    ("resnet18-random", 224, 1),
    ("resnet18-random", 224, 8),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the 32x32 rows")
    parser.add_argument("--one", nargs=4, metavar=("MODEL", "SIZE", "BATCH", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        model_name, size, batch, method = args.one
        print(json.dumps(run_one(model_name, int(size), int(batch), method)))
        return
    table = Table(title=f"SimpleBits vs Integrated Gradients (n_steps=50), CPU threads {torch.get_num_threads()}")
    for col in (
        "classifier",
        "size",
        "batch",
        "SimpleBits s/img",
        "IG s/img",
        "ratio",
        "SB peak MB",
        "IG peak MB",
        "top-1 kept",
        "bpd before -> after",
    ):
        table.add_column(col, justify="right")
    for model_name, size, batch in GRID:
        if args.quick and size != 32:
            continue
        res = {}
        for method in ("ig", "simplebits"):
            proc = subprocess.run(
                [sys.executable, __file__, "--one", model_name, str(size), str(batch), method], capture_output=True, text=True, check=True
            )
            res[method] = json.loads(proc.stdout.strip().splitlines()[-1])
        sb, ig = res["simplebits"], res["ig"]
        table.add_row(
            model_name, str(size), str(batch), f"{sb['seconds_per_image']:.3f}", f"{ig['seconds_per_image']:.3f}",
            f"{sb['seconds_per_image'] / ig['seconds_per_image']:.1f}x", f"{sb['peak_rss_mb']:.0f}", f"{ig['peak_rss_mb']:.0f}",
            f"{sb['kept']:.0%}", f"{sb['bpd_before']:.2f} -> {sb['bpd_after']:.2f}",
        )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
