"""What a partly masked `radiograph` looks like to a classifier, for each simple reference the mask can blend towards.

A binary mask keeps some cells of the image and replaces the others by the simplifier's reference
(``reference=`` of :class:`~simplebits_audit.Simplifier`). If the reference itself looks like the
finding, a mask that drops cells *adds* evidence: the simplifier's gradient then asks to drop
cells of one class and keep those of the other, which a network that cannot yet tell the classes
apart cannot do, and training with simplification collapsed (docs/design-log.md, "the reference
looks like the finding"). For each reference this prints its bits (estimator, share of the
original's) and, for cell patterns on the 16 x 16 mask grid, the classifier's accuracy and its mean
probability of "effusion" on negative and positive images: no cell kept (the reference alone), 30 %
and 60 % of the cells at random, only the cells touching the opacity, every cell. Test images
without the marker (``variant="absent"``), so only the opacity can decide.

The classifier: the budget-1 (reference) run of a train job's ``radiograph`` folder (a SmallCNN,
two softmax classes), or with ``--shipped`` the shipped ``radiograph`` classifier (one sigmoid logit).

    python benchmarks/training_reference.py benchmarks/out/tradeoff-rad3-ref/radiograph
    python benchmarks/training_reference.py --shipped
"""

from __future__ import annotations

import argparse
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
from simplebits_audit.testbeds import load, load_classifier
from simplebits_audit.training.joint import TrainingResult

#: the train job's mask grid (a new simplifier's)
GRID = Simplifier(in_channels=1).config["mask_size"]


def effusion_probability(classifier: torch.nn.Module, images: torch.Tensor, sigmoid: bool) -> torch.Tensor:
    with torch.no_grad():
        logits = classifier(images)
    return torch.sigmoid(logits[:, 0]) if sigmoid else logits.softmax(1)[:, 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", type=Path, help="a train job's radiograph folder (its budget-1 run is read)")
    parser.add_argument("--shipped", action="store_true", help="the shipped radiograph classifier instead")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if (args.run is None) == (not args.shipped):
        parser.error("give a train job's radiograph folder or --shipped, one of them")
    torch.set_num_threads(args.threads)
    if args.shipped:
        classifier, sigmoid, name = load_classifier("radiograph").eval(), True, "shipped radiograph classifier"
    else:
        result = TrainingResult.load(args.run / "budget-1", build_architecture("smallcnn", 2, 1, 128))
        classifier, sigmoid, name = result.classifier.eval(), False, f"{args.run / 'budget-1'}"
    data = load("radiograph", "test", n=args.n, seed=1, variant="absent")
    x, positive = round_8bit(data.images, False), data.labels.bool()
    estimator = resolve_estimator(None)
    original_bpd = estimator.bpd(x)
    finding = F.adaptive_max_pool2d(data.masks.float(), GRID) > 0
    g = torch.Generator().manual_seed(0)
    patterns = {
        "none": torch.zeros_like(finding), "random 30 %": torch.rand(finding.shape, generator=g) < 0.3,
        "random 60 %": torch.rand(finding.shape, generator=g) < 0.6, "opacity cells": finding, "all": torch.ones_like(finding),
    }
    table = Table("reference", "bits (share)", *(f"{p}: acc. / P(eff.) neg., pos." for p in patterns),
                  title=f"{name}, {args.n} test images")
    for kind in REFERENCES:
        ref = reference_image(x, kind)
        row = [kind, f"{float((estimator.bpd(ref) / original_bpd).mean()):.3f}"]
        for cells in patterns.values():
            m = F.interpolate(cells.float(), size=x.shape[-2:], mode="nearest")
            p = effusion_probability(classifier, blend(x, ref, m), sigmoid)
            accuracy = float(((p > 0.5) == positive).float().mean())
            row.append(f"{accuracy:.3f} / {float(p[~positive].mean()):.2f}, {float(p[positive].mean()):.2f}")
        table.add_row(*row)
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
