"""Training with simplification: does the task need the photo behind the digit?

A small CNN is trained twice on ``blended-digits`` (a handwritten digit blended 50/50 with a
photo, label = the digit): once with a bits budget of 1 (nothing removed: the reference) and once
with the default budget (keep at most 30 % of each image's bits), where a simplifier learns
together with the classifier to remove every bit the task does not need. The second classifier
sees only the simplified images; if the photo were needed, its accuracy would fall. Run it as a
script (about 9 minutes on 2 cores at the defaults)::

    python examples/train_with_simplification.py
"""

from __future__ import annotations

import torch

from simplebits_audit import testbeds, train_with_simplification
from simplebits_audit.estimators import load_estimator
from simplebits_audit.metrics.localisation import relevance_mass
from simplebits_audit.models import build_architecture
from simplebits_audit.training import DEFAULT_BUDGET


def main(n_train: int = 6000, n_val: int = 500, epochs: int = 12,
         budgets: tuple[float, ...] = (1.0, DEFAULT_BUDGET)) -> dict[float, dict[str, float]]:
    train = testbeds.load("blended-digits", "train", n=n_train)
    val = testbeds.load("blended-digits", "test", n=n_val, seed=1)
    estimator = load_estimator()
    scores = {}
    for budget in budgets:
        torch.manual_seed(0)
        result = train_with_simplification(build_architecture("smallcnn", 10), train, budget=budget, val_data=val, epochs=epochs)
        simplified = result.simplify(val.images)
        # Where the kept bits sit: the share of the simplified images' bits inside the digit's strokes.
        inside = float(relevance_mass(estimator.bits_map(simplified), val.masks).nanmean())
        scores[budget] = {**{k: result.final[k] for k in ("val_accuracy_simplified", "val_bits_kept")}, "bits_inside_digit": inside}
        print(f"budget {budget:g} (lambda settled at {result.lam:.2g}): "
              f"accuracy {result.final['val_accuracy_simplified']:.1%} on simplified images, "
              f"{result.final['val_bits_kept']:.0%} of the bits kept, {inside:.0%} of them inside the digit "
              f"(the digit covers {float(val.masks.float().mean()):.0%} of the image)")
    return scores


if __name__ == "__main__":
    main()
