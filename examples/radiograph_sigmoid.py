"""Audit a one-logit (sigmoid) classifier: synthetic chest radiographs, "effusion" or not.

The ``radiograph`` testbed's shipped classifier ends in one sigmoid logit, as radiograph models
usually do (one per finding). ``SimpleBits(model, head="sigmoid")`` keeps its *decision* (the
label stays on the same side of 0.5); with the default softmax head the call is refused, since a
softmax over one logit is always 1 and nothing could ever count as lost.

For each image the script prints the probability before and after simplification, the bits kept,
and where the map puts its weight: inside the opacity (the evidence), on the laterality marker
(a shortcut the classifier partly learned), or nowhere (the flat reference kept the decision).
With ``--keep 0.9`` the label must also keep 90 % of its probability of its side.

    python examples/radiograph_sigmoid.py [--n 8] [--keep 0.9]
"""

from __future__ import annotations

import argparse

import torch

from simplebits_audit import SimpleBits, testbeds


def main(n: int = 8, keep: float | str = "top1", steps: int | None = None, seed: int = 11) -> list[dict]:
    data = testbeds.load("radiograph", "test", n=n, seed=seed)
    model = testbeds.load_classifier("radiograph")
    options = {"keep": keep, **({"steps": steps} if steps else {})}
    attr, result = SimpleBits(model, head="sigmoid", **options).attribute(data.images, target=0, return_result=True)
    maps = attr[:, :1]
    rows = []
    for i in range(n):
        total = float(maps[i].sum())
        def share(m, i=i, total=total):
            return float((maps[i] * m).sum()) / total if total > 0 else 0.0

        rows.append({
            "label": data.classes[int(data.labels[i])],
            "p_before": float(result.probs_before[i, 0]), "p_after": float(result.probs_after[i, 0]),
            "status": result.status[i], "bits_kept": float(result.bits_after[i] / result.bits_before[i]),
            "map_in_opacity": share(data.masks[i].float()), "map_on_marker": share(data.aux_masks["marker"][i].float()),
            "opacity_area": float(data.masks[i].float().mean()), "empty_map": total == 0,
        })
    print(f"{'label':<12} {'P(effusion) before -> after':>28} {'status':>8} {'bits kept':>10} {'map in opacity':>15} {'map on marker':>14}")
    for r in rows:
        where = "(empty map)" if r["empty_map"] else f"{r['map_in_opacity']:.0%}"
        print(f"{r['label']:<12} {r['p_before']:>13.2f} -> {r['p_after']:<12.2f} {r['status']:>8} {r['bits_kept']:>10.2f} "
              f"{where:>15} {r['map_on_marker']:>14.0%}")
    with torch.no_grad():
        flat = torch.sigmoid(model(data.images.mean((2, 3), keepdim=True).expand_as(data.images).contiguous()))[:, 0]
    print(f"P(effusion) of each image's flat mean colour: {float(flat.mean()):.2f} on average; where it is above 0.5, "
          "'effusion' needs nothing from the image under the decision rule (an empty map is then the right answer)")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--keep", default="top1", help="'top1' (the decision) or a fraction of the probability to keep")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    main(args.n, args.keep if args.keep == "top1" else float(args.keep), args.steps)
