"""Does a classifier trained with simplification read the marker shortcut? Runs of ``simplebits train`` on ``radiograph``.

``radiograph``'s train split has a laterality marker whose letter follows the label in 85 % of the
images (``TRAIN_AGREEMENT`` 0.7 plus half the coin flips); its test split shuffles it. For every run
(``budget-*``, ``lam-*``) in a train job's folder this loads the classifier and simplifier, and on
the test images of each marker variant prints the accuracy, how often the answer is the marker's
letter, and the share of the marker's pixels and of the whole image that the simplifier keeps
unchanged. A classifier that reads only the marker: letter agreement 1.0, accuracy 1.0 with
consistent and 0.0 with opposite letters. Then what keeping each cue would cost, whatever the
run: the bits kept (estimator) by an image that keeps only the mask cells (the grid of the
reference run's simplifier, 16 x 16 by default; elsewhere that simplifier's reference: the flat mean,
or the mosaic for runs of 128 px under today's default) that touch the opacity, the marker, or
both, on the test images with an opacity: does the budget leave room for the opacity? And what
the reference run's classifier (budget 1) needs: the per-image engine (``simplify``, defaults) on
its decisions, with the markers as in training and with none: the bits kept, and how much of the
kept mask lies on the opacity and on the marker.

    python benchmarks/training_shortcut.py benchmarks/out/tradeoff-radiograph-seed0/radiograph
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from simplebits_audit.estimators import resolve_estimator
from simplebits_audit.models import build_architecture
from simplebits_audit.results import TRAIN_SETTINGS_FILE, read_tradeoff, removal_order, strength_name
from simplebits_audit.simplification import simplify
from simplebits_audit.simplification.common import round_8bit
from simplebits_audit.simplification.learned import Simplifier
from simplebits_audit.testbeds import load
from simplebits_audit.testbeds.radiograph import VARIANTS, marker_letters
from simplebits_audit.training.joint import TrainingResult


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a train job's folder on the radiograph testbed")
    parser.add_argument("--n", type=int, default=300, help="test images per variant")
    parser.add_argument("--seed", type=int, default=1, help="the test images' seed (the train job validates on seed + 1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engine-images", type=int, default=64, help="test images with an opacity for the per-image engine, per variant")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = json.loads((args.run / TRAIN_SETTINGS_FILE).read_text())
    if str(settings["data"]).removeprefix("testbed:") != "radiograph":
        raise SystemExit(f"run: a train job on the radiograph testbed, got data {settings['data']!r}")
    record = read_tradeoff(args.run)[0]
    variants = {variant: load("radiograph", "test", n=args.n, seed=args.seed, variant=variant) for variant in VARIANTS}
    shape = next(iter(variants.values())).images.shape[1:]
    table = Table("run", "markers", "accuracy", "answer = marker letter", "marker pixels kept", "image pixels kept",
                  title=f"radiograph: training with simplification and the marker shortcut ({args.n} test images per variant)")
    for point in sorted(record["points"], key=removal_order):
        name = strength_name(point["lam"], point["budget"])
        network = build_architecture(settings["arch"], record["settings"]["n_classes"], shape[0], shape[-1])
        result = TrainingResult.load(args.run / name, network)
        for variant, data in variants.items():
            x, marker = data.images, data.aux_masks["marker"]
            answer = result.predict(x)
            row = [name, variant, f"{float((answer == data.labels).float().mean()):.3f}"]
            if variant == "absent":
                row += ["", "", ""]
            else:
                letters = marker_letters(x, marker)
                unchanged = (result.simplify(x) - x).abs() < 1e-6  # pixels the mask kept
                row += [f"{float((answer == letters).float().mean()):.3f}",
                        f"{float(unchanged[marker].float().mean()):.3f}", f"{float(unchanged.float().mean()):.3f}"]
            table.add_row(*row)
        table.add_section()
    Console(width=150).print(table)
    reference = min(record["points"], key=removal_order)
    network = build_architecture(settings["arch"], record["settings"]["n_classes"], shape[0], shape[-1])
    reference_run = TrainingResult.load(args.run / strength_name(reference["lam"], reference["budget"]), network)
    Console(width=150).print(cue_costs(variants["correlated"], reference_run.simplifier))
    classifier = reference_run.classifier
    Console(width=150).print(reference_needs(classifier, variants, args.engine_images))


def reference_needs(classifier, variants, n: int) -> Table:
    """The per-image engine on the reference classifier's decisions: bits kept, and the kept mask on the opacity and the marker."""
    table = Table("markers", "images", "decision kept", "bits kept", "mask kept on the opacity", "on the marker", "on the whole image",
                  title=f"what the reference classifier needs (per-image engine, {n} test images with an opacity per variant)")
    for variant in ("correlated", "absent"):
        data = variants[variant]
        positive = torch.nonzero(data.labels.view(-1) == 1)[:n, 0]
        result = simplify(classifier, data.images[positive])
        size = (len(positive), 1, *data.images.shape[-2:])
        opacity, marker = data.masks[positive].view(size).float(), data.aux_masks["marker"][positive].view(size).float()
        table.add_row(variant, str(len(positive)), f"{float(result.kept.float().mean()):.1%}",
                      f"{float((result.bits_after / result.bits_before).mean()):.3f}", share_on(result.mask, opacity),
                      share_on(result.mask, marker), f"{float(result.mask.mean()):.3f}")
    return table


def share_on(mask: torch.Tensor, region: torch.Tensor) -> str:
    """The mean of ``mask`` over ``region``'s pixels ('' when the region is empty)."""
    return f"{float((mask * region).sum() / region.sum()):.3f}" if bool(region.any()) else ""


def cue_costs(data, simplifier: Simplifier) -> Table:
    """Bits kept by images that keep only ``simplifier``'s mask cells touching the opacity, the marker, or both (with an opacity)."""
    estimator, grid = resolve_estimator(None), simplifier.config["mask_size"]
    positive = data.labels.view(-1) == 1
    x = round_8bit(data.images[positive], False)
    opacity, marker = (m[positive].float().view(len(x), 1, *x.shape[-2:]) for m in (data.masks, data.aux_masks["marker"]))
    table = Table("cells kept", "share of the cells", "bits kept", title=f"what keeping a cue costs ({len(x)} test images with an opacity)")
    with torch.no_grad():
        original = estimator.bits(x)
        for name, mask in (("the opacity's", opacity), ("the marker's", marker), ("both", torch.maximum(opacity, marker))):
            cells = (F.adaptive_max_pool2d(mask, grid) > 0).float()
            image = simplifier.eval().from_logits(x, 2 * cells - 1)  # its own upsampling and reference; +-1 thresholds to the cells
            table.add_row(name, f"{float(cells.mean()):.3f}", f"{float((estimator.bits(image) / original).mean()):.3f}")
    return table


if __name__ == "__main__":
    main()
