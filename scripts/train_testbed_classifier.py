"""Train the testbed classifier shipped in ``simplebits_audit/testbeds/weights/`` (used by the demo).

    python scripts/train_testbed_classifier.py digits-on-photos --epochs 20 --n 12000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from simplebits_audit import testbeds
from simplebits_audit._io import save_json, save_torch

WEIGHTS = Path(__file__).resolve().parents[1] / "simplebits_audit" / "testbeds" / "weights"

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("testbed", choices=testbeds.list_testbeds())
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n", type=int, default=12000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train = testbeds.load(args.testbed, "train", n=args.n)
    test = testbeds.load(args.testbed, "test")
    t0 = time.perf_counter()
    model = testbeds.train_classifier(train.images, train.labels, n_classes=len(train.classes), epochs=args.epochs)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        acc = float((model(test.images).argmax(1) == test.labels).float().mean())
    card = {"testbed": args.testbed, "train_images": args.n, "epochs": args.epochs, "test_accuracy": acc,
            "test_images": len(test), "training_seconds": round(seconds, 1), "config": model.config}
    save_torch({"config": model.config, "state_dict": model.state_dict(), "card": card}, args.out_dir / f"{args.testbed}.pt")
    save_json(card, args.out_dir / f"{args.testbed}.json")
    print(card)
