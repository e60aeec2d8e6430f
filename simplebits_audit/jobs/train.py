"""The train job: training with simplification over a sweep of bits budgets (or lambdas), the trade-off curve and its report.

Where the images come from: the same sources as the audit (ImageFolder, CSV of ``path,label``,
testbed name). A testbed trains on its train split and validates on its test split, whose
ground-truth masks give the share of the retained bits inside the evidence; a folder or CSV holds
out every ``1/val_share``-th image. A multi-label testbed (``digits-stripes``: a row of labels per
image) trains one sigmoid logit per label (:func:`~simplebits_audit.training.joint.check_labels`).
What trains: one classifier (``--arch``) and one simplifier per
budget or lambda (:func:`~simplebits_audit.training.tradeoff`). Where the record goes (the
layout is :mod:`~simplebits_audit.results`)::

    OUT/train.json, tradeoff.json, examples.npz, report.html, budget-<b>/{classifier,simplifier}.pt

Rerunning the same command resumes: finished runs are reloaded, an interrupted one continues
from its checkpoint. Under ``torchrun`` each run trains data-parallel over the processes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import save_json
from ..codecs import codec_bits, to_uint8_images
from ..estimators import BitEstimator, resolve_estimator
from ..metrics.localisation import relevance_mass
from ..models import build_architecture, check_classifier_output
from ..preprocessing import Preprocessing
from ..results import TRAIN_SETTINGS_FILE, strength_name, write_tradeoff
from ..simplification.heads import head_of_labels
from ..simplification.mask import resolve_reference
from ..training.data import data_fingerprint
from ..training.joint import JOINT_DEFAULTS, JOINT_SIMPLIFIER, Tradeoff, paired_difference, tradeoff
from .checks import check_out_dir, check_resume
from .distributed import join_world
from .options import RunOptions, TrainOptions, take_options
from .sources import hold_out, load_labelled, open_source

#: Validation images of a testbed (its test split) and the most held out of a folder or CSV.
VAL_IMAGES = 500
#: Settings that must agree for a rerun to resume (the budgets or lambdas may change: finished runs are reused, new ones trained).
RESUME_SETTINGS = ("data", "arch", *JOINT_DEFAULTS, "reference", "estimator", "seed", "val_share", "testbed_n", "val_n", "preprocessing")


def bits_inside_mask(bits_map: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """How much of the images' bits lie on their ground-truth masks, over the images with a mask.

    ``bits_map`` (B, 1, H, W) and ``masks`` (B, 1, H, W) bool. Returns ``bits_inside_mask`` (mean
    share of each image's bits inside its mask, Arras et al.'s relevance mass), ``mask_share`` (the
    masks' mean share of the image) and ``inside_ratio`` (their quotient: 1 = no preference).
    """
    inside = relevance_mass(bits_map, masks)
    scored = ~torch.isnan(inside)  # images with a mask (and bits): both means over the same images
    share = float(masks[scored].float().flatten(1).mean(1).mean())
    inside = float(inside[scored].mean())
    return {"bits_inside_mask": inside, "mask_share": share, "inside_ratio": inside / share}


@torch.no_grad()
def curve_points(
    curve: Tradeoff, val_images: torch.Tensor, val_masks: torch.Tensor | None, estimator: BitEstimator, n_examples: int = 8,
    device: str | torch.device = "cpu", val_labels: torch.Tensor | None = None,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The curve's points with the outside checks added, and uint8 examples per run.

    Each point gains ``webp_kept`` and ``jxl_kept`` (mean per-image ratio of the simplified image's
    lossless WebP / JPEG-XL size to the original's) and, with masks, ``bits_inside_mask`` (mean share of the simplified
    image's bits, under the estimator's bits map, inside the ground-truth mask), ``mask_share``
    (the mask's mean share of the image) and ``inside_ratio`` (their quotient: 1 = no preference).
    With ``val_labels`` (N,) or (N, K), each also gains ``val_delta_se``: the standard error of its
    accuracy's difference from the reference run's (paired, over the same validation images; a
    share, like the accuracy): where the two runs disagree on a fifth of 500 images it is about
    0.02, the size of the 2-point comparison the report makes.
    """
    original = (val_images * 255).round() / 255
    webp_before, jxl_before = codec_bits(original), codec_bits(original, "jxl")
    examples = {"original": np.stack(to_uint8_images(original[:n_examples]))}
    right = {}
    if val_labels is not None and curve.points:  # per image, for the paired standard errors
        right = {name: result.score(original, val_labels, estimator)["accuracy_simplified"] for name, result in curve.results.items()}
        reference = curve.reference()
        ref_right = right[strength_name(reference["lam"], reference["budget"])]
    points = []
    for point, (name, result) in zip(curve.points, curve.results.items()):
        simplified = result.simplify(original).cpu()
        extra: dict[str, Any] = {"webp_kept": float((codec_bits(simplified) / webp_before).mean()),
                                 "jxl_kept": float((codec_bits(simplified, "jxl") / jxl_before).mean())}
        if right and len(original) > 1:
            extra["val_delta_se"] = paired_difference(right[name], ref_right)[1]
        if val_masks is not None and bool(val_masks.any()):
            bits_map = torch.cat([estimator.bits_map(chunk.to(device)).cpu() for chunk in simplified.split(256)])
            extra.update(bits_inside_mask(bits_map, val_masks))
        points.append({**point, **extra})
        examples[name] = np.stack(to_uint8_images(simplified[:n_examples]))
    return points, examples


def train_job(
    data: str | Path,
    out: str | Path,
    *,
    training: TrainOptions | None = None,
    run: RunOptions | None = None,
    preprocessing: Preprocessing | None = None,
    estimator: str | None = None,
    val_share: float = 0.1,
    testbed_n: int | None = None,
    val_n: int | None = None,
    n_examples: int = 8,
    **options: Any,
) -> dict[str, Any]:
    """Train a classifier with simplification once per budget (or lambda) on ``data``; write models, ``tradeoff.json`` and a report.

    Parameters
    ----------
    data : path or testbed name
        An ImageFolder directory or CSV of ``path,label`` (every image needs a label; images must
        share one size, or give ``preprocessing`` a size), or a testbed name (train split to train,
        test split to validate, with its masks).
    out : path
        The output folder (see the module docstring); rerunning with the same settings resumes.
    training : TrainOptions, optional
        The classifier's architecture, the budgets (or lambdas) and the joint-training settings (checked before
        any image is read).
    run : RunOptions, optional
        Device (default: the CPU; under torchrun with CUDA, each rank's ``cuda:LOCAL_RANK``), seed, progress.
    preprocessing : Preprocessing, optional
        Resize / crop of the images and the normalisation the trained classifier takes.
    estimator : str, optional
        The bit estimator (name or checkpoint; default: the package default).
    val_share : float
        Share of a folder or CSV held out for validation (every ``1/val_share``-th image, at most
        ``val_n`` or :data:`VAL_IMAGES`).
    testbed_n, val_n : int, optional
        Training / validation images of a testbed (defaults: the testbed's train size, :data:`VAL_IMAGES`).
    n_examples : int
        Validation images shown simplified per run in the report.
    **options
        Fields of the training and run options, overriding the objects' (e.g. ``epochs=2``, ``seed=3``).

    Returns
    -------
    dict
        The ``tradeoff.json`` record: settings, one point per run (validation accuracy on
        simplified and original images, bits kept, WebP and JPEG-XL kept, bits inside the mask), the reference
        run's name and the simplest run within 2 points of its accuracy (names such as ``budget-0.3``).
    """
    from ..report.tradeoff import write_tradeoff_report

    training, run = take_options("train_job", options, (TrainOptions, training), (RunOptions, run))
    arch, joint_settings, seed = training.arch, training.settings(), run.seed
    lams, budgets = (None if v is None else list(v) for v in (training.lams, training.budgets))
    if not 0 < val_share < 1:
        raise ValueError(f"val_share: expected a share in (0, 1), got {val_share}")
    if n_examples < 0:
        raise ValueError(f"n_examples: expected >= 0, got {n_examples}")
    if val_n is not None and val_n < 1:  # 0 once meant the default, silently
        raise ValueError(f"val_n: expected at least 1 validation image, got {val_n}")
    val_images = VAL_IMAGES if val_n is None else val_n
    out = check_out_dir(out, "train")
    preprocessing = preprocessing or Preprocessing()
    from .. import testbeds

    name = str(data).removeprefix("testbed:")
    testbed_data = name in testbeds.list_testbeds(head=None) and not Path(str(data)).exists()  # every head: also sigmoid testbeds
    if testbed_data:
        train_source = open_source(name, testbed_n=testbed_n, seed=seed, split="train", multilabel=True)
        val_source = open_source(name, testbed_n=val_images, seed=seed + 1, split="test", multilabel=True)
        train_items, val_items = list(train_source.items), list(val_source.items)
    else:
        train_source = val_source = open_source(data, preprocessing=preprocessing, seed=seed, sorted_names=True)
        unlabelled = sum(it.label is None for it in train_source.items)
        if unlabelled:
            raise ValueError(f"data: training needs a label for every image; {unlabelled} of {train_source.name!r} have none")
        train_items, val_items = hold_out(train_source.items, val_share, val_images)
    class_names = train_source.class_names
    settings = {
        "data": str(data), "arch": arch, "budgets": budgets, "lams": lams, **joint_settings, "reference": training.reference,
        "estimator": estimator or "default",
        "seed": seed, "val_share": val_share, "testbed_n": testbed_n, "val_n": val_n, "preprocessing": dataclasses.asdict(preprocessing),
        "class_names": class_names,
    }
    check_resume(out / TRAIN_SETTINGS_FILE, settings, [k for k in RESUME_SETTINGS if k != "reference"], "a training run")
    # Everything is checked before training: the data loads, the architecture runs on it.
    train_x, train_y, _, skipped_train = load_labelled(train_source, train_items, "data")
    val_x, val_y, val_masks, skipped_val = load_labelled(val_source, val_items, "data")
    # The reference for this data's size ("auto": the mosaic from 128 px), so that the folder names what its runs
    # blend towards; folders written before it was resolved saved None for the flat mean, the default then.
    settings["reference"] = resolve_reference(training.reference or JOINT_SIMPLIFIER["reference"], tuple(train_x.shape))
    # What was read, not only where from: a folder whose images changed is refused, not resumed with its old runs
    # (folders written before the fingerprint was recorded are taken as they are).
    settings["data_fingerprint"] = f"{data_fingerprint(train_x, train_y)[:16]}-{data_fingerprint(val_x, val_y)[:16]}"
    check_resume(out / TRAIN_SETTINGS_FILE, settings, ["reference", "data_fingerprint"], "a training run",
                 saved_none={"reference": "mean", "data_fingerprint": settings["data_fingerprint"]})
    # Label rows (a multi-label testbed): one sigmoid logit per label; class indices: one softmax logit per class.
    n_classes = train_y.shape[1] if train_y.dim() == 2 else max(len(class_names or []), int(train_y.max()) + 1, int(val_y.max()) + 1)
    if n_classes < 2:  # else the architecture's one output is blamed on --arch
        raise ValueError(f"data: {train_source.name!r} has one class; training a classifier needs at least two")
    channels, size = train_x.shape[1], train_x.shape[-1]
    probe = build_architecture(arch, n_classes, channels, size)
    check_classifier_output(probe.eval(), train_x[:2], name="arch", images="data")
    world, device = join_world(run.device or "cpu")
    try:
        est = resolve_estimator(estimator, device=device)
        if world.is_main:
            out.mkdir(parents=True, exist_ok=True)
            save_json(settings, out / TRAIN_SETTINGS_FILE)  # the runs may grow between calls: each is checked by its own run
        world.barrier()
        curve = tradeoff(
            lambda: build_architecture(arch, n_classes, channels, size), (train_x, train_y), lams, budgets=budgets, val_data=(val_x, val_y),
            directory=out, seed=seed, show_progress=run.show_progress, estimator=est, **joint_settings,
            simplifier_config={"reference": settings["reference"]},
            normalization=preprocessing.normalization, device=device,
            # A testbed names its split: radiograph runs before 2026-12-01 trained on its test split under the same words.
            data_description=f"{train_source.name}{' train split' if testbed_data else ''}: {len(train_x)} training images, seed {seed}",
        )
        record: dict[str, Any] = {}
        if world.is_main:
            points, examples = curve_points(curve, val_x, val_masks, est, n_examples, device, val_y)
            reference = curve.reference()
            best = curve.simplest_within(0.02)
            record = {
                "settings": {**settings, "training_images": len(train_x), "validation_images": len(val_x),
                             "skipped_images": len(skipped_train) + len(skipped_val), "n_classes": n_classes, "processes": world.size,
                             "head": head_of_labels(train_y, n_classes),
                             "estimator_name": est.name},
                "points": points, "reference": strength_name(reference["lam"], reference["budget"]) if reference else None,
                "simplest_within_2pt": strength_name(best["lam"], best["budget"]) if best else None,
                "has_masks": val_masks is not None and bool(val_masks.any()),
            }
            write_tradeoff(out, record, examples)
            write_tradeoff_report(out)
        world.barrier()
    finally:
        world.close()
    return record


__all__ = ["RESUME_SETTINGS", "VAL_IMAGES", "curve_points", "train_job"]
