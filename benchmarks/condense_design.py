"""Dataset condensation: design trials towards ten times fewer bits (issue #23), on a design testbed.

One condensation per call (10 images per class by default), then ``--n-models`` fresh ConvNets
trained on it and tested on 1000 test images; prints test accuracy (mean ± std), bits per
dimension under the estimator and as lossless WebP, and minutes, and writes them to
``benchmarks/out/condense_design/<testbed>-<name>.json``. The unpenalised condensation
(``--lam 0``) is the reference the bits ratio is taken against. Results: docs/design-log.md,
"Dataset condensation".

    python benchmarks/condense_design.py --testbed stripes --lam 0 --name plain
    python benchmarks/condense_design.py --testbed stripes --lam 1 --warmup 0.5 --outer-steps 300 --name lam1-w05-300
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from simplebits_audit import testbeds
from simplebits_audit.codecs import codec_bits
from simplebits_audit.testbeds import DESIGN_TESTBEDS
from simplebits_audit.training.condensation import condense, evaluate_condensed

OUT = Path(__file__).parent / "out" / "condense_design"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbed", default="stripes", choices=DESIGN_TESTBEDS)
    parser.add_argument("--name", required=True)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--lam", type=float, default=None)
    parser.add_argument("--warmup", type=float, default=None)
    parser.add_argument("--outer-steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--init", default=None)
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--basis", default=None, help="rgb or luma-chroma (condense's basis)")
    parser.add_argument("--seed", type=int, default=0, help="the condensation's seed (images, networks, real batches)")
    parser.add_argument("--n-models", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test = testbeds.load(args.testbed, "train"), testbeds.load(args.testbed, "test")
    OUT.mkdir(parents=True, exist_ok=True)
    options = {k: v for k, v in {"lam": args.lam, "warmup": args.warmup, "outer_steps": args.outer_steps, "lr": args.lr,
                                 "init": args.init,
                                 "resolution": args.resolution, "basis": args.basis}.items() if v is not None}
    started = time.perf_counter()
    condensed = condense(train, images_per_class=args.ipc, checkpoint=OUT / f"{args.testbed}-{args.name}.ckpt",
                         seed=args.seed, **options)
    minutes = (time.perf_counter() - started) / 60
    scores = evaluate_condensed(condensed, test, n_models=args.n_models)["condensed"]
    dims = condensed.images[0].numel()
    record = {"testbed": args.testbed, "name": args.name, "seed": args.seed, **options, "basis": condensed.settings["basis"],
              "minutes": minutes,
              "accuracy_mean": scores["accuracy_mean"],
              "accuracy_std": scores["accuracy_std"], "bpd": float(condensed.bits.mean()) / dims,
              "webp_bpd": float(codec_bits(condensed.images).mean()) / dims}
    (OUT / f"{args.testbed}-{args.name}.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record))


if __name__ == "__main__":
    main()
