"""Explain a whole test set in one pass per image with a learned simplifier, beside the per-image engine.

The shipped ``shortcut`` classifier reads a 4 x 4 corner marker instead of the digit. Its shipped
learned simplifier (``Simplifier.pretrained``; train your own with ``train_simplifier`` or
``simplebits train-simplifier``) explains every test image in one forward pass; the per-image
engine explains a few for comparison. Both should keep the marker and drop the rest. The map
(``attribute``'s output) ranks the kept pixels first; below them the shipped simplifier's order
head ranks the pixels the simplified image takes from the flat reference (trained by the deletion
game; ``train_simplifier(order_steps=...)``), so its localisation AUROC is printed too.

    python examples/learned_simplifier.py
"""

from __future__ import annotations

import time

import torch

from simplebits_audit import SimpleBits, Simplifier, testbeds
from simplebits_audit.metrics import auroc


def main(n: int = 512, n_per_image: int = 32) -> dict[str, dict[str, float]]:
    data = testbeds.load("shortcut", "test", n=n, seed=0)
    model = testbeds.load_classifier("shortcut")
    marker = data.masks.float()
    rows = {}
    for name, explainer, count in [
        ("learned simplifier", SimpleBits(model, simplifier=Simplifier.pretrained("shortcut")), n),
        ("per-image engine", SimpleBits(model), n_per_image),
    ]:
        t0 = time.perf_counter()
        answers = [explainer.attribute(data.images[i : min(i + 64, count)], return_result=True) for i in range(0, count, 64)]
        seconds = (time.perf_counter() - t0) / count
        results = [r for _, r in answers]
        maps = torch.cat([m[:, :1] for m, _ in answers])
        mask = torch.cat([r.mask for r in results])
        rows[name] = {
            "images": count,
            "ms_per_image": 1000 * seconds,
            "top1_kept": float(torch.cat([r.kept for r in results]).float().mean()),
            "bits_kept": float(torch.cat([r.bits_after / r.bits_before for r in results]).mean()),
            # how much of the mask sits on the marker, against the marker's share of the image
            "mask_on_marker": float((mask * marker[:count]).sum() / mask.sum()),
            "marker_area": float(marker[:count].mean()),
            "map_auroc": float(auroc(maps, data.masks[:count]).nanmean()),  # the map against the marker's pixels
        }
    for name, row in rows.items():
        print(
            f"{name:>20}: {row['images']} images, {row['ms_per_image']:.1f} ms/image, top-1 kept {row['top1_kept']:.0%}, "
            f"bits kept {row['bits_kept']:.2f}, {row['mask_on_marker']:.0%} of the mask on the marker "
            f"({row['marker_area']:.1%} of the area), map AUROC {row['map_auroc']:.3f}"
        )
    return rows


if __name__ == "__main__":
    main()
