"""Train the testbed classifiers shipped in ``simplebits_audit/testbeds/weights/`` and write their cards.

    python scripts/train_testbed_classifier.py                      # every testbed
    python scripts/train_testbed_classifier.py digits-on-photos stripes --epochs 6 --n 8000

Each card (``{name}.json``) records the test accuracy, training time, epochs, seed, the trivial
maps' and Captum's localisation AUROC on 200 test images (``benchmarks/testbeds.py`` prints the
same numbers), and for ``shortcut`` the accuracy with consistent / shuffled / absent markers.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

import torch

from simplebits_audit import testbeds
from simplebits_audit._io import save_json, save_torch

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "simplebits_audit" / "testbeds" / "weights"


def _validity():
    spec = importlib.util.spec_from_file_location("benchmarks_testbeds", ROOT / "benchmarks" / "testbeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_one(name: str, args: argparse.Namespace) -> dict:
    validity = _validity()
    train = testbeds.load(name, "train", n=args.n, seed=args.seed)
    test = testbeds.load(name, "test")
    t0 = time.perf_counter()
    if args.reuse_state:  # a state dict saved by an identical earlier run (same arguments), seconds as measured then
        model = testbeds.SmallCNN(len(train.classes), early_pool=True)
        model.load_state_dict(torch.load(args.reuse_state, map_location="cpu", weights_only=True))
        model.eval()
        seconds = args.reuse_seconds
    else:
        model = testbeds.train_classifier(
            train.images, train.labels, n_classes=len(train.classes), epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, seed=args.seed, early_pool=True, show_progress=True,
        )
        seconds = time.perf_counter() - t0
    card = {
        "testbed": name, "train_images": args.n, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "seed": args.seed, "test_accuracy": validity.accuracy(model, test.images, test.labels), "test_images": len(test),
        "train_accuracy": validity.accuracy(model, train.images[:2000], train.labels[:2000]),
        "training_seconds": round(seconds, 1), "load_average_1min": round(os.getloadavg()[0], 1), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "parameters": sum(p.numel() for p in model.parameters()), "config": model.config,
    }
    if name == "shortcut":
        card["test_accuracy_by_marker"] = {k: round(v, 4) for k, v in validity.shortcut_reliance(model).items()}
    data = testbeds.load(name, "test", n=200, seed=validity.EVAL_SEED)
    if data.has_localisation:
        card["localisation_auroc"] = {
            "images": 200, "split": "test", "seed": validity.EVAL_SEED, "target": "predicted class",
            **{f"trivial: {k}": v for k, v in validity.trivial_aurocs(name, 200).items()},
            **{k: round(validity.mean_auroc(v, data.masks), 3) for k, v in validity.captum_maps(model, data.images, validity.predict(model, data.images)).items()},
        }
    else:
        card["localisation_auroc"] = None
        card["localisation_note"] = "mask is the whole image (stripes everywhere): localisation metrics do not apply"
    save_torch({"config": model.config, "state_dict": model.state_dict(), "card": card}, args.out_dir / f"{name}.pt")
    save_json(card, args.out_dir / f"{name}.json")
    return card


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("testbeds", nargs="*", default=testbeds.list_testbeds(), choices=testbeds.list_testbeds())
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS)
    parser.add_argument("--reuse-state", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--reuse-seconds", type=float, default=float("nan"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.testbeds:
        print(train_one(name, args), flush=True)
