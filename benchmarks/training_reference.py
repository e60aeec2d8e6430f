"""What a partly masked image looks like to a classifier, for each simple reference the mask can blend towards.

A binary mask keeps some cells of the image and replaces the others by the simplifier's reference
(``reference=`` of :class:`~simplebits_audit.Simplifier`). If the reference itself looks like the
finding, a mask that drops cells *adds* evidence: the simplifier's gradient then asks to drop
cells of one class and keep those of the other, which a network that cannot yet tell the classes
apart cannot do, and training with simplification collapsed (docs/design-log.md, "the reference
looks like the finding"). For each reference this prints its bits (estimator, share of the
original's) and, for cell patterns on the 16 x 16 mask grid, the classifier's accuracy and its mean
probability of a finding (any class but the first: ``radiograph``'s "effusion", ``faint-regions``'
"brighter" or "darker") on negative and positive images: no cell kept (the reference alone), 30 %
and 60 % of the cells at random, only the cells touching the finding, every cell. ``radiograph``:
test images without the marker (``variant="absent"``), so only the opacity can decide.

The classifier: the budget-1 (reference) run of a train job's folder for ``--testbed`` (a SmallCNN,
softmax), or with ``--shipped`` the shipped ``radiograph`` classifier (one sigmoid logit).

    python benchmarks/training_reference.py benchmarks/out/tradeoff-rad3-ref/radiograph
    python benchmarks/training_reference.py --shipped
    python benchmarks/training_reference.py benchmarks/out/tradeoff-fr/faint-regions --testbed faint-regions
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from simplebits_audit.estimators import resolve_estimator
from simplebits_audit.models import build_architecture
from simplebits_audit.simplification.common import round_8bit
from simplebits_audit.simplification.config import REFERENCES
from simplebits_audit.simplification.learned import Simplifier
from simplebits_audit.simplification.mask import blend, reference_image
from simplebits_audit.testbeds import TESTBEDS, load, load_classifier
from simplebits_audit.training.joint import TrainingResult

#: the train job's mask grid (a new simplifier's default; read from the signature, no network built at import)
GRID = inspect.signature(Simplifier).parameters["mask_size"].default


def answers(classifier: torch.nn.Module, images: torch.Tensor, sigmoid: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted classes (N,), probability of a finding (N,): 1 - P(first class))."""
    with torch.no_grad():
        logits = classifier(images)
    if sigmoid:
        p = torch.sigmoid(logits[:, 0])
        return (p > 0.5).long(), p
    probs = logits.softmax(1)
    return probs.argmax(1), 1 - probs[:, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", type=Path, help="a train job's folder for the testbed (its budget-1 run is read)")
    parser.add_argument("--testbed", default="radiograph", choices=["radiograph", "faint-regions"])
    parser.add_argument("--shipped", action="store_true", help="the shipped radiograph classifier instead")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if (args.run is None) == (not args.shipped):
        parser.error("give a train job's folder or --shipped, one of them")
    if args.shipped and args.testbed != "radiograph":
        parser.error("--shipped: only the radiograph classifier")
    torch.set_num_threads(args.threads)
    data = load(args.testbed, "test", n=args.n, seed=1, variant="absent" if args.testbed == "radiograph" else None)
    x, labels = round_8bit(data.images, False), data.labels
    positive = labels != 0
    if args.shipped:
        classifier, sigmoid, name = load_classifier("radiograph").eval(), True, "shipped radiograph classifier"
    else:
        n_classes = len(TESTBEDS[args.testbed][1])
        result = TrainingResult.load(args.run / "budget-1", build_architecture("smallcnn", n_classes, x.shape[1], x.shape[-1]))
        classifier, sigmoid, name = result.classifier.eval(), False, f"{args.run / 'budget-1'}"
    estimator = resolve_estimator(None)
    original_bpd = estimator.bpd(x)
    finding = F.adaptive_max_pool2d(data.masks.float(), GRID) > 0
    g = torch.Generator().manual_seed(0)
    patterns = {
        "none": torch.zeros_like(finding), "random 30 %": torch.rand(finding.shape, generator=g) < 0.3,
        "random 60 %": torch.rand(finding.shape, generator=g) < 0.6, "finding cells": finding, "all": torch.ones_like(finding),
    }
    table = Table("reference", "bits (share)", *(f"{p}: acc. / P(finding) neg., pos." for p in patterns),
                  title=f"{name}, {args.n} test images")
    for kind in (k for k in REFERENCES if k != "auto"):  # auto is one of the others
        ref = reference_image(x, kind)
        row = [kind, f"{float((estimator.bpd(ref) / original_bpd).mean()):.3f}"]
        for cells in patterns.values():
            m = F.interpolate(cells.float(), size=x.shape[-2:], mode="nearest")
            predicted, p = answers(classifier, blend(x, ref, m), sigmoid)
            accuracy = float((predicted == labels).float().mean())
            row.append(f"{accuracy:.3f} / {float(p[~positive].mean()):.2f}, {float(p[positive].mean()):.2f}")
        table.add_row(*row)
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
