"""Issue #21: cost at real sizes. Time per image and peak extra memory of SimpleBits and its peers.

For each (model, size) cell and each method, one fresh subprocess of this script (hidden flag
``--one``) loads the model and the input, runs the method once as a warm-up, then once timed:

- **time**: wall seconds of the timed call divided by the batch (``--batch``, default 1); the
  warm-up (imports, allocator, estimator loading, the convolution library's set-up for this input
  size) is excluded. It runs on one image of the cell's size with the method's cheapest settings
  (1 step / 1 window / 1 iteration; the learned simplifier as it is). A warm-up at the smallest size
  left the first call at the real size paying the set-up: the learned simplifier's 0.3 s per
  ResNet-50 image read as 1.4 s.
- **peak extra memory**, CPU: the peak resident set size (``VmHWM``, what ``resource.getrusage``
  reports as ``ru_maxrss``) during the timed call minus the resident set size just before it
  (model, input and warm-up already in memory). The peak is reset with ``/proc/self/clear_refs``
  after the warm-up, and glibc is told to return every freed block over 128 KiB to the system
  (``MALLOC_MMAP_THRESHOLD_``, plus ``malloc_trim``), so that memory the warm-up freed is not
  silently reused. Without ``/proc`` (not Linux) the peak includes loading: said in the output.
  That setting maps and zeroes every large block afresh, which a user explaining image after image
  does not pay: CPU calls under 10 s are timed a second time with freed blocks kept for reuse
  (the learned simplifier's 0.18 s per ResNet-50 image read as 0.68 s otherwise).
  CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` minus the memory
  allocated before the call (tensors only; the caching allocator's reserve is not counted).

Methods (every ratio is against Integrated Gradients measured in the same run, same cell):

``simplebits``   ``SimpleBits(model).attribute(x, target=t)`` at its defaults (mask engine; ``head="sigmoid"``
                 for one-logit models)
``learned``      the same call with an *untrained* ``Simplifier`` of the input's channels (defaults):
                 the learned path's inference cost (one simplifier pass, the classifier on the
                 candidates, two bits maps); its quality needs a trained one
``ig``           Captum ``IntegratedGradients``, ``n_steps=50``, default ``internal_batch_size`` (all 50 at once)
``ig_bounded``   the same with ``internal_batch_size=--ig-batch`` (default 10): memory-bounded
``occlusion``    Captum ``Occlusion``, square window side/8 over all channels, stride window/2, fill 0,
                 16 perturbations per forward pass
``gradcam``      Captum ``LayerGradCam`` on the last Conv2d; ViT-B/16 has no spatial conv map, so its
                 last block's first LayerNorm (``encoder.layers.encoder_layer_11.ln_1``) is used, the
                 196 patch tokens reshaped to 14x14 (``explainers.captum.gradcam``)
``extremal``     TorchRay's ``extremal_perturbation`` (Fong et al. 2019; the closest published peer: a
                 smooth mask optimised per image) at its defaults (area 0.1, blur perturbation) except
                 ``max_iter=--ep-iter`` (default: TorchRay's own, 800); one image at a time (its API).
                 Optional: "not installed" without the ``torchray`` package (docs/benchmarks.md, "Scale")

Models (random weights, eval mode; cost does not depend on training):

``resnet18``, ``resnet50``  torchvision, 1000 classes, any size >= 32
``vit_b_16``                torchvision, 1000 classes, 224 px only (its input size is fixed); its zero-initialised
                            head is redrawn (normal, std 0.02), or no gradient would reach the image
``radiograph-cnn``          the ``radiograph`` testbed's SmallCNN (1 channel, one sigmoid logit, width 16,
                            ``early_pool``, ``input_pool=2``) built at the cell's size with pools chosen
                            so its last map stays 4x4 as at 128 px; sizes >= 128
``resnet18-1ch``            torchvision resnet18 with a 1-channel stem and 1 logit (``head="sigmoid"``); sizes >= 32

Inputs: RGB models get held-out photos (``photos.held_out_photos``), centre-cropped square and
resized to the size; single-channel models get ``radiograph`` test images (128 px) upsampled
bilinearly. Targets: the predicted class (softmax models), logit 0 (one-logit models).

    python benchmarks/scale.py                                   # every cell: hours on 2 CPU cores
    python benchmarks/scale.py --models resnet50 --sizes 224 --threads 1
    python benchmarks/scale.py --cells resnet50:224,vit_b_16:224,radiograph-cnn:1024   # the targets only
    python benchmarks/scale.py --quick                           # 32 px, resnet18, batch 1, tiny settings (tests)
    python benchmarks/scale.py --device cuda --out scale.json    # JSON of the raw numbers (atomic)

With ``--quality N`` it also scores the maps on the two realistic testbeds (:func:`quality`):
localisation, RISE deletion and insertion, and the shortcut on the scenes it decides.

    python benchmarks/scale.py --only-quality --quality 64 --threads 1                 # ~20 min on one thread
    python benchmarks/scale.py --only-quality --quality 64 --quality-testbeds radiograph --shortcut-pool 1024
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib.util
import inspect
import json
import math
import os
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

METHODS = ("simplebits", "learned", "ig", "ig_bounded", "occlusion", "gradcam", "extremal")
MODELS = ("resnet18", "resnet50", "vit_b_16", "radiograph-cnn", "resnet18-1ch")
SIZES = (32, 128, 224, 512, 1024)
#: The smallest size each model takes, and the only one for fixed-size models.
MIN_SIZE = {"resnet18": 32, "resnet50": 32, "vit_b_16": 224, "radiograph-cnn": 128, "resnet18-1ch": 32}
FIXED_SIZE = {"vit_b_16": 224}
#: Grad-CAM's layer for models without a spatial conv map (token maps reshaped to the patch grid).
GRADCAM_LAYER = {"vit_b_16": "encoder.layers.encoder_layer_11.ln_1"}
IG_STEPS = 50
#: glibc: freed blocks over this many bytes go back to the system (so a warm-up's memory is not reused unseen).
MMAP_THRESHOLD = 131072
#: CPU calls shorter than this (seconds) are timed a second time with freed blocks up to
#: ``RETIME_MMAP_THRESHOLD`` bytes kept for reuse (glibc's own limit), after the memory measurement
RETIME_SECONDS, RETIME_MMAP_THRESHOLD = 10.0, 32 * 2**20
#: The issue's targets: (label, model, size, method, time ratio bound, memory ratio bound or None), both against IG.
TARGETS = (
    ("224 px ResNet-50: SimpleBits <= 1.5x IG time, <= IG memory", "resnet50", 224, "simplebits", 1.5, 1.0),
    ("1024 px single-channel CNN: SimpleBits <= 2x IG time, <= IG memory", "radiograph-cnn", 1024, "simplebits", 2.0, 1.0),
    ("ViT-B/16 224 px: SimpleBits <= 1.5x IG time", "vit_b_16", 224, "simplebits", 1.5, None),
    ("learned simplifier 224 px (ResNet-50): >= 30x faster than IG", "resnet50", 224, "learned", 1 / 30, None),
)


def cells(models, sizes) -> list[tuple[str, int]]:
    """The (model, size) pairs of ``models`` x ``sizes`` each model takes (ViT-B/16: 224 only)."""
    out = []
    for m in models:
        for s in sizes:
            if s >= MIN_SIZE[m] and FIXED_SIZE.get(m, s) == s:
                out.append((m, s))
    return out


# --------------------------------------------------------------------------------------------
# one measurement (the child process)


def build_model(name: str, size: int) -> tuple[torch.nn.Module, int, str]:
    """``(model, channels, head)``, random weights (seed 0), eval mode."""
    import torchvision

    torch.manual_seed(0)
    if name == "radiograph-cnn":
        from simplebits_audit.testbeds import SmallCNN, classifier_card

        config = dict(classifier_card("radiograph")["config"])  # the shipped 128 px classifier's architecture
        last = (config["size"] // config.get("input_pool", 1)) >> config.get("pools", 3)  # its last map's side (4)
        side = size // config.get("input_pool", 1)
        # pools added so that the last map keeps that side at this size
        config.update(size=size, pools=max(3, (side // last).bit_length() - 1))
        return SmallCNN(**config).eval(), config["in_channels"], "sigmoid"
    if name == "resnet18-1ch":
        model = torchvision.models.resnet18(weights=None, num_classes=1)
        model.conv1 = torch.nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
        return model.eval(), 1, "sigmoid"
    model = getattr(torchvision.models, name)(weights=None)
    if name == "vit_b_16":
        # torchvision zero-initialises the ViT's head: every logit 0 and no gradient reaches the image
        # (SimpleBits refuses such a model; IG would return zeros at full cost). Give it a random head.
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    return model.eval(), 3, "softmax"


def make_inputs(channels: int, size: int, batch: int) -> torch.Tensor:
    """(batch, channels, size, size) in [0, 1], 8-bit values: held-out photos (RGB) or radiographs (1 channel)."""
    import torch.nn.functional as F

    if channels == 1:
        from simplebits_audit import testbeds

        x = testbeds.load("radiograph", "test", n=batch, seed=7).images
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1).mul(255).round().div(255)
    import numpy as np
    from PIL import Image

    from simplebits_audit.photos import held_out_photos, load_rgb

    paths = held_out_photos()
    out = []
    for i in range(batch):
        im = Image.fromarray(load_rgb(paths[i % len(paths)], max_side=None))
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
        out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div(255))
    return torch.stack(out)


def method_call(method: str, model, head: str, channels: int, model_name: str, args):
    """``run(x, target, cheap)`` for ``method``; ``cheap`` is the warm-up's setting (1 step / window / iteration)."""
    from simplebits_audit import SimpleBits
    from simplebits_audit.explainers.captum import gradcam, integrated_gradients, occlusion

    if method in ("simplebits", "learned"):
        simplifier = None
        if method == "learned":
            from simplebits_audit.simplification.learned import Simplifier

            simplifier = Simplifier(in_channels=channels).eval().requires_grad_(False)
        explainer = SimpleBits(model, simplifier=simplifier, head=head)

        def run(x, t, cheap):
            return explainer.attribute(x, target=t, **({"steps": 1} if cheap else {}))
    elif method in ("ig", "ig_bounded"):
        ib = args.ig_batch if method == "ig_bounded" else None

        def run(x, t, cheap):
            return integrated_gradients(model, x, t, n_steps=1 if cheap else IG_STEPS, internal_batch_size=ib)
    elif method == "occlusion":
        def run(x, t, cheap):
            side = x.shape[-1]
            window = side if cheap else max(1, side // 8)
            return occlusion(model, x, t, window=window, stride=max(1, window // 2))
    elif method == "gradcam":
        def run(x, t, cheap):
            return gradcam(model, x, t, layer=GRADCAM_LAYER.get(model_name))
    elif method == "extremal":
        from torchray.attribution.extremal_perturbation import extremal_perturbation

        from simplebits_audit._helpers import model_guard

        def run(x, t, cheap):
            iters = {"max_iter": 1} if cheap else {} if args.ep_iter is None else {"max_iter": args.ep_iter}
            # TorchRay sets requires_grad=False on every parameter and never restores it: the guard does.
            with model_guard(model), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.meshgrid's indexing warning, once per call
                return [extremal_perturbation(model, x[i : i + 1], int(t[i]), **iters)[0] for i in range(len(x))]
    else:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    return run


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS: Linux's ``clear_refs`` 5; False where it is not there."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _set_mmap_threshold(size: int) -> bool:
    """glibc ``mallopt(M_MMAP_THRESHOLD, size)``: blocks under ``size`` bytes are kept for reuse once freed."""
    with contextlib.suppress(OSError, AttributeError):
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, size))  # M_MMAP_THRESHOLD
    return False


def _trim() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure(model_name: str, size: int, method: str, args) -> dict:
    """One cell's method: seconds per image and peak extra memory (MB), as described in the module docstring."""
    import resource

    torch.set_num_threads(args.threads)
    if args.max_memory_gb and args.device == "cpu":  # CUDA's driver maps large private regions of its own
        # Private memory (malloc and anonymous mmap) past this fails with torch's "can't allocate memory":
        # Captum's default IG (all 50 steps at once) would otherwise take a shared machine down at 1024 px.
        limit = int(args.max_memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    device = torch.device(args.device)
    if method == "extremal" and importlib.util.find_spec("torchray") is None:
        return {"skipped": "torchray not installed"}
    model, channels, head = build_model(model_name, size)
    model = model.to(device)
    x = make_inputs(channels, size, args.batch).to(device)
    with torch.no_grad():
        logits = model(x)
    target = torch.zeros(len(x), dtype=torch.long, device=device) if head == "sigmoid" else logits.argmax(1)
    run = method_call(method, model, head, channels, model_name, args)
    run(x[:1], target[:1], True)
    del logits
    _trim()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        memory = "cuda max_memory_allocated - allocated before"
    else:
        reset = _reset_peak_rss()
        before = (_status_kb("VmRSS") or 0) * 1024
        memory = "peak RSS (VmHWM) - RSS before" if reset else "ru_maxrss - RSS before (peak not reset: includes loading)"
    t0 = time.perf_counter()
    run(x, target, False)
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if cuda:
        peak = torch.cuda.max_memory_allocated(device)
    else:
        hwm = _status_kb("VmHWM")
        peak = hwm * 1024 if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if seconds < RETIME_SECONDS and _set_mmap_threshold(RETIME_MMAP_THRESHOLD):
            # The memory run maps and zeroes every large block afresh; a user explaining image after image
            # reuses them. Short calls, where that costs a large share, are timed again that way.
            t0 = time.perf_counter()
            run(x, target, False)
            seconds = time.perf_counter() - t0
    return {"seconds_per_image": seconds / len(x), "extra_mb": max(0, peak - before) / 2**20, "before_mb": before / 2**20,
            "memory": memory, "batch": len(x)}


# --------------------------------------------------------------------------------------------
# the driver


def child_command(model: str, size: int, method: str, args) -> list[str]:
    return [sys.executable, __file__, "--one", model, str(size), method, "--device", args.device, "--threads", str(args.threads),
            "--batch", str(args.batch), "--ig-batch", str(args.ig_batch), *(["--ep-iter", str(args.ep_iter)] if args.ep_iter else []),
            *(["--max-memory-gb", str(args.max_memory_gb)] if args.max_memory_gb else [])]


def run_child(model: str, size: int, method: str, args) -> dict:
    """The measurement in a fresh process: its numbers, or ``{"error": one line}`` / ``{"skipped": why}``."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD), OMP_NUM_THREADS=str(args.threads))
    try:
        proc = subprocess.run(child_command(model, size, method, args), capture_output=True, text=True, env=env,
                              timeout=args.cell_timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over --cell-timeout {args.cell_timeout:g} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        if "can't allocate memory" in tail or "MemoryError" in tail:
            return {"error": f"out of memory (over --max-memory-gb {args.max_memory_gb:g})" if args.max_memory_gb else "out of memory"}
        return {"error": tail[:200]}
    return json.loads(lines[-1])


def ratios(results: dict) -> None:
    """Add ``x_ig`` / ``x_ig_bounded`` (time) and ``mem_x_ig`` / ``mem_x_ig_bounded`` to every method of every cell, in place."""
    for cell in results["cells"]:
        for ref in ("ig", "ig_bounded"):
            base = cell["methods"].get(ref, {})
            for r in cell["methods"].values():
                if "seconds_per_image" in r and "seconds_per_image" in base:
                    r[f"x_{ref}"] = r["seconds_per_image"] / base["seconds_per_image"]
                    r[f"mem_x_{ref}"] = r["extra_mb"] / base["extra_mb"] if base["extra_mb"] > 0 else float("nan")


def targets(results: dict) -> list[dict]:
    """The issue's cost targets, each met / missed / not measured, against both IG settings."""
    by_cell = {(c["model"], c["size"]): c for c in results["cells"]}
    rows = []
    for label, model, size, method, time_bound, mem_bound in TARGETS:
        r = by_cell.get((model, size), {}).get("methods", {}).get(method, {})
        row = {"target": label, "model": model, "size": size, "method": method}
        for ref in ("ig", "ig_bounded"):
            if f"x_{ref}" not in r:
                row[ref] = None
                continue
            ok = r[f"x_{ref}"] <= time_bound and (mem_bound is None or r[f"mem_x_{ref}"] <= mem_bound)
            row[ref] = {"time_ratio": r[f"x_{ref}"], "memory_ratio": r[f"mem_x_{ref}"], "met": ok}
        rows.append(row)
    return rows


def _fmt(r: dict, key: str, spec: str) -> str:
    if "skipped" in r:
        return "not installed" if "torchray" in r["skipped"] else "skipped"
    if "error" in r:
        return "OOM" if r["error"].startswith("out of memory") else "timeout" if "cell-timeout" in r["error"] else "error"
    v = r.get(key)
    return "-" if v is None else format(v, spec)


def print_tables(results: dict, console: Console) -> None:
    methods = results["methods"]
    for key, spec, title in (
        ("seconds_per_image", ".3g", "seconds per image"),
        ("extra_mb", ".0f", "peak extra memory, MB"),
    ):
        table = Table("model", "size", "pixels", *methods, "SimpleBits / IG", "SimpleBits / IG ib",
                      title=f"{title} ({results['device']}, {results['threads']} threads, batch {results['batch']})")
        ratio = "x_ig" if key == "seconds_per_image" else "mem_x_ig"
        for cell in results["cells"]:
            m = cell["methods"]
            sb = m.get("simplebits", {})
            table.add_row(cell["model"], str(cell["size"]), f"{cell['size'] ** 2:,}", *(_fmt(m.get(k, {}), key, spec) for k in methods),
                          _fmt(sb, ratio, ".2f"), _fmt(sb, ratio + "_bounded", ".2f"))
        console.print(table)
    errors = [(c["model"], c["size"], k, r["error"]) for c in results["cells"] for k, r in c["methods"].items() if "error" in r]
    for model, size, method, err in errors:
        console.print(f"error: {model} {size} px {method}: {err}")
    table = Table("target", "vs IG (internal_batch_size default)", f"vs IG (internal_batch_size {results.get('ig_batch')})",
                  title="Issue #21 cost targets (ratios against IG measured in the same run)")
    bounds = {label: (time_bound, mem_bound) for label, *_, time_bound, mem_bound in TARGETS}
    for row in results["targets"]:
        time_bound, mem_bound = bounds.get(row["target"], (1.0, 1.0))
        cells_ = []
        for ref in ("ig", "ig_bounded"):
            v = row[ref]
            if v is None:
                cells_.append("not measured")
                continue
            # a speed-up target reads as "N x faster"; memory only where the target bounds it
            speed = f"{1 / v['time_ratio']:.1f}x faster" if time_bound < 1 else f"{v['time_ratio']:.2f}x time"
            memory = f", {v['memory_ratio']:.2f}x memory" if mem_bound is not None else ""
            cells_.append(f"{speed}{memory}: {'met' if v['met'] else 'MISSED'}")
        table.add_row(row["target"], *cells_)
    console.print(table)


def markdown_tables(results: dict) -> str:
    """The time and memory tables as Markdown (docs/benchmarks.md), from the same numbers as :func:`print_tables`."""
    methods, lines = results["methods"], []
    for key, spec, title in (("seconds_per_image", ".3g", "Seconds per image"), ("extra_mb", ".0f", "Peak extra memory, MB")):
        ratio = "x_ig" if key == "seconds_per_image" else "mem_x_ig"
        lines += [f"**{title}**", "", "| model | size | pixels | " + " | ".join(methods) + " | SimpleBits / IG | SimpleBits / IG ib |",
                  "|" + " --- |" * (len(methods) + 5)]
        for cell in results["cells"]:
            m = cell["methods"]
            sb = m.get("simplebits", {})
            row = [cell["model"], str(cell["size"]), f"{cell['size'] ** 2:,}", *(_fmt(m.get(k, {}), key, spec) for k in methods),
                   _fmt(sb, ratio, ".2f"), _fmt(sb, ratio + "_bounded", ".2f")]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


#: testbeds of the quality section: name -> the aux mask that holds its shortcut, the variant with the shortcut on every
#: image (radiograph: always there, its letter a coin) and the variant without it
QUALITY_TESTBEDS = {"photo-objects": ("stamp", "everywhere", "absent"), "radiograph": ("marker", "shuffled", "absent")}
#: the maps compared on them (SimpleBits first; the learned simplifier where one is shipped; trivial maps last)
QUALITY_METHODS = (
    "simplebits", "simplebits_learned", "ig", "saliency", "occlusion", "gradcam", "centre", "contrast", "brightness", "edges",
)
QUALITY_SEED = 11
#: the seed of the shortcut's scenes: other scenes than the quality images' (no default was chosen on either)
SHORTCUT_SEED = 12


def _extremal_maps(model, x: torch.Tensor, target: torch.Tensor, iterations: int | None) -> torch.Tensor:
    """TorchRay's extremal perturbation masks (B, 1, H, W) at its defaults (area 0.1), one image at a time."""
    from torchray.attribution.extremal_perturbation import extremal_perturbation

    from simplebits_audit._helpers import model_guard

    maps = []
    with model_guard(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(len(x)):
            options = {} if iterations is None else {"max_iter": iterations}
            maps.append(extremal_perturbation(model, x[i : i + 1], int(target[i]), **options)[0].detach())
    return torch.cat(maps)


def shortcut_images(name: str, pool: int, model, head: str):
    """The images of ``pool`` test scenes (seed :data:`SHORTCUT_SEED`) whose prediction the shortcut decides.

    Each scene is drawn with its shortcut and without it (the testbed's variants share everything
    else); kept are the scenes whose prediction differs. Returns (images with the shortcut, their
    shortcut masks (n, 1, H, W) bool), possibly empty.
    """
    from simplebits_audit import testbeds
    from simplebits_audit.simplification.heads import Decision, probabilities

    shortcut, with_it, without = QUALITY_TESTBEDS[name]
    data = testbeds.load(name, "test", n=pool, seed=SHORTCUT_SEED, variant=with_it)
    clean = testbeds.load(name, "test", n=pool, seed=SHORTCUT_SEED, variant=without)
    with torch.no_grad():
        logits, clean_logits = model(data.images), model(clean.images)
    # Decided = the scene without the shortcut loses the decision, by the rule SimpleBits keeps it by.
    lost = ~Decision.of(logits, None, head=head).kept(probabilities(clean_logits.float(), head))
    decided = lost & data.aux_masks[shortcut].flatten(1).any(1)
    return data.images[decided], data.aux_masks[shortcut][decided]


def quality(args: argparse.Namespace, console: Console) -> dict | None:
    """Quality at the realistic sizes: ``photo-objects`` (128 px, mobilenet_v3_small) and ``radiograph`` (128 px, sigmoid).

    Per testbed, ``--quality N`` test images (seed 11), every map of :data:`QUALITY_METHODS` through
    :func:`~simplebits_audit.jobs.comparison.compare` (the model's prediction explained) plus
    TorchRay's extremal perturbation when installed: localisation AUROC against the object masks
    (radiograph: positive images only). The shortcut: of ``--shortcut-pool`` further scenes, those
    whose prediction the shortcut (stamp / marker) decides (:func:`shortcut_images`), and per map
    the share of them whose shortcut lies in the map's top 5 % (for SimpleBits also the share whose
    returned image keeps at least half the shortcut's box). RISE deletion and insertion AUCs (blur
    reference) say whether each map's order is the model's. For SimpleBits: predictions kept, bits
    kept and WebP size kept. None without ``--quality``.
    """
    if not args.quality:
        return None
    from simplebits_audit import testbeds
    from simplebits_audit.codecs import codec_bits
    from simplebits_audit.jobs.comparison import compare
    from simplebits_audit.metrics import auroc, top_share_hit
    from simplebits_audit.simplification.learned import Simplifier

    out = {}
    for name in args.quality_testbeds.split(","):
        if name not in testbeds.TESTBEDS:
            continue
        data = testbeds.load(name, "test", n=args.quality, seed=QUALITY_SEED)
        model = testbeds.load_classifier(name)
        head = "sigmoid" if name in testbeds.SIGMOID_HEADS else "softmax"
        methods = [m for m in args.quality_methods.split(",") if m != "simplebits_learned" or _has_simplifier(name)]
        options = {"simplebits_learned": {"simplifier": Simplifier.pretrained(name)}} if "simplebits_learned" in methods else {}
        decided, aux = shortcut_images(name, args.shortcut_pool, model, head)
        n = len(data)
        run = {"head": head, "method_options": options, "randomisation": False, "infidelity_samples": 0, "sensitivity_images": 0,
               "seed": QUALITY_SEED}
        comp = compare(model, data.images, methods=methods, masks=data.masks, **run)
        maps, seconds = dict(comp.maps), dict(comp.seconds_per_image)
        # The shortcut's scenes in a second call: one batch of both sets held IG's 50 steps of ~100 images at 128 px (21 GB).
        shortcut = compare(model, decided, methods=methods, **run) if len(decided) else None
        maps = {m: torch.cat([maps[m], shortcut.maps[m]]) if shortcut and m in shortcut.maps else maps[m] for m in maps}
        if _has_torchray() and head == "softmax":
            images = torch.cat([data.images, decided])
            with torch.no_grad():
                pred = model(images).argmax(1)
            started = time.perf_counter()
            maps["extremal"] = _extremal_maps(model, images, pred, args.ep_iter)
            seconds["extremal"] = (time.perf_counter() - started) / len(images)
        localised = data.masks.flatten(1).any(1)
        rows = {}
        for method, m in maps.items():
            scores = comp.per_image.get(method, {})
            rows[method] = {
                "auroc": float(auroc(m[:n][localised], data.masks[localised]).nanmean()),
                # RISE's deletion / insertion (blur reference): whether the map's order is the model's, object or not
                **{k: float(scores[k].double().nanmean()) for k in ("deletion_auc", "insertion_auc") if k in scores},
                "shortcut_top5": float(top_share_hit(m[n:], aux).double().mean()) if len(aux) else math.nan,
                "seconds": seconds.get(method, math.nan),
            }
        for method in ("simplebits", "simplebits_learned"):
            if method in comp.results:
                r = comp.results[method]
                rows[method].update(kept=float(r.kept.double().mean()), bits_kept=float((r.bits_after / r.bits_before).mean()),
                                    webp_kept=float((codec_bits(r.simplified) / codec_bits(r.original)).mean()))
                if shortcut is not None:  # the returned image keeps at least half the shortcut's box (its mask above 0.5)
                    box = shortcut.results[method].mask > 0.5
                    rows[method]["shortcut_kept"] = float(((box & aux).flatten(1).sum(1) >= aux.flatten(1).sum(1) / 2).double().mean())
        out[name] = {"images": n, "localised": int(localised.sum()), "shortcut_pool": args.shortcut_pool,
                     "shortcut_used": len(aux), "methods": rows}
    _print_quality(out, console)
    return out

#: mask grids (cells a side) the cell-size sweep tries; the default rule gives 16 at 128 px
GRID_SWEEP = (8, 16, 32, 64)


def grid_sweep(args: argparse.Namespace, console: Console) -> dict | None:
    """Localisation against mask cell size: SimpleBits with each grid of :data:`GRID_SWEEP` on the
    quality testbeds (``--quality`` test images, seed 11): map AUROC, predictions kept, bits kept.
    None without ``--quality`` or without ``simplebits`` among ``--quality-methods``."""
    if not args.quality or "simplebits" not in args.quality_methods.split(","):
        return None
    from simplebits_audit import simplify, testbeds
    from simplebits_audit.explainers import attribution_map
    from simplebits_audit.metrics import auroc

    out: dict = {}
    for name in args.quality_testbeds.split(","):
        if name not in testbeds.TESTBEDS:
            continue
        data = testbeds.load(name, "test", n=args.quality, seed=QUALITY_SEED)
        model = testbeds.load_classifier(name)
        head = "sigmoid" if name in testbeds.SIGMOID_HEADS else "softmax"
        target = torch.zeros(len(data), dtype=torch.long) if head == "sigmoid" else None
        localised = data.masks.flatten(1).any(1)
        table = Table(title=f"{name}: SimpleBits' mask against its grid ({len(data)} test images, {data.images.shape[-1]} px)")
        for col in ("grid", "cell px", "AUROC^", "kept^", "bits kept v", "s/img"):
            table.add_column(col, justify="right")
        for grid in GRID_SWEEP:
            started = time.perf_counter()
            r = simplify(model, data.images, target, head=head, mask_size=grid)
            seconds = (time.perf_counter() - started) / len(data)
            region = attribution_map(r, "mask")  # the map SimpleBits returns (the mask, its ties ranked)
            row = {"auroc": float(auroc(region[localised], data.masks[localised]).nanmean()), "kept": float(r.kept.double().mean()),
                   "bits_kept": float((r.bits_after / r.bits_before).mean()), "seconds": seconds}
            out.setdefault(name, {})[grid] = row
            table.add_row(str(grid), f"{data.images.shape[-1] / grid:.0f}", f"{row['auroc']:.3f}", f"{row['kept']:.3f}",
                          f"{row['bits_kept']:.3f}", f"{seconds:.3g}")
        console.print(table)
    return out


def _has_simplifier(testbed: str) -> bool:
    """Whether a learned simplifier ships for ``testbed``'s classifier."""
    from importlib import resources

    from simplebits_audit import testbeds

    return (resources.files(testbeds) / "weights" / f"simplifier-{testbed}.pt").is_file()


def _print_quality(out: dict, console: Console) -> None:
    for name, block in out.items():
        table = Table(title=f"quality on {name}: {block['images']} test images (seed {QUALITY_SEED}), {block['localised']} with an "
                            f"object mask; shortcut: the {block['shortcut_used']} of {block['shortcut_pool']} further scenes "
                            "whose prediction changes without it")
        for col in ("method", "AUROC^", "shortcut in top 5 %^", "shortcut kept^", "deletion v", "insertion ^", "s/img", "kept^",
                    "bits kept v", "WebP kept v"):
            table.add_column(col, justify="right")
        for method, row in block["methods"].items():
            kept_shortcut = f"{row['shortcut_kept']:.2f}" if "shortcut_kept" in row else ""
            table.add_row(method, f"{row['auroc']:.3f}", f"{row['shortcut_top5']:.2f}", kept_shortcut,
                          *(f"{row[k]:.3f}" if k in row else "" for k in ("deletion_auc", "insertion_auc")), f"{row['seconds']:.3g}",
                          *(f"{row[k]:.3f}" if k in row else "" for k in ("kept", "bits_kept", "webp_kept")))
        console.print(table)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated square sizes in pixels")
    parser.add_argument("--cells", help="comma-separated MODEL:SIZE pairs instead of --models x --sizes (e.g. resnet50:224,vit_b_16:224)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()), help="torch threads per measurement")
    parser.add_argument("--batch", type=int, default=1, help="images per call (times are per image)")
    parser.add_argument("--ig-batch", type=int, default=10, help="internal_batch_size of the memory-bounded IG")
    parser.add_argument("--ep-iter", type=int, default=None, help="TorchRay extremal perturbation's max_iter (default: TorchRay's own)")
    parser.add_argument("--cell-timeout", type=float, default=None, help="seconds one measurement may run (then reported as an error)")
    parser.add_argument("--max-memory-gb", type=float, default=None,
                        help="refuse a measurement more private memory than this (CPU; shown as OOM) so a shared machine survives")
    parser.add_argument("--tables-from", type=Path, nargs="+",
                        help="print the tables of (partial) --out JSON files and stop; a cell in a later file replaces the same cell")
    parser.add_argument("--markdown", action="store_true", help="also print the time and memory tables as Markdown")
    parser.add_argument("--quick", action="store_true", help="resnet18 at 32 px, tiny settings: checks the script, not a measurement")
    parser.add_argument("--quality", type=int, default=0, metavar="N",
                        help="also score maps on N test images of photo-objects and radiograph (0: skip)")
    parser.add_argument("--only-quality", action="store_true", help="skip the cost cells (with --quality)")
    parser.add_argument("--quality-methods", default=",".join(QUALITY_METHODS), help="comma-separated maps of the quality section, "
                        f"from {', '.join(QUALITY_METHODS)} (default: all)")
    parser.add_argument("--quality-testbeds", default=",".join(QUALITY_TESTBEDS), help="comma-separated, from "
                        f"{', '.join(QUALITY_TESTBEDS)}")
    parser.add_argument("--shortcut-pool", type=int, default=256, metavar="N",
                        help="scenes drawn with and without the shortcut; those whose prediction it decides score the maps' top 5 %%")
    parser.add_argument("--out", type=Path, help="write the raw numbers as JSON here (atomically)")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "SIZE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        model, size, method = args.one
        print(json.dumps(measure(model, int(size), method, args)))
        return None
    console = Console(width=220)
    if args.tables_from:
        runs = [json.loads(path.read_text()) for path in args.tables_from]
        results, by_cell = runs[0], {}
        for run in runs:  # each cell keeps its own run's IG: every ratio stays within one run
            by_cell.update({(c["model"], c["size"]): c for c in run["cells"]})
        results["cells"] = sorted(by_cell.values(), key=lambda c: (MODELS.index(c["model"]), c["size"]))  # the scaling order
        ratios(results)
        results["targets"] = targets(results)
        print_tables(results, console)
        if args.markdown:
            print(markdown_tables(results))
        for run in runs:
            console.print(f"command: {run['command']}  (load average {run.get('load_average_start')} -> {run.get('load_average_end')})")
        return results
    models = [m for m in args.models.split(",") if m]
    methods = [m for m in args.methods.split(",") if m]
    quality_testbeds = [t for t in args.quality_testbeds.split(",") if t]
    for name, values, allowed in (("models", models, MODELS), ("methods", methods, METHODS),
                                  ("quality-testbeds", quality_testbeds, tuple(QUALITY_TESTBEDS))):
        unknown = [v for v in values if v not in allowed]
        if unknown or not values:
            parser.error(f"--{name}: unknown {unknown or 'none given'}; expected some of {', '.join(allowed)}")
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        parser.error(f"--sizes: expected comma-separated integers, got {args.sizes!r}")
    if args.quick:
        models, sizes, args.ep_iter = ["resnet18"], [32], 2
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device: cuda requested but torch.cuda.is_available() is False")
    for name in ("threads", "batch", "ig_batch", "ep_iter"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected at least 1, got {getattr(args, name)}")
    grid = cells(models, sizes)
    if args.cells and not args.quick:
        try:
            grid = [(m, int(size)) for m, size in (c.split(":") for c in args.cells.split(",") if c)]
        except ValueError:
            parser.error(f"--cells: expected MODEL:SIZE pairs, got {args.cells!r}")
        bad = [f"{m}:{size}" for m, size in grid if (m, size) not in cells([m] if m in MODELS else [], [size])]
        if bad:
            parser.error(f"--cells: {bad} not measurable; models {', '.join(MODELS)}, ViT-B/16 at 224 only, the 1-channel CNN >= 128")
    if not grid:
        parser.error(f"--models, --sizes: no cell ({models} x {sizes}); ViT-B/16 takes 224 only, the 1-channel CNN >= 128")
    command = "python benchmarks/scale.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    results = {"command": command.strip(), "device": args.device, "threads": args.threads, "batch": args.batch, "ig_batch": args.ig_batch,
               "ep_iter": args.ep_iter or _extremal_default_iterations(), "torch": torch.__version__, "torchray": _has_torchray(),
               "methods": methods, "max_memory_gb": args.max_memory_gb, "load_average_start": _load(), "cells": []}
    if not args.only_quality:
        cost(grid, methods, results, args, console)
    torch.set_num_threads(args.threads)  # the quality part runs in this process
    results["quality"] = quality(args, console)
    results["grid_sweep"] = grid_sweep(args, console)
    console.print(f"command: {results['command']}")
    if args.out:
        _save(results, args.out)
    return results


def cost(grid: list[tuple[str, int]], methods: list[str], results: dict, args: argparse.Namespace, console: Console) -> None:
    """Measure every (model, size) cell of ``grid`` with ``methods`` (one subprocess each) into ``results``, and print the tables."""
    console.print(f"torch {torch.__version__}, device {args.device}, {args.threads} threads, batch {args.batch}, "
                  f"torchray {'installed' if results['torchray'] else 'not installed'}; {len(grid)} cells x {len(methods)} methods")
    for model, size in grid:
        cell = {"model": model, "size": size, "methods": {}}
        for method in methods:
            cell["methods"][method] = run_child(model, size, method, args)
            r = cell["methods"][method]
            console.print(f"  {model} {size} px {method}: " + (
                f"{r['seconds_per_image']:.3g} s/img, +{r['extra_mb']:.0f} MB" if "seconds_per_image" in r else str(r)))
        results["cells"].append(cell)
        if args.out:  # partial results survive a long run's interruption
            _save(results, args.out)
    results["load_average_end"] = _load()
    ratios(results)
    results["targets"] = targets(results)
    print_tables(results, console)
    console.print(f"load average (1 min) at start {results['load_average_start']}, at end {results['load_average_end']} "
                  f"({os.cpu_count()} CPUs; other jobs share them)")
    if args.markdown:
        print(markdown_tables(results))


def _load() -> float | None:
    with contextlib.suppress(OSError, AttributeError):
        return round(os.getloadavg()[0], 2)
    return None


def _has_torchray() -> bool:
    return importlib.util.find_spec("torchray") is not None


def _extremal_default_iterations() -> int | None:
    """TorchRay's own default ``max_iter`` (read from its signature), or None without TorchRay."""
    if not _has_torchray():
        return None
    from torchray.attribution.extremal_perturbation import extremal_perturbation

    return inspect.signature(extremal_perturbation).parameters["max_iter"].default


def _save(results: dict, path: Path) -> None:
    from simplebits_audit._io import save_json

    save_json(results, path)


if __name__ == "__main__":
    main()
