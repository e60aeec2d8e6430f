"""Training with simplification: design trials of the bits budget, on the design testbeds only.

One run per (testbed, variant): SmallCNN from scratch on the testbed's train split (``--n``, 6000 images),
the defaults of :func:`~simplebits_audit.training.train_with_simplification` except what the
variant changes, validated on 500 test images. It prints the last epoch's scores plus the WebP
check, and writes them to ``benchmarks/out/training_design/<testbed>-<variant>.json`` (a rerun
resumes from the checkpoint beside it). Results: docs/design-log.md, "Training with simplification".
Since the cooldown became the default (2 epochs after the 12, 2026-12-01) a variant without a
``cool`` flag runs it; ``-cool0`` gives the runs of the design log's earlier entries. Since
2026-12-02 the originals' loss and the budget check are on too: ``-origsep0-noproj`` gives the
default of the entries before.

    python benchmarks/training_design.py --testbed stripes --variant budget-0.3
    python benchmarks/training_design.py --testbed stripes --variant budget-0.3-nogate
    python benchmarks/training_design.py --testbed stripes --variant budget-0.3 --epochs 20 --tag uniform

Variants: ``lam-<x>`` (a fixed lambda, the old knob), ``budget-<b>`` (the bits budget, gate
margin 1), ``budget-<b>-nogate`` (no gate: every image's bits are charged), ``budget-<b>-rate<r>``
(the dual step), ``budget-<b>-start<l>`` (lambda's start), ``budget-<b>-margin<m>`` (the gate's margin),
``budget-<b>-decay<e>`` (the mask-logit penalty), ``budget-<b>-anneal<t>`` (the sampling temperature's end),
``budget-<b>-cool<e>`` (the cooldown's epochs: the classifier alone on the frozen simplifier's threshold),
``budget-<b>-sgate`` (the gate asks about the training sample, not the thresholded image; the
design runs named ``tgate`` ran the thresholded gate before it became the default),
``budget-<b>-origsep<w>`` (the weight of the classifier's loss on the originals while the simplifier
trains, in a forward of their own as the library runs them; default 1 since 2026-12-02, ``origsep0``: off;
``orig<w>``: the same in one batch with the simplified images, design log), ``budget-<b>-hinge`` (charge only the
bits kept above the budget),
``budget-<b>-warm<w>`` (the warm-up's share), ``budget-<b>-noproj`` (no budget check when the joint epochs end, as
before 2026-12-02: runs before then had none), ``budget-<b>-idlemoments`` (the simplifier's AdamW moments also
accumulate through the warm-up, as before), ``budget-<b>-sramp<r>`` (the simplifier's learning-rate ramp from its first
step, a share of the joint steps; default 0.05 since 2026-12-02, late: ``-idlemoments-sramp0`` gives the default before).
``--seed S`` draws another initialisation and batch order (a nonzero S adds ``-seedS`` to the output name).

``shortcut`` validates on shuffled markers and records ``marker_agreement``; ``--train-variant weak``
trains it on markers that name the label in 70 % of the images (a cue that decides less than the
digit, as the ``radiograph`` marker decides less than the opacity):

    python benchmarks/training_design.py --testbed shortcut --train-variant weak --variant budget-0.3
    python benchmarks/training_design.py --testbed shortcut --train-variant weak --weak-agreement 0.85 --variant budget-0.3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from simplebits_audit import testbeds
from simplebits_audit.codecs import codec_bits
from simplebits_audit.estimators import resolve_estimator
from simplebits_audit.models import build_architecture
from simplebits_audit.testbeds import DESIGN_TESTBEDS, shortcut
from simplebits_audit.training import joint

OUT = Path(__file__).parent / "out" / "training_design"
#: ``shortcut``'s test split shuffles the marker: its accuracy there is the digit's, and ``marker_agreement`` says how often
#: the answer follows the marker's colour instead (a classifier that reads only the marker: 1.0 and about 10 % accuracy)
DESIGN = DESIGN_TESTBEDS


def mixed_forward() -> None:
    """The classifier on the simplified images and the originals in one batch (the ``orig<w>`` trial of 2026-12-02: its
    BatchNorm statistics mix the two); the library runs the originals in a forward of their own (``origsep<w>``)."""

    def forward(self, pixels, originals=False):
        simplified, mask_logits = self.simplifier.simplify_with_logits(pixels)
        if not originals:
            return simplified, self.classifier(self.spaces.to_model(simplified)), mask_logits, None
        both = self.classifier(self.spaces.to_model(torch.cat([simplified, pixels])))
        return simplified, both[: len(pixels)], mask_logits, both[len(pixels):]

    joint._Joint.forward = forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbed", required=True, choices=DESIGN)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="the classifier's initialisation and the run's seed (batches, simplifier)")
    parser.add_argument("--train-variant", default=None, help="the train split's variant (shortcut: weak)")
    parser.add_argument("--weak-agreement", type=float, default=None,
                        help="shortcut's weak variant: how often the marker names the label (default testbeds.shortcut.WEAK_AGREEMENT)")
    parser.add_argument("--tag", default="", help="appended to the output name (a rerun under changed code must not resume an old run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = args.variant.split("-")
    kind, value, extra = parts[0], float(parts[1]), parts[2:]
    options: dict = {"lam": value} if kind == "lam" else {"budget": value}
    for flag in extra:
        if flag == "nogate":  # a gate that always holds
            joint.label_margin = lambda logits, labels, head: torch.full(logits.shape[:1], float("inf"), device=logits.device)
        elif flag.startswith("rate"):
            joint.BUDGET_RATE = float(flag[4:])
        elif flag.startswith("start"):
            joint.BUDGET_LAMBDA_START = float(flag[5:])
        elif flag.startswith("decay"):
            joint.MASK_LOGIT_DECAY = float(flag[5:])
        elif flag == "sgate":  # the gate on the training sample (the default before 2026-12-01)
            joint.GATE_ON_THRESHOLD = False
        elif flag.startswith("origsep"):  # the originals' loss, with the classifier run on them in a forward of their own
            joint.ORIGINALS_WEIGHT = float(flag[7:])
        elif flag.startswith("orig"):  # the same, the originals in one batch with the simplified images
            joint.ORIGINALS_WEIGHT = float(flag[4:])
            mixed_forward()
        elif flag == "noproj":  # no budget check when the joint epochs end (before 2026-12-02)
            joint.BUDGET_PROJECTION = False
        elif flag.startswith("sramp"):  # the simplifier's learning rate ramped up over this share of the joint steps
            joint.SIMPLIFIER_LR_RAMP = float(flag[5:])
        elif flag == "idlemoments":  # AdamW's moments of the simplifier also run through the warm-up (before 2026-12-02, late)
            joint.FREEZE_IDLE_SIMPLIFIER = False
        elif flag == "hinge":  # charge only the share kept above the budget
            joint.BUDGET_HINGE = True
        elif flag.startswith("warm"):
            options["warmup"] = float(flag[4:])
        elif flag.startswith("anneal"):
            joint.ANNEAL_TO = float(flag[6:])
        elif flag.startswith("cool"):
            options["cooldown"] = int(flag[4:])
        elif flag.startswith("margin"):
            options["margin"] = float(flag[6:])
        else:
            raise SystemExit(f"unknown variant flag {flag!r}")
    if args.weak_agreement is not None:
        shortcut.WEAK_AGREEMENT = args.weak_agreement
    train, val = testbeds.load(args.testbed, "train", n=args.n, variant=args.train_variant), testbeds.load(args.testbed, "test", n=500)
    torch.manual_seed(args.seed)
    model = build_architecture("smallcnn", len(train.classes), train.images.shape[1], train.images.shape[-1])
    OUT.mkdir(parents=True, exist_ok=True)
    testbed = f"{args.testbed}-{args.train_variant}" if args.train_variant else args.testbed
    testbed += f"{args.weak_agreement:g}" if args.weak_agreement is not None else ""
    name = f"{testbed}-{args.variant}" + (f"-e{args.epochs}" if args.epochs else "") + (f"-{args.tag}" if args.tag else "")
    name += f"-seed{args.seed}" if args.seed else ""
    started = time.perf_counter()
    result = joint.train_with_simplification(model, (train.images, train.labels), val_data=(val.images, val.labels),
                                             epochs=args.epochs, checkpoint=OUT / f"{name}.ckpt", seed=args.seed,
                                             **options)
    original = (val.images * 255).round() / 255
    simplified = result.simplify(original)
    record = {"testbed": args.testbed, "variant": args.variant, "final_lam": result.lam, "minutes": (time.perf_counter() - started) / 60,
              "budget_offset": result.settings.get("budget_offset"),
              **result.final, "webp_kept": float((codec_bits(simplified) / codec_bits(original)).mean()),
              "history": [{k: h[k] for k in ("epoch", "train_accuracy", "train_charged", "train_lam", "val_bits_kept",
                                               "val_accuracy_simplified")} for h in result.history]}
    if args.testbed == "shortcut":
        from simplebits_audit.testbeds.shortcut import marker_classes
        record["marker_agreement"] = float((result.predict(original) == marker_classes(original)).float().mean())
    if val.has_localisation:
        from simplebits_audit.metrics.localisation import relevance_mass
        inside = relevance_mass(resolve_estimator(None).bits_map(simplified), val.masks)
        ok = ~torch.isnan(inside)
        record["inside_ratio"] = float(inside[ok].mean()) / float(val.masks[ok].float().flatten(1).mean(1).mean())
    (OUT / f"{name}.json").write_text(json.dumps(record, indent=1))
    print(json.dumps({k: v for k, v in record.items() if k != "history"}))


if __name__ == "__main__":
    main()
