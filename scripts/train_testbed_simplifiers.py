"""Train the learned simplifiers shipped in ``simplebits_audit/testbeds/weights/`` and write their cards.

    python scripts/train_testbed_simplifiers.py                      # every testbed, library defaults
    python scripts/train_testbed_simplifiers.py shortcut --steps 4000
    python scripts/train_testbed_simplifiers.py --rescore digits-on-photos photo-objects shortcut stripes   # cards only
    python scripts/train_testbed_simplifiers.py --add-order digits-on-photos shortcut   # an order head on a shipped mask

Each simplifier is trained against the shipped classifier of its testbed on the train split
(``train_simplifier`` at its defaults, seed 0; resumable from ``scripts/out/``) and scored on 512
test images (seed 1): top-1 kept and bits kept of the network's output, WebP size kept, and the
localisation AUROC of its mask where the testbed has ground truth. Load one with
``Simplifier.pretrained(name)``. ``--add-order`` trains only the order head of a shipped simplifier
that has none (``train_simplifier(simplifier=..., steps=0)``, a quarter of its card's steps): its
returned images, and so its card's scores, stay as they are.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from simplebits_audit import Simplifier, testbeds, train_simplifier
from simplebits_audit._io import save_json
from simplebits_audit.codecs import codec_bits
from simplebits_audit.metrics import auroc

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "simplebits_audit" / "testbeds" / "weights"
STATE = ROOT / "scripts" / "out"


def train_one(name: str, steps: int | None) -> dict:
    model = testbeds.load_classifier(name)
    train = testbeds.load(name, "train")
    test = testbeds.load(name, "test", n=512, seed=1)
    STATE.mkdir(parents=True, exist_ok=True)
    simplifier = train_simplifier(
        model, train.images, held_out=test.images, steps=steps, checkpoint=STATE / f"simplifier-{name}.ckpt",
        data_description=f"testbed {name}, train split ({len(train)} images); scored on 512 test images (seed 1)", show_progress=True,
    )
    card = dict(simplifier.card)
    card["held_out"].update(_outside_scores(simplifier, test))
    card["cpu_count"] = os.cpu_count()
    card["script"] = "scripts/train_testbed_simplifiers.py"
    return _save(name, simplifier, card)


def _outside_scores(simplifier: Simplifier, test) -> dict:
    """What the card holds beyond ``evaluate_simplifier``: WebP size kept, and mask AUROC where the testbed has masks."""
    with torch.no_grad():
        out, mask = simplifier(test.images), simplifier.mask(test.images)
    scores = {"webp_kept": float((codec_bits(out) / codec_bits(test.images)).mean())}
    if test.has_localisation:
        scores["mask_auroc"] = float(auroc(mask, test.masks).nanmean())
    return scores


def _save(name: str, simplifier: Simplifier, card: dict) -> dict:
    """Ship the simplifier with ``card`` (weights and card in the .pt, the card also as JSON)."""
    simplifier.card = card
    simplifier.save(WEIGHTS / f"simplifier-{name}.pt")
    save_json(card, WEIGHTS / f"simplifier-{name}.json")
    return card


def rescore(name: str) -> dict:
    """Score a shipped simplifier again under the current estimator (its weights unchanged) and rewrite its card's held-out numbers."""
    from datetime import date

    from simplebits_audit.training.simplifier import evaluate_simplifier

    simplifier, model = Simplifier.pretrained(name), testbeds.load_classifier(name)
    test = testbeds.load(name, "test", n=512, seed=1)
    card = dict(simplifier.card)
    card["held_out"] = {**card["held_out"], **evaluate_simplifier(simplifier, model, test.images), **_outside_scores(simplifier, test)}
    card["rescored"] = f"{date.today().isoformat()}: held-out numbers under the analytic coder with its uniform part (CHANGELOG)"
    return _save(name, simplifier, card)


def add_order(name: str) -> dict:
    """Train the order head of a shipped simplifier (its mask frozen) and record it on the card."""
    from simplebits_audit.training.simplifier import ORDER_SHARE

    simplifier, model = Simplifier.pretrained(name), testbeds.load_classifier(name)
    if simplifier.order_head is not None:
        raise SystemExit(f"{name}: the shipped simplifier already has an order head")
    card = simplifier.card
    order_steps = int(ORDER_SHARE * card["steps"])
    STATE.mkdir(parents=True, exist_ok=True)
    # steps=0: the card keeps its mask's scores (the mask is unchanged) and gains the order head's fields
    ordered = train_simplifier(
        model, testbeds.load(name, "train").images, simplifier=simplifier, steps=0, order_steps=order_steps, seed=card.get("seed", 0),
        head=card.get("head", "softmax"), checkpoint=STATE / f"simplifier-{name}-order.ckpt", show_progress=True,
    )
    return _save(name, ordered, ordered.card)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=testbeds.list_testbeds(shipped_classifier=True))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the library default)")
    parser.add_argument("--rescore", action="store_true", help="only score the shipped simplifiers again and rewrite their cards")
    parser.add_argument("--add-order", action="store_true", help="only train the order head of shipped simplifiers that have none")
    args = parser.parse_args()
    for name in args.names:
        card = rescore(name) if args.rescore else add_order(name) if args.add_order else train_one(name, args.steps)
        print(json.dumps({"testbed": name, **card["held_out"], "training_seconds": card["training_seconds"]}))


if __name__ == "__main__":
    main()
