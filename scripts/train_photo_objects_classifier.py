"""Train the ``photo-objects`` classifier (torchvision ``mobilenet_v3_small``, from scratch) and write its card.

    python scripts/train_photo_objects_classifier.py --checkpoint /tmp/photo-objects.ckpt     # train, then export
    nohup python scripts/train_photo_objects_classifier.py --checkpoint /tmp/po.ckpt > /tmp/po.log 2>&1 &
    python scripts/train_photo_objects_classifier.py --checkpoint /tmp/po.ckpt --epochs 30      # resumes, trains on

Resumable: the run (``training.loop.ResumableRun``) writes its checkpoint atomically at every epoch's
end, every few minutes and on Ctrl-C; running the same command again resumes where it stopped (a
checkpoint from other settings is refused). Each epoch logs the accuracy on 500 test images.
When all epochs are done it writes ``simplebits_audit/testbeds/weights/photo-objects.pt`` (fp16
state dict, ``"arch"`` + ``"config"``, loaded as float32 by ``testbeds.load_classifier``) and
``photo-objects.json``, the card: test accuracy (1000 test images, stamps shuffled), training time
and settings, the stamp reliance (accuracy with the stamp absent / consistent / shuffled /
everywhere, and how often adding the stamp flips a prediction), and the localisation AUROC of the
trivial maps and of Captum's Saliency, Integrated Gradients and Grad-CAM on :data:`EVAL_IMAGES`
test images against the object mask and the stamp mask. ``--export-only`` redoes that last part
from the finished checkpoint.

The training images are one call, ``testbeds.load("photo-objects", "train", n=N, seed=SEED)``
(stamps correlated with the ``cross`` class), kept as uint8; no augmentation. AdamW with a linear
warm-up (one epoch) and a cosine decay, computed from the step number (so a resumed run takes the
same steps); the batch order and Dropout draws follow from ``(seed, step)``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from simplebits_audit import testbeds
from simplebits_audit._io import save_json, save_torch
from simplebits_audit.testbeds import photo_objects
from simplebits_audit.training.loop import ResumableRun, step_seed

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "simplebits_audit" / "testbeds" / "weights"
NAME = "photo-objects"
ARCH = "mobilenet_v3_small"
#: test images of the localisation scores (seed: ``benchmarks/testbeds.py``'s EVAL_SEED)
EVAL_IMAGES = 100
#: settings of the shipped classifier (the options' defaults; n: the testbed's default train size)
DEFAULTS = {"n": testbeds.TESTBEDS[NAME][2]["train"], "epochs": 20, "batch_size": 64, "lr": 2e-3, "weight_decay": 0.05, "seed": 0}


def _validity():
    spec = importlib.util.spec_from_file_location("benchmarks_testbeds", ROOT / "benchmarks" / "testbeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def learning_rate(step: int, total: int, per_epoch: int, peak: float) -> float:
    """Linear warm-up over the first epoch, then a cosine decay to zero at ``total`` steps."""
    if step < per_epoch:
        return peak * (step + 1) / per_epoch
    return 0.5 * peak * (1 + math.cos(math.pi * (step - per_epoch) / max(total - per_epoch, 1)))


def train(args: argparse.Namespace) -> tuple[torch.nn.Module, dict]:
    settings = {k: getattr(args, k) for k in DEFAULTS} | {"arch": ARCH, "testbed": NAME}
    print(f"generating {args.n} train images ...", flush=True)
    t0 = time.perf_counter()
    data = testbeds.load(NAME, "train", n=args.n, seed=args.seed)
    images = data.images.mul(255).round().to(torch.uint8)  # a quarter of the memory; exact (8-bit values)
    labels = data.labels
    del data
    gen_seconds = time.perf_counter() - t0
    print(f"generated in {gen_seconds:.1f} s", flush=True)
    check = testbeds.load(NAME, "test", n=500, seed=1)
    model = testbeds.build_classifier(ARCH, {"num_classes": len(photo_objects.CLASSES)}).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    per_epoch = math.ceil(args.n / args.batch_size)
    total = args.epochs * per_epoch
    run = ResumableRun(args.checkpoint, settings, total=total, total_name="epochs", checkpoint_every=300)
    state = run.resume()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        print(f"resumed at step {run.step} of {total}", flush=True)
    log = {"loss": 0.0, "right": 0, "seen": 0}

    def take_step(step: int) -> str:
        epoch, i = divmod(step, per_epoch)
        order = torch.randperm(args.n, generator=torch.Generator().manual_seed(step_seed(args.seed, epoch)))
        idx = order[i * args.batch_size : (i + 1) * args.batch_size]
        torch.manual_seed(step_seed(args.seed, step, 1))  # Dropout
        x = images[idx].float().div(255).contiguous(memory_format=torch.channels_last)
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, total, per_epoch, args.lr)
        model.train()
        out = model(x)
        loss = F.cross_entropy(out, labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log["loss"] += float(loss.detach()) * len(idx)
        log["right"] += int((out.argmax(1) == labels[idx]).sum())
        log["seen"] += len(idx)
        return f"loss {float(loss.detach()):.3f}"

    def boundary(step: int) -> bool:
        if step == 0 or step % per_epoch:
            return False
        model.eval()
        with torch.no_grad():
            acc = float(torch.cat([model(b).argmax(1) for b in check.images.split(250)]).eq(check.labels).float().mean())
        seen = max(log["seen"], 1)
        print(f"epoch {step // per_epoch}/{args.epochs}: train loss {log['loss'] / seen:.4f}, train acc {log['right'] / seen:.4f}, "
              f"test acc (500, shuffled stamps) {acc:.4f}, {run.seconds:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)
        log.update(loss=0.0, right=0, seen=0)
        return True

    run.run(take_step, lambda: {"model": model.state_dict(), "optimizer": opt.state_dict(), "generation_seconds": gen_seconds},
            description="photo-objects",
            boundary=boundary)
    model = model.to(memory_format=torch.contiguous_format).eval()
    return model, {**settings, "training_seconds": round(run.seconds, 1), "generation_seconds": round(gen_seconds, 1)}


def export(model: torch.nn.Module, info: dict, args: argparse.Namespace) -> dict:
    validity = _validity()
    test = testbeds.load(NAME, "test", n=1000, seed=validity.EVAL_SEED)
    card = {
        "testbed": NAME, "arch": ARCH, "config": {"num_classes": len(photo_objects.CLASSES)},
        "classes": photo_objects.CLASSES, "image_size": photo_objects.SIZE, **info,
        "test_accuracy": round(validity.accuracy(model, test.images, test.labels), 4), "test_images": len(test),
        "test_variant": "shuffled (stamp on half the images, independent of the class)",
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "parameters": sum(p.numel() for p in model.parameters()), "weights_dtype": "float16 (loaded as float32)",
        "stamp_reliance": validity.photo_objects_stamp_reliance(model),
        "localisation_auroc": validity.photo_objects_localisation(model, EVAL_IMAGES),
    }
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_torch({"arch": ARCH, "config": card["config"], "state_dict": state, "card": card}, args.out_dir / f"{NAME}.pt")
    save_json(card, args.out_dir / f"{NAME}.json")
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="the resumable run's checkpoint (written atomically)")
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value, help=f"default {value}")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS)
    parser.add_argument("--export-only", action="store_true", help="skip training: export the finished checkpoint")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.export_only:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        model = testbeds.build_classifier(ARCH, {"num_classes": len(photo_objects.CLASSES)})
        model.load_state_dict(state["model"])
        import json

        key = json.loads(state["run_key"])
        info = {**key, "training_seconds": round(float(state["seconds"]), 1), "steps": int(state["step"]),
                "generation_seconds": round(float(state["generation_seconds"]), 1)}
        model.eval()
    else:
        model, info = train(args)
    print(export(model, info, args), flush=True)


if __name__ == "__main__":
    main()
