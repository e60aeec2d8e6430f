"""Training with simplification: how decisive a trained run's binary masks are, and what the threshold returns.

For each run folder that ``simplebits train`` (or ``benchmarks/tradeoff.py``) wrote, on test
images of the run's testbed (the folder's parent names it): the mask logits' size (the median of
|logit|, the share within 0.1 of the threshold), a cell's chance at the final training
temperature (:data:`~simplebits_audit.training.joint.ANNEAL_TO`) to be sampled otherwise than the
threshold sets it, and the run's classifier scored on three versions of its simplifier's masks:

* ``threshold``: a cell kept where its logit is above 0 (what evaluation and the returned
  images use);
* ``sample``: one training-style draw at the final temperature (seeded);
* ``dither``: a fixed ordered-dither threshold per cell (a Bayer matrix) on the same
  probabilities, a deterministic mask that keeps the share of cells a draw keeps.

Accuracy (multi-label: mean per-label accuracy), bits kept (estimator, mean per-image ratio) and
the share of cells kept, for each. A decisive mask gives the three alike.

    python benchmarks/training_masks.py benchmarks/out/tradeoff-v2-seed0/digits-stripes/budget-0.3 \\
        benchmarks/out/tradeoff-v2-seed0/shape-cue/budget-0.3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from simplebits_audit import testbeds
from simplebits_audit.estimators import resolve_estimator
from simplebits_audit.models import build_architecture
from simplebits_audit.simplification.common import round_8bit
from simplebits_audit.simplification.heads import label_accuracy
from simplebits_audit.training import joint
from simplebits_audit.training.joint import TrainingResult


def bayer(size: int) -> torch.Tensor:
    """An ordered-dither threshold matrix (size, size) with values (k + 0.5) / size**2, size a power of 2."""
    m = torch.zeros(1, 1)
    while m.shape[0] < size:
        m = torch.cat([torch.cat([4 * m, 4 * m + 2], 1), torch.cat([4 * m + 3, 4 * m + 1], 1)], 0)
    return (m + 0.5) / m.numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (budget-0.3, ...) under a testbed's folder")
    parser.add_argument("--n", type=int, default=500, help="test images")
    parser.add_argument("--seed", type=int, default=5, help="the test images' seed")
    args = parser.parse_args()
    estimator = resolve_estimator(None)
    temperature = joint.ANNEAL_TO or 1.0
    table = Table(title=f"binary masks of trained runs ({args.n} test images, final temperature {temperature:g})")
    for column in ("run", "|logit| median", "|logit| < 0.1", "flip chance", "threshold: acc / bits / cells", "sample", "dither"):
        table.add_column(column)
    for run in args.runs:
        data = testbeds.load(run.parent.name, "test", n=args.n, seed=args.seed)
        labels = data.labels
        outputs = labels.shape[1] if labels.dim() == 2 else int(labels.max()) + 1
        probe = build_architecture("smallcnn", outputs, data.images.shape[1], data.images.shape[-1])
        result = TrainingResult.load(run, probe)
        classifier, simplifier, head = result.classifier, result.simplifier, "sigmoid" if labels.dim() == 2 else "softmax"
        x = round_8bit(data.images, False)
        with torch.no_grad():
            logits = simplifier.mask_logits(x)
            reference, original_bits = simplifier.reference(x), estimator.bits(x)

            def score(cells: torch.Tensor) -> str:
                m = F.interpolate(cells, size=x.shape[-2:], mode="bilinear", align_corners=False)
                s = round_8bit(m * x + (1 - m) * reference, False)
                accuracy = float(label_accuracy(classifier(s), labels, head).float().mean())
                return f"{accuracy:.1%} / {float((estimator.bits(s) / original_bits).mean()):.3f} / {float(cells.mean()):.3f}"

            p = torch.sigmoid(logits / temperature)
            torch.manual_seed(0)
            sample = torch.bernoulli(p)
            flat = logits.flatten()
            table.add_row(str(run), f"{flat.abs().median():.3f}", f"{(flat.abs() < 0.1).float().mean():.2f}",
                          f"{torch.minimum(p, 1 - p).mean():.3f}", score((logits > 0).float()), score(sample),
                          score((p > bayer(logits.shape[-1])).float()))
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
