"""The learned simplifier's order head: at the mask's grid (today) or at the image's pixels (a design script, issue #23).

The order head ranks the pixels a learned simplifier's returned image does not keep. Today it is a
1 x 1 convolution on the trunk's features pooled to the mask's grid (16 x 16 at 32 px), upsampled
bilinearly: on the report testbeds the map's remaining loss is at the object's edge
(``benchmarks/simplifier_mask_levels.py``). The candidate, *pixel*, reads s x s scores per feature
cell (a 1 x 1 convolution to s^2 channels, pixel-shuffled; s = 2, the trunk's stride), so the order
and the deletion game that trains it are at the image's resolution. Each is trained for the same
steps on the same frozen simplifier (``train_simplifier(simplifier=..., steps=0, order_steps=N)``),
whose mask, returned images, bits and answers are therefore the same in every row; only the map's
order below the kept pixels differs. With ``--long`` also today's head trained for four times the
steps (a diagnostic: how much more training alone gives).

Per testbed: localisation AUROC (all images / those the flat mean colour alone changes), on 256
test images (seed 1 on design testbeds, 0 on report testbeds), the order head's training minutes
(one thread) and ``attribute``'s milliseconds per image (the fastest of 7 interleaved passes). The
simplifiers are ``benchmarks/simplifier_map_design.py``'s masks (``--deletion 0``; run it first:
``simplifier-map-<testbed>-deletion0-seed0.pt``), each given both heads here.

    python benchmarks/simplifier_order_head_design.py --testbeds twin-digits,digits-on-photos,blended-digits,shortcut
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from simplebits_audit import SimpleBits, Simplifier, testbeds, train_simplifier
from simplebits_audit.metrics import auroc
from simplebits_audit.simplification.mask import reference_image

OUT = Path(__file__).parent / "out"
#: the trunk's stride: its features are at half the image's resolution
STRIDE = 2


class PixelOrder(Simplifier):
    """Today's simplifier with the order head at the image's resolution (the candidate)."""

    def add_order_head(self) -> None:
        if self.order_head is None:
            with torch.random.fork_rng(devices=[]):
                self.order_head = nn.Conv2d(self.head.in_channels, STRIDE * STRIDE, 1).to(self.head.weight.device)
            nn.init.zeros_(self.order_head.weight)
            nn.init.zeros_(self.order_head.bias)
            self.config["order"] = True

    def heads(self, feats: torch.Tensor, size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = self._to_grid(self.head(feats), size)
        if self.order_head is None:
            return mask, None
        return mask, F.pixel_shuffle(self.order_head(feats), STRIDE)[..., : size[0], : size[1]]


def _order(base: Path, cls: type[Simplifier], steps: int, model: nn.Module, testbed: str, head: str) -> tuple[Simplifier, float]:
    trained = Simplifier.load(base, forward_func=model)
    # the mask and trunk only: a file trained at today's defaults has a head already, which each candidate replaces
    net = cls(**{k: v for k, v in trained.config.items() if k != "order"})
    net.load_state_dict({k: v for k, v in trained.state_dict().items() if not k.startswith("order_head.")})
    net.card = trained.card
    held_out = testbeds.load(testbed, "test", n=256, seed=2).images  # neither scored sample
    start = time.perf_counter()
    net = train_simplifier(model, testbeds.load(testbed, "train").images, simplifier=net, steps=0, order_steps=steps,
                           held_out=held_out, head=head, seed=0, data_description=f"testbed {testbed}, train split")
    return net, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbeds", default="twin-digits,digits-on-photos,blended-digits,shortcut")
    parser.add_argument("--order-steps", type=int, default=1000)
    parser.add_argument("--long", action="store_true", help="also today's head at 4x the order steps (a diagnostic)")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for testbed in args.testbeds.split(","):
        seed = 1 if testbed in testbeds.DESIGN_TESTBEDS else 0
        head = "sigmoid" if testbed in testbeds.SIGMOID_HEADS else "softmax"
        model = testbeds.load_classifier(testbed)
        data = testbeds.load(testbed, "test", n=args.n, seed=seed)
        with torch.no_grad():
            targets = model(data.images).argmax(1)
            needs = model(reference_image(data.images, "mean")).argmax(1) != targets
        base = OUT / f"simplifier-map-{testbed}-deletion0-seed0.pt"
        # both heads trained here, one after the other, so that their minutes are comparable
        variants = {"grid (today)": _order(base, Simplifier, args.order_steps, model, testbed, head),
                    "pixel": _order(base, PixelOrder, args.order_steps, model, testbed, head)}
        if args.long:
            variants[f"grid, {4 * args.order_steps} steps"] = _order(base, Simplifier, 4 * args.order_steps, model, testbed, head)
        explainers = {name: SimpleBits(model, simplifier=net, refine_steps=0) for name, (net, _) in variants.items()}
        best = dict.fromkeys(explainers, float("inf"))
        maps: dict[str, torch.Tensor] = {}
        for _ in range(7):
            for name, explainer in explainers.items():
                start, parts = time.perf_counter(), []
                for i in range(0, args.n, 64):
                    parts.append(explainer.attribute(data.images[i : i + 64], target=targets[i : i + 64])[:, :1])
                best[name] = min(best[name], 1000 * (time.perf_counter() - start) / args.n)
                maps[name] = torch.cat(parts)
        for name, (_, seconds) in variants.items():
            m = maps[name]
            rows.append({"testbed": testbed, "order head": name, "auroc": float(auroc(m, data.masks).nanmean()),
                         "auroc_needs": float(auroc(m[needs], data.masks[needs]).nanmean()), "train_minutes": seconds / 60,
                         "ms_per_image": best[name]})
    table = Table(title=f"the order head's resolution: {args.n} test images, {args.order_steps} order steps, {args.threads} thread(s)")
    for col in ("testbed", "order head", "AUROC", "AUROC (needs something)", "order training min", "ms / image"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["testbed"], r["order head"], f"{r['auroc']:.3f}", f"{r['auroc_needs']:.3f}", f"{r['train_minutes']:.2f}",
                      f"{r['ms_per_image']:.3f}")
    Console(width=200).print(table)
    (OUT / f"simplifier-order-head-{int(time.time())}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
