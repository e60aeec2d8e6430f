"""The learned simplifier with one training option changed: what the network's own output keeps and removes.

A diagnostic, not a design script: it trains ``train_simplifier`` on a testbed's train split
against the shipped classifier (the testbed's head: ``sigmoid`` for ``radiograph`` and
``digits-stripes``) with the options given, and scores the network's one-pass output on the 256
test images ``benchmarks/simplifier.py`` scores (seed 0): the share whose decision it keeps
(every switched-on label on its side, for a sigmoid head) and the bits kept under the default
estimator. Options chosen this way on a report testbed are leads for a design set, not
defaults (docs/design-log.md, "Learned simplifier").

    python benchmarks/simplifier_options.py --testbed digits-stripes                 # the defaults
    python benchmarks/simplifier_options.py --testbed digits-stripes --option margin=0.5
    python benchmarks/simplifier_options.py --testbed digits-stripes --option lam=3 --option margin=0.5
"""

from __future__ import annotations

import argparse
import time

import torch

from simplebits_audit import testbeds, train_simplifier
from simplebits_audit.training import TRAINING_DEFAULTS, evaluate_simplifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbed", required=True)
    parser.add_argument("--option", action="append", default=[], help=f"NAME=VALUE, a training option ({sorted(TRAINING_DEFAULTS)})")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = {}
    for item in args.option:
        name, _, value = item.partition("=")
        if name not in TRAINING_DEFAULTS:
            raise SystemExit(f"--option: unknown training option {name!r}; choose from {sorted(TRAINING_DEFAULTS)}")
        options[name] = type(TRAINING_DEFAULTS[name])(float(value))
    head = "sigmoid" if args.testbed in testbeds.SIGMOID_HEADS else "softmax"
    model = testbeds.load_classifier(args.testbed)
    held_out = testbeds.load(args.testbed, "test", n=256, seed=1).images  # the card's check: not the scored images
    started = time.perf_counter()
    simplifier = train_simplifier(model, testbeds.load(args.testbed, "train").images, held_out=held_out, head=head, **options)
    minutes = (time.perf_counter() - started) / 60
    scores = evaluate_simplifier(simplifier, model, testbeds.load(args.testbed, "test", n=256, seed=0).images, head=head)
    print(f"{args.testbed} ({head}) {options or 'defaults'}: network output keeps {scores['top1_kept']:.1%} of the decisions "
          f"with {scores['bits_kept']:.3f} of the bits; trained in {minutes:.1f} min on {args.threads} thread(s)")


if __name__ == "__main__":
    main()
