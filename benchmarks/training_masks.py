"""Training with simplification: how decisive a trained run's binary masks are, and what the threshold returns.

For each run folder that ``simplebits train`` (or ``benchmarks/tradeoff.py``) wrote, or checkpoint
of ``benchmarks/training_design.py`` (``benchmarks/out/training_design/*.ckpt``), on test images of
the run's testbed (the folder's parent, or the design run's record, names it): the mask logits' size (the median of
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
        benchmarks/out/tradeoff-v2-seed0/shape-cue/budget-0.3 benchmarks/out/training_design/stripes-budget-0.3-fz.ckpt
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from simplebits_audit import testbeds
from simplebits_audit.estimators import resolve_estimator
from simplebits_audit.models import build_architecture
from simplebits_audit.simplification.common import round_8bit
from simplebits_audit.simplification.heads import label_accuracy
from simplebits_audit.simplification.learned import Simplifier
from simplebits_audit.training import joint
from simplebits_audit.training.joint import TrainingResult


def bayer(size: int) -> torch.Tensor:
    """An ordered-dither threshold matrix (size, size) in (0, 1): a Bayer matrix of the next power of 2, cropped."""
    m = torch.zeros(1, 1)
    while m.shape[0] < size:
        m = torch.cat([torch.cat([4 * m, 4 * m + 2], 1), torch.cat([4 * m + 3, 4 * m + 1], 1)], 0)
    return ((m + 0.5) / m.numel())[:size, :size]


@dataclass
class Images:
    """Test images (8-bit, (N, C, H, W)) with what scoring a mask on them needs."""

    x: torch.Tensor
    labels: torch.Tensor
    head: str
    classifier: torch.nn.Module
    simplifier: Simplifier
    original_bits: torch.Tensor
    estimator: object


def score(images: Images, cells: torch.Tensor) -> str:
    """Accuracy / bits kept / share of cells kept of the images simplified by a binary cell mask (N, 1, h, w)."""
    # the simplifier's own upsampling and reference (eval mode: the logits +-1 are thresholded to the cells)
    simplified = images.simplifier.from_logits(images.x, 2 * cells - 1)
    accuracy = float(label_accuracy(images.classifier(simplified), images.labels, images.head).float().mean())
    kept = float((images.estimator.bits(simplified) / images.original_bits).mean())
    return f"{accuracy:.1%} / {kept:.3f} / {float(cells.mean()):.3f}"


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
        design = run.suffix == ".ckpt"
        testbed = json.loads(run.with_suffix(".json").read_text())["testbed"] if design else run.parent.name
        data = testbeds.load(testbed, "test", n=args.n, seed=args.seed)
        labels = data.labels
        outputs = labels.shape[1] if labels.dim() == 2 else len(data.classes)
        classifier = build_architecture("smallcnn", outputs, data.images.shape[1], data.images.shape[-1])
        if design:  # the joint module's weights: "simplifier.*" and "classifier.*"
            checkpoint = torch.load(run, map_location="cpu", weights_only=True)
            state = checkpoint["state_dict"]
            simplifier = Simplifier(**json.loads(checkpoint["run_key"])["simplifier"])  # the reference and grid it trained with
            for prefix, net in (("simplifier.", simplifier), ("classifier.", classifier)):
                net.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
            classifier, simplifier = classifier.eval(), simplifier.eval()
        else:
            result = TrainingResult.load(run, classifier)
            classifier, simplifier = result.classifier, result.simplifier
        head = "sigmoid" if labels.dim() == 2 else "softmax"
        x = round_8bit(data.images, False)
        with torch.no_grad():
            logits = simplifier.mask_logits(x)
            images = Images(x, labels, head, classifier, simplifier, estimator.bits(x), estimator)

            p = torch.sigmoid(logits / temperature)
            torch.manual_seed(0)
            sample = torch.bernoulli(p)
            flat = logits.flatten()
            table.add_row(str(run), f"{flat.abs().median():.3f}", f"{(flat.abs() < 0.1).float().mean():.2f}",
                          f"{torch.minimum(p, 1 - p).mean():.3f}", score(images, (logits > 0).float()), score(images, sample),
                          score(images, (p > bayer(logits.shape[-1])).float()))
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
