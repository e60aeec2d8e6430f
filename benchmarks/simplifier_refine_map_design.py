"""The learned simplifier's map after per-image refinement: which order below the kept pixels (issue #23).

With ``refine_steps`` > 0 the mask engine starts from the learned mask and removes more bits, and the
map ranked the pixels the returned image does not keep by the mean mask of that short path (the
order head, which ranks them in the one-pass map, was not used). This design script scores, on the
same refined results (the returned images, bits and answers are the same for every row; only the
map's order below the kept pixels differs):

* ``path mean``: the refined map as it was (ties ranked by the path's mean mask);
* ``head``: the order head's scores, as the one-pass map uses them;
* ``learned, then head``: the pixels the one-pass mask kept first (by that mask), then the head's.

Localisation AUROC (all images / those the flat mean colour alone changes) on ``--n`` test images
(seed 1 on the design testbeds), with the simplifiers of ``benchmarks/simplifier_map_design.py
--deletion 0 --order-steps 1000`` (``benchmarks/out/simplifier-map-<testbed>-deletion0-seed0-order1000.pt``;
run it first), and the milliseconds per image of the refined explanation and of the order's extra work.

    python benchmarks/simplifier_refine_map_design.py --testbeds digits-on-photos,blended-digits,shortcut
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from simplebits_audit import SimpleBits, Simplifier, testbeds
from simplebits_audit.explainers.simple_bits import attribution_map
from simplebits_audit.metrics import auroc
from simplebits_audit.simplification.common import round_8bit
from simplebits_audit.simplification.learned import removed_order
from simplebits_audit.simplification.mask import reference_image
from simplebits_audit.simplification.result import HALF_LEVEL

OUT = Path(__file__).parent / "out"


def orders(simplifier: Simplifier, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The candidate orders (B, 1, H, W) in [0, 1] of the pixels below the kept ones."""
    with torch.no_grad():
        grid, order = simplifier.mask_and_order_logits(round_8bit(images, False))
        head = removed_order(order, images.shape[-2:])
        learned = simplifier.grid_to_mask(grid, images.shape[-2:], 0.0)
    return {"head": head, "learned, then head": torch.where(learned >= HALF_LEVEL, 0.5 + 0.5 * learned, 0.5 * head)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbeds", default="digits-on-photos,blended-digits,shortcut")
    parser.add_argument("--refine", default="10,20")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--seed", type=int, default=None, help="test sample (default: 1 on design testbeds, 0 on report testbeds)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = Table(title=f"refined learned simplifier: the map's order below the kept pixels ({args.n} test images, "
                        f"{args.threads} thread(s))")
    for col in ("testbed", "refine", "order", "AUROC", "AUROC (needs something)", "ms / image (refined explanation)", "ms / image (order)"):
        table.add_column(col, justify="right")
    for testbed in args.testbeds.split(","):
        seed = args.seed if args.seed is not None else (1 if testbed in testbeds.DESIGN_TESTBEDS else 0)
        head = "sigmoid" if testbed in testbeds.SIGMOID_HEADS else "softmax"
        model = testbeds.load_classifier(testbed)
        data = testbeds.load(testbed, "test", n=args.n, seed=seed)
        simplifier = Simplifier.load(OUT / f"simplifier-map-{testbed}-deletion0-seed0-order1000.pt", forward_func=model)
        with torch.no_grad():
            logits, flat = model(data.images), model(reference_image(data.images, "mean"))
        if head == "softmax":
            targets, needs = logits.argmax(1), flat.argmax(1) != logits.argmax(1)
        else:  # label 0, the one the masks localise
            targets, needs = torch.zeros(len(logits), dtype=torch.long), (flat[:, 0] > 0) != (logits[:, 0] > 0)
        for k in [int(v) for v in args.refine.split(",")]:
            explainer = SimpleBits(model, head=head, simplifier=simplifier, refine_steps=k)
            maps: dict[str, list[torch.Tensor]] = {"path mean": [], "head": [], "learned, then head": []}
            explain_s = order_s = 0.0
            for i in range(0, args.n, 64):
                images = data.images[i : i + 64]
                start = time.perf_counter()
                attr, result = explainer.attribute(images, target=targets[i : i + 64], return_result=True, seed=i)
                explain_s += time.perf_counter() - start
                assert torch.equal(attr[:, :1], attribution_map(result, "mask"))  # "path mean" is what attribute returns
                maps["path mean"].append(attr[:, :1])
                start = time.perf_counter()
                candidates = orders(simplifier, images)
                order_s += time.perf_counter() - start
                for name, order in candidates.items():
                    maps[name].append(attribution_map(dataclasses.replace(result, removed_order=order), "mask"))
            for name, parts in maps.items():
                m = torch.cat(parts)
                table.add_row(testbed, str(k), name, f"{float(auroc(m, data.masks).nanmean()):.3f}",
                              f"{float(auroc(m[needs], data.masks[needs]).nanmean()):.3f}", f"{1000 * explain_s / args.n:.2f}",
                              "-" if name == "path mean" else f"{1000 * order_s / args.n:.3f}")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
