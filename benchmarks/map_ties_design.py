"""Design trial: how the mask map ranks the pixels its returned image's mask ties (issue #21).

The mask map is the returned image's mask with its ties broken by an order (``refine_ties``); the
default order is the mean mask along the path. This trial scores other orders by localisation
AUROC on 64 test images per testbed: the gradient of the target's log-probability times
(original - reference), the first-order gain of restoring a pixel, at the returned image, at the
original or averaged over the path, alone or averaged with the path mean by rank; and, with the
default order, a stricter ``keep`` (a share of the target's probability), alone and as the order of the
default map's ties. Design testbeds
first (``digits-on-photos``, ``shortcut``, test split seed 1), then the report testbed
``photo-objects`` (seed 11). Result and verdict: docs/benchmarks.md, "Quality at real sizes".

    OMP_NUM_THREADS=1 python benchmarks/map_ties_design.py                     # ~5 min on one thread
    python benchmarks/map_ties_design.py digits-on-photos:1 photo-objects:11
"""

from __future__ import annotations

import sys

import torch

from simplebits_audit import simplify, testbeds
from simplebits_audit.metrics import auroc
from simplebits_audit.metrics.localisation import average_ranks
from simplebits_audit.simplification.mask import reference_image
from simplebits_audit.simplification.result import refine_ties

DEFAULT = ("digits-on-photos:1", "shortcut:1", "photo-objects:11")


def rank01(scores: torch.Tensor) -> torch.Tensor:
    """Per image, each pixel's rank among its image's pixels, scaled to [0, 1] (ties averaged)."""
    ranks = average_ranks(scores.flatten(1).double())
    return ((ranks - 1) / max(1, ranks.shape[1] - 1)).view_as(scores).float()


def restore_gain(model, x: torch.Tensor, original: torch.Tensor, reference: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d log p(target) / dx at ``x``, times (original - reference), summed over channels: (B, 1, H, W)."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.log_softmax(model(x), 1).gather(1, target[:, None]).sum(), x)
    return (grad * (original - reference)).sum(1, keepdim=True)


def main(specs: list[str]) -> None:
    torch.set_num_threads(1)
    for spec in specs:
        name, seed = spec.split(":")
        data = testbeds.load(name, "test", n=64, seed=int(seed))
        model = testbeds.load_classifier(name).requires_grad_(False)
        r = simplify(model, data.images)
        ref = reference_image(r.original, "mean")
        at_simplified = restore_gain(model, r.simplified, r.original, ref, r.target)
        at_original = restore_gain(model, r.original, r.original, ref, r.target)
        along_path = sum(restore_gain(model, p.float() / 255, r.original, ref, r.target) for p in r.path_images) / len(r.path_images)
        orders = {
            "path mean (default)": r.mask_mean,
            "gain at the returned image": rank01(at_simplified),
            "gain at the original": rank01(at_original),
            "gain along the path": rank01(along_path),
            "path mean + gain at the returned image": (rank01(r.mask_mean) + rank01(at_simplified)) / 2,
            "path mean + gain along the path": (rank01(r.mask_mean) + rank01(along_path)) / 2,
        }
        localised = data.masks.flatten(1).any(1)
        print(f"{name} (seed {seed}, {int(localised.sum())} images with a mask): localisation AUROC of the mask map")
        for label, order in orders.items():
            score = auroc(refine_ties(r.mask, order)[localised], data.masks[localised]).nanmean()
            print(f"  {label:40s} {float(score):.3f}")
        # A stricter keep rule asks the returned image for more of the evidence, not another order of the rest.
        for keep in (0.5, 0.9):
            k = simplify(model, data.images, keep=keep)
            score = auroc(refine_ties(k.mask, k.mask_mean)[localised], data.masks[localised]).nanmean()
            print(f"  {f'keep={keep} (path mean)':40s} {float(score):.3f}  bits kept {float((k.bits_after / k.bits_before).mean()):.3f}"
                  f" (top1: {float((r.bits_after / r.bits_before).mean()):.3f})")
            # the stricter keep's map as the order of the default map's ties: the pixels the returned image drops,
            # ranked by whether a stricter answer needs them
            grown = auroc(refine_ties(r.mask, refine_ties(k.mask, k.mask_mean))[localised], data.masks[localised]).nanmean()
            print(f"  {f'order = the keep={keep} map':40s} {float(grown):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:] or list(DEFAULT))
