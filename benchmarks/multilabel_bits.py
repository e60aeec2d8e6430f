"""What keeping each label costs on the multi-label ``digits-stripes``: the per-image engine as a bits floor.

Training with simplification asks a budget (default 0.3 of the bits) under which *every* label
stays right. This diagnostic asks the shipped, frozen ``digits-stripes`` classifier (two sigmoid
labels: a digit, faint stripes) how many bits its simplest kept images need, per choice of what
to keep: ``SimpleBits(head="sigmoid")`` at its defaults on the 256 test images the learned
simplifier's benchmark scores (seed 0), with

* ``target=0``: the digit label kept on its side (what ``benchmarks/simplifier.py`` asks);
* ``target=1``: the stripes label;
* no target: every label that was on (all labels where none was on).

For each it prints bits kept under the default estimator (also apart for the images whose stripes
label was on and off) and as WebP lossless (a real codec),
and the share of images on which each label, and every label, is still on its original side
(the model called again on the returned image). A co-trained classifier may learn to read less
than this frozen one needs, so this is a reference, not a bound.

    python benchmarks/multilabel_bits.py            # ~1 min on one thread
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from simplebits_audit import SimpleBits, testbeds
from simplebits_audit.codecs import codec_bits
from simplebits_audit.estimators import resolve_estimator

TESTBED = "digits-stripes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = testbeds.load(TESTBED, "test", n=args.n, seed=args.seed)
    model = testbeds.load_classifier(TESTBED)
    estimator = resolve_estimator(None)
    with torch.no_grad():
        on = model(data.images) > 0
        bits_before = estimator.bpd(data.images)
    webp_before = codec_bits(data.images)
    console = Console(width=150)
    console.print(f"{TESTBED}: {args.n} test images (seed {args.seed}); labels on: digit {on[:, 0].float().mean():.1%}, "
                  f"stripes {on[:, 1].float().mean():.1%}, both {on.all(1).float().mean():.1%}, none {(~on).all(1).float().mean():.1%}")
    table = Table("kept (target)", "bits kept", "stripes on / off", "WebP kept", "digit on its side", "stripes on its side",
                  "every label", "seconds")
    choices = [("digit (target=0)", 0), ("stripes (target=1)", 1), ("every label that was on (no target)", None)]
    explainer = SimpleBits(model, head="sigmoid")
    for name, label in choices:
        started = time.perf_counter()
        simplified = []
        for i in range(0, args.n, args.batch):
            images = data.images[i : i + args.batch]
            target = None if label is None else torch.full((len(images),), label, dtype=torch.long)
            _, result = explainer.attribute(images, target=target, return_result=True, seed=args.seed + i)
            simplified.append(result.simplified)
        seconds = time.perf_counter() - started
        simplified = torch.cat(simplified)
        with torch.no_grad():
            same = (model(simplified) > 0) == on
            bits = estimator.bpd(simplified)
        kept, webp_kept = bits / bits_before, codec_bits(simplified) / webp_before
        table.add_row(
            name, f"{kept.mean():.3f}", f"{kept[on[:, 1]].mean():.3f} / {kept[~on[:, 1]].mean():.3f}", f"{webp_kept.mean():.3f}",
            f"{same[:, 0].float().mean():.1%}", f"{same[:, 1].float().mean():.1%}", f"{same.all(1).float().mean():.1%}", f"{seconds:.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
