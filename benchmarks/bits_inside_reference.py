"""Where a simplest image's bits lie, for the frozen shipped classifier: the reference for issue #23's
"bits inside the object's mask >= 3x its area share" target of training with simplification.

The target asks a jointly trained classifier's simplified images to put their bits on the object.
This script measures the same ratio (the estimator's bits inside the ground-truth mask, as a share of
the image's bits, over the mask's share of the image; 1 = no preference; ``jobs.train``'s
``inside_ratio``, :func:`~simplebits_audit.jobs.train.bits_inside_mask`) where no training is involved:

* ``original``: the test images themselves;
* ``per-image engine``: ``SimpleBits`` at its defaults explaining the shipped classifier (target = the
  prediction; on a sigmoid testbed label 0, the finding, kept on its side of 0.5), the answer it returns;
  once per ``--references`` (the mask's simple end: ``mean``, the default, or ``mosaic``, which training
  with simplification uses on ``radiograph``);
* ``flat outside the mask``: each original with every pixel outside the mask set to the image's mean
  colour (the ceiling of a simplification that keeps exactly the object).

Only images with a non-empty mask count; on a sigmoid testbed (``radiograph``) only the positives the
classifier calls positive (a positive it calls negative is explained as a negative, whose answer
says nothing about what a positive needs; the script prints how many were left out). The ratio is of
means over the images, as in ``jobs.train``. On ``--n`` test images, seed 11 (no default was chosen on it).

    python benchmarks/bits_inside_reference.py                          # radiograph and the three cue testbeds
    python benchmarks/bits_inside_reference.py --testbeds radiograph --references mean,mosaic
"""

from __future__ import annotations

import argparse

import torch
from rich.console import Console
from rich.table import Table

from simplebits_audit import SimpleBits, testbeds
from simplebits_audit.estimators import load_estimator
from simplebits_audit.jobs.train import bits_inside_mask


def run(testbed: str, n: int, batch: int, references: list[str]) -> list[dict]:
    data = testbeds.load(testbed, "test", n=n, seed=11)
    keep = data.masks.flatten(1).any(1)
    images, masks = data.images[keep], data.masks[keep]
    model = testbeds.load_classifier(testbed).eval()
    sigmoid = testbed in testbeds.SIGMOID_HEADS
    with torch.no_grad():
        logits = model(images)
    if sigmoid:
        called = logits[:, 0] > 0
        print(f"{testbed}: {int(keep.sum())} positives, {int((~called).sum())} called negative (left out)")
        images, masks, logits = images[called], masks[called], logits[called]
    targets = torch.zeros(len(images), dtype=torch.long) if sigmoid else logits.argmax(1)
    estimator = load_estimator(None)
    candidates = [("original", images)]
    for reference in references:
        explainer = SimpleBits(model, head="sigmoid" if sigmoid else "softmax", reference=reference)
        answers = torch.cat([
            explainer.attribute(images[i : i + batch], target=targets[i : i + batch], return_result=True, seed=i)[1].simplified
            for i in range(0, len(images), batch)
        ])
        candidates.append((f"per-image engine, {reference}", answers))
    candidates.append(("flat outside the mask", torch.where(masks, images, images.mean((2, 3), keepdim=True))))
    rows = []
    for name, x in candidates:
        x = (x * 255).round() / 255
        with torch.no_grad():
            bits_map = torch.cat([estimator.bits_map(chunk) for chunk in x.split(batch)])
        scores = bits_inside_mask(bits_map, masks)
        rows.append({"testbed": testbed, "images": name, "n": len(images), "bits_kept": float((bits_map.flatten(1).sum(1)).mean()),
                     "inside": scores["bits_inside_mask"], "share": scores["mask_share"], "ratio": scores["inside_ratio"]})
    originals = rows[0]["bits_kept"]
    for row in rows:
        row["bits_kept"] /= originals
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--testbeds", default="radiograph,colour-cue,texture-cue,shape-cue")
    parser.add_argument("--n", type=int, default=128, help="test images drawn (before keeping those with a mask)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--references", default="mean", help="the per-image engine's references, comma-separated (mean, mosaic)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()
    table = Table("testbed", "images", "n", "bits (of the originals')", "bits inside the mask", "mask's area share", "ratio",
                  title="Bits inside the object's mask, frozen shipped classifiers (target for training with simplification: >= 3x)")
    for testbed in args.testbeds.split(","):
        for row in run(testbed, args.n, args.batch, args.references.split(",")):
            table.add_row(row["testbed"], row["images"], str(row["n"]), f"{row['bits_kept']:.3f}", f"{row['inside']:.3f}",
                          f"{row['share']:.3f}", f"{row['ratio']:.2f}x")
    console.print(table)
    console.print(f"command: python benchmarks/bits_inside_reference.py --testbeds {args.testbeds} --n {args.n} "
                  f"--references {args.references}")


if __name__ == "__main__":
    main()
