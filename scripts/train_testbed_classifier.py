"""Train the testbed classifiers shipped in ``simplebits_audit/testbeds/weights/`` and write their cards.

    python scripts/train_testbed_classifier.py                      # every testbed
    python scripts/train_testbed_classifier.py digits-on-photos stripes --epochs 6 --n 8000
    python scripts/train_testbed_classifier.py radiograph digits-stripes   # the sigmoid heads, their own defaults

Each card (``{name}.json``) records the test accuracy, training time, epochs, seed, the trivial
maps' and Captum's localisation AUROC on 200 test images (``benchmarks/testbeds.py`` prints the
same numbers), and for ``shortcut`` the accuracy with consistent / shuffled / absent markers.

The sigmoid-head testbeds (``testbeds.SIGMOID_HEADS``) train with binary cross-entropy on their
logits (``train_classifier(head="sigmoid")``) and have their own defaults
(:data:`TESTBED_DEFAULTS`, overridden by explicit options); their cards add the logits' AUROC,
per-label accuracy, localisation counted on positive images only (target = logit 0), and for
``radiograph`` the accuracy with each marker variant and the shift of P(effusion) when only the
marker's letter changes (``benchmarks/testbeds.py``'s ``radiograph_marker_reliance``).

The single-cue testbeds (``testbeds.CUE_AXES``; ``cue-conflict-shape`` and ``cue-conflict-colour``
share their images) record their cue axis, three more trivial maps (contrast, edges, saturation)
and how the predictions move when one factor of the object is redrawn (``cue_swaps``).
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


#: defaults of the class-index testbeds (the shipped ones were trained with the options in their cards)
DEFAULTS = {"n": 8000, "epochs": 6, "batch_size": 32, "lr": 2e-3, "width": 32, "pools": 3, "input_pool": 1}
#: the sigmoid-head testbeds' and the 128 px ``faint-regions``' own defaults (explicit options override them)
TESTBED_DEFAULTS = {
    "radiograph": {"n": 4000, "epochs": 6, "width": 16, "pools": 4, "input_pool": 2},
    "digits-stripes": {"n": 8000, "epochs": 6},
    "faint-regions": {"n": 4000, "epochs": 6, "width": 16, "pools": 4, "input_pool": 2},  # radiograph's 128 px architecture
}


#: testbeds whose classifiers another script trains (not a SmallCNN)
OWN_SCRIPT = {"photo-objects": "scripts/train_photo_objects_classifier.py"}
#: the testbeds this script trains
NAMES = [t for t in testbeds.list_testbeds(None, shipped_classifier=True) if t not in OWN_SCRIPT]


def settings(name: str, args: argparse.Namespace) -> dict:
    """The training settings of testbed ``name``: explicit options, else its defaults."""
    out = {**DEFAULTS, **TESTBED_DEFAULTS.get(name, {})}
    out.update({k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None})
    return out


def train_one(name: str, args: argparse.Namespace) -> dict:
    validity = _validity()
    opts = settings(name, args)
    sigmoid = name in testbeds.SIGMOID_HEADS
    head = "sigmoid" if sigmoid else "softmax"
    n_outputs = testbeds.SIGMOID_HEADS[name] if sigmoid else None
    train = testbeds.load(name, "train", n=opts["n"], seed=args.seed)
    test = testbeds.load(name, "test")
    n_classes = n_outputs or len(train.classes)
    t0 = time.perf_counter()
    if args.reuse_state:  # a state dict saved by an identical earlier run (same arguments), seconds as measured then
        model = testbeds.SmallCNN(n_classes, train.images.shape[1], width=opts["width"], size=train.images.shape[-1], early_pool=True,
                                   pools=opts["pools"], input_pool=opts["input_pool"])
        model.load_state_dict(torch.load(args.reuse_state, map_location="cpu", weights_only=True))
        model.eval()
        seconds = args.reuse_seconds
    else:
        model = testbeds.train_classifier(
            train.images, train.labels, n_classes=n_classes, epochs=opts["epochs"], batch_size=opts["batch_size"],
            lr=opts["lr"], seed=args.seed, early_pool=True, show_progress=True, head=head, width=opts["width"], pools=opts["pools"],
            input_pool=opts["input_pool"],
        )
        seconds = time.perf_counter() - t0
    card = {
        "testbed": name, "train_images": opts["n"], "epochs": opts["epochs"], "batch_size": opts["batch_size"], "lr": opts["lr"],
        "seed": args.seed, "test_accuracy": validity.accuracy(model, test.images, test.labels), "test_images": len(test),
        "train_accuracy": validity.accuracy(model, train.images[:2000], train.labels[:2000]),
        "training_seconds": round(seconds, 1), "load_average_1min": round(os.getloadavg()[0], 1),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "parameters": sum(p.numel() for p in model.parameters()), "config": model.config,
    }
    if sigmoid:
        card["head"] = "sigmoid"
        card["outputs"] = n_classes
        card["test_accuracy_note"] = "share of labels with (logit > 0) == label" + (", averaged over the labels" if n_classes > 1 else "")
        card["test_scores"] = {k: round(v, 4) for k, v in validity.sigmoid_scores(model, test.images, test.labels).items()}
        if name == "radiograph":
            card["test_variant"] = "shuffled (marker letter independent of the label)"
            card["marker_reliance"] = {"images": 500, "seed": validity.EVAL_SEED,
                                       **{k: round(v, 4) for k, v in validity.radiograph_marker_reliance(model).items()}}
    if name in testbeds.CUE_AXES:
        card["cue_axis"] = testbeds.CUE_AXES[name]
        card["cue_swaps"] = {"images": 500, "split": "test", "seed": validity.EVAL_SEED,
                             **{k: round(v, 4) for k, v in validity.cue_swaps(model, name).items()}}
    if name == "shortcut":
        card["test_accuracy_by_marker"] = {k: round(v, 4) for k, v in validity.shortcut_reliance(model).items()}
    data = testbeds.load(name, "test", n=200, seed=validity.EVAL_SEED)
    if data.has_localisation and sigmoid:
        keep = data.masks.flatten(1).any(1)  # negatives have an empty mask: AUROC undefined, left out
        x = data.images[keep]
        maps = validity.captum_maps(model, x, 0)
        card["localisation_auroc"] = {
            "images": int(keep.sum()), "of": 200, "counted": "images with a non-empty mask (positives)", "split": "test",
            "seed": validity.EVAL_SEED, "target": "logit 0",
            **{f"trivial: {k}": v for k, v in validity.trivial_aurocs(name, 200).items()},
            **{k: round(validity.mean_auroc(v, data.masks[keep]), 3) for k, v in maps.items()},
        }
        if data.aux_masks:
            for aux, masks in data.aux_masks.items():
                card[f"{aux}_auroc"] = {
                    "images": int(keep.sum()), "note": f"the same maps against aux_masks[{aux!r}]",
                    **{f"trivial: {k}": round(validity.mean_auroc(v, masks[keep]), 3) for k, v in validity.trivial_maps(x).items()},
                    **{k: round(validity.mean_auroc(v, masks[keep]), 3) for k, v in maps.items()},
                }
    elif data.has_localisation:
        card["localisation_auroc"] = {
            "images": 200, "split": "test", "seed": validity.EVAL_SEED, "target": "predicted class",
            **{f"trivial: {k}": v for k, v in validity.trivial_aurocs(name, 200).items()},
            **{k: round(validity.mean_auroc(v, data.masks), 3)
                for k, v in validity.captum_maps(model, data.images, validity.predict(model, data.images)).items()},
        }
    else:
        card["localisation_auroc"] = None
        card["localisation_note"] = "mask is the whole image (stripes everywhere): localisation metrics do not apply"
    save_torch({"config": model.config, "state_dict": model.state_dict(), "card": card}, args.out_dir / f"{name}.pt")
    save_json(card, args.out_dir / f"{name}.json")
    return card


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("testbeds", nargs="*", default=NAMES, choices=NAMES, help=f"default all but {OWN_SCRIPT} (their own scripts)")
    parser.add_argument("--epochs", type=int, default=None, help=f"default {DEFAULTS['epochs']} (or the testbed's, TESTBED_DEFAULTS)")
    parser.add_argument("--n", type=int, default=None, help=f"training images, default {DEFAULTS['n']} (or the testbed's)")
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {DEFAULTS['batch_size']}")
    parser.add_argument("--lr", type=float, default=None, help=f"default {DEFAULTS['lr']}")
    parser.add_argument("--width", type=int, default=None, help="SmallCNN width, default 32 (radiograph 16)")
    parser.add_argument("--pools", type=int, default=None, help="SmallCNN poolings, default 3 (radiograph 4)")
    parser.add_argument("--input-pool", type=int, default=None, help="SmallCNN input average-pooling factor, default 1 (radiograph 2)")
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
