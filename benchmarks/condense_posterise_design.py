"""Design trials on a finished condensation (issue #23, ``stripes``): polish it with the bits term, posterise it, or snap it.

Both start from a set written by ``benchmarks/condense_design.py`` (its checkpoint in
``benchmarks/out/condense_design/``, by default the unpenalised 300-step set ``plain-s300``) and
print test accuracy (3 ConvNets, 300 epochs, 1000 test images), estimator bpd and WebP bpd:

* ``polish LAM STEPS LR WARMUP``: more outer steps of gradient matching with the bits term
  (lam ramped over WARMUP of the steps, cosine learning rate from LR);
* ``posterise``: each image's colours clustered by k-means into k = 2, 3, 4 colours;
* ``descend``: the diagnostic behind ``near``: 100 steps of gradient descent on the bits alone
  (straight-through 8-bit rounding, as ``condense``; Adam at lr 0.005 and SGD at lr 1e-5 on the
  summed bits) from the set, printing the estimator's bpd and the share of pixels equal to their W
  and N neighbours every 25 steps;
* ``near``: the near-lossless pass at tolerances 0-3 (``estimators.analytic.snap_to_prediction``),
  per image where the estimator rates it cheaper (``condense``'s last step, ``finish_images``);
  the checkpoint's images as ``condense`` made them before the pass existed.

Results and verdict: docs/design-log.md, "The analytic coder's uniform part" (polish, posterise) and
"Dataset condensation", "A near-lossless last step" (near, descend).

    python benchmarks/condense_design.py --testbed stripes --lam 0 --outer-steps 300 --name plain-s300
    python benchmarks/condense_posterise_design.py polish 2 200 0.05 0.3
    python benchmarks/condense_posterise_design.py posterise
    python benchmarks/condense_posterise_design.py near --start stripes-lc-default
    python benchmarks/condense_posterise_design.py descend --start stripes-lc-default
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from simplebits_audit import testbeds
from simplebits_audit.codecs import codec_bits
from simplebits_audit.estimators import resolve_estimator
from simplebits_audit.simplification.common import round_8bit
from simplebits_audit.training.condensation import (
    CondensedSet,
    _outer_step,
    condense_settings,
    evaluate_condensed,
    finish_images,
    synthetic_pixels,
)

OUT = Path(__file__).parent / "out" / "condense_design"


def kmeans_colours(img: torch.Tensor, k: int, iters: int = 20) -> torch.Tensor:
    """``img`` (C, H, W) with every pixel replaced by the nearest of ``k`` k-means colours."""
    c, h, w = img.shape
    px = img.reshape(c, -1).T
    order = px.mean(1).argsort()
    centres = px[order[torch.linspace(0, len(px) - 1, k).long()]].clone()  # spread over brightness
    for _ in range(iters):
        nearest = torch.cdist(px, centres).argmin(1)
        for j in range(k):
            if (nearest == j).any():
                centres[j] = px[nearest == j].mean(0)
    return centres[torch.cdist(px, centres).argmin(1)].T.reshape(c, h, w)


def score(images: torch.Tensor, labels: torch.Tensor, test, estimator) -> dict:
    bits = estimator.bits(images)
    dims = images[0].numel()
    scores = evaluate_condensed(CondensedSet(images, labels, bits.float(), ["0", "1"], {"arch": "convnet"}, {}), test, n_models=3)
    return {"accuracy": round(scores["condensed"]["accuracy_mean"], 4), "std": round(scores["condensed"]["accuracy_std"], 4),
            "bpd": round(float(bits.mean()) / dims, 3), "webp_bpd": round(float(codec_bits(images).mean()) / dims, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trial", choices=("polish", "posterise", "near", "descend"))
    parser.add_argument("args", nargs="*", type=float, help="polish: LAM STEPS LR WARMUP")
    parser.add_argument("--start", default="stripes-plain-s300", help="checkpoint name under benchmarks/out/condense_design/")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, test = testbeds.load("stripes", "train"), testbeds.load("stripes", "test")
    estimator = resolve_estimator(None)
    start = torch.load(OUT / f"{args.start}.ckpt", weights_only=False)
    logits = start["logits"].clone()
    basis = json.loads(start["run_key"]).get("basis", "rgb")  # the checkpoint's own (a key without one is an RGB run)
    labels = torch.arange(2).repeat_interleave(len(logits) // 2)
    if args.trial == "descend":
        for name, lr in (("adam", 0.005), ("sgd", 1e-5)):
            z = logits.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([z], lr=lr) if name == "adam" else torch.optim.SGD([z], lr=lr)
            for step in range(101):
                images = round_8bit(synthetic_pixels(z, 32, basis), True)
                bits = estimator.bits(images)
                if step % 25 == 0:
                    q = images.detach() * 255
                    flat = ((q[..., 1:, 1:] == q[..., 1:, :-1]) & (q[..., 1:, 1:] == q[..., :-1, 1:])).all(1).float().mean()
                    bpd = float(bits.detach().mean()) / images[0].numel()
                    print(json.dumps({"start": args.start, "optimiser": name, "lr": lr, "step": step, "bpd": round(bpd, 3),
                                      "flat": round(float(flat), 3)}), flush=True)
                optimizer.zero_grad()
                (bits.mean() / images[0].numel() if name == "adam" else bits.sum()).backward()
                optimizer.step()
        return
    if args.trial == "near":
        base = round_8bit(synthetic_pixels(logits, 32, basis), False)
        for near in (0, 1, 2, 3):
            images, _, snapped = finish_images(base, near, estimator)
            print(json.dumps({"start": args.start, "near": near, "snapped": snapped, **score(images, labels, test, estimator)}), flush=True)
        return
    if args.trial == "posterise":
        base = round_8bit(synthetic_pixels(logits, 32, basis), False)
        for k in (0, 2, 3, 4):
            images = base if k == 0 else round_8bit(torch.stack([kmeans_colours(i, k) for i in base]), False)
            print(json.dumps({"start": args.start, "colours": k or "all", **score(images, labels, test, estimator)}), flush=True)
        return
    lam, steps, lr, warmup = args.args[0], int(args.args[1]), args.args[2], args.args[3]
    settings = condense_settings(lam=lam, outer_steps=steps, lr=lr, warmup=warmup, basis=basis)
    by_class = [torch.nonzero(train.labels == c)[:, 0] for c in range(2)]
    logits.requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=lr, betas=(0.5, 0.99))
    started = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        _outer_step(logits, optimizer, train.images, by_class, labels, estimator, arch="convnet", n_classes=2, ipc=len(logits) // 2,
                    settings=settings, seed=7, step=1000 + step, device=torch.device("cpu"))
    with torch.no_grad():
        images = round_8bit(synthetic_pixels(logits.detach(), 32, basis), False)
    print(json.dumps({"start": args.start, "lam": lam, "steps": steps, "lr": lr, "warmup": warmup,
                      "minutes": round((time.perf_counter() - started) / 60, 2), **score(images, labels, test, estimator)}))


if __name__ == "__main__":
    main()
