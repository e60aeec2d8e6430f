"""Explain a few predictions end to end: images in, ``results.json`` + PNGs + ``report.html`` out.

:func:`explain_images` is what ``simplebits explain`` and ``simplebits demo`` run. Its images come
from files (or a tensor) held in memory; its records go into one ``results.json``. Everything the
user gave is checked before any work starts (:func:`~simplebits_audit.jobs.checks.preflight`);
the results file and the report are written last and atomically, so a failed run never leaves a
partial report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._helpers import TargetLike
from .._io import atomic_write
from .._progress import JobProgress
from .._validation import check_pixel_images
from ..results import REPORT_FILE, explain_image_folders, prune_image_folders, read_explain_results, safe_stem, write_explain_results
from ..simplification.learned import load_simplifier
from .answers import label_names
from .checks import check_out_dir, declared_class_names, head_options, preflight
from .options import ExplainOptions, ModelOptions, RunOptions, take_options
from .pipeline import explain_batch, write_batch
from .sources import load_image_arguments


@dataclass
class ExplainOutput:
    """What :func:`explain_images` wrote and measured."""

    records: list[dict[str, Any]]
    results_path: Path
    report_path: Path
    seconds_per_image: dict[str, float] = field(default_factory=dict)


def explain_images(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: Sequence[str | Path] | torch.Tensor,
    out: str | Path,
    *,
    model_options: ModelOptions | None = None,
    explain_options: ExplainOptions | None = None,
    run: RunOptions | None = None,
    labels: Sequence[int | None] | None = None,
    names: Sequence[str] | None = None,
    target: TargetLike = None,
    target_name: str | None = None,
    top_k: int = 5,
    title: str = "SimpleBits explanations",
    **options: Any,
) -> ExplainOutput:
    """Simplify and explain images, compute baselines beside them, write results and a report.

    Parameters
    ----------
    model : callable
        The classifier: model-space images (B, C, H, W) -> logits (B, K) (K = 1 with
        ``head="sigmoid"``: a binary classifier). Never modified.
    images : sequence of paths, or Tensor (N, C, H, W)
        Image files (read with the model options' ``preprocessing``) and testbed images
        (``"testbed:NAME:INDEX"``, image INDEX of the test split, with its label;
        :func:`~simplebits_audit.jobs.sources.load_image_arguments`), or pixel images in [0, 1].
    out : path
        Output folder: ``results.json``, ``report.html``, ``images/<id>/*.png`` and ``arrays.npz``.
    model_options : ModelOptions, optional
        Preprocessing, class names, output head and threshold, the model's name in the report.
        Under ``head="sigmoid"`` each record lists every label's probability before and after and
        which labels are on (probability >= ``threshold``), and a single-logit model's prediction
        is its decision (:mod:`~simplebits_audit.jobs.answers`).
    explain_options : ExplainOptions, optional
        The explainer, its map and engine options, a learned simplifier, the bit estimator,
        baselines and their options, the batch size.
    run : RunOptions, optional
        Device (the model's by default; if given, it must be the model's), seed (seeds every
        explainer), progress.
    labels : sequence of int or None, optional
        True classes, when known (shown beside the prediction; 0 or 1 for a single-logit model); None
        for an image whose class is unknown. Default: testbed images' own labels, when the model's
        class names are that testbed's (files beside them: None).
    names : sequence of str, optional
        Display names (default: the file names, or ``image 0``, ...).
    target, target_name : optional
        The class to explain (index, one per image, or a class name). Default: the prediction.
    top_k : int
        Classes each record lists with their probabilities.
    title : str
        The report's title.
    **options
        Fields of the three option groups, overriding the objects' (e.g. ``head="sigmoid"``,
        ``simplify_options={"steps": 10}``, ``seed=3``); another name is a ``TypeError``.

    Returns
    -------
    ExplainOutput
    """
    from ..report.explanation import render_explanation_report

    groups = (ModelOptions, model_options), (ExplainOptions, explain_options), (RunOptions, run)
    mo, eo, run = take_options("explain_images", options, *groups)
    out = check_out_dir(out, "explain")
    preprocessing, class_names, head, threshold = mo.preprocessing, declared_class_names(model, mo.class_names), mo.head, mo.threshold
    explainer, baselines, batch_size, estimator, seed = eo.explainer, eo.baselines, eo.batch_size, eo.estimator, run.seed
    if isinstance(images, torch.Tensor):
        check_pixel_images(images, "images")
        pixels, paths = images.detach().float().cpu(), [None] * len(images)
        names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
    else:
        read = load_image_arguments(images, preprocessing, name="images")
        pixels, paths = read.pixels, read.paths
        names = list(names) if names is not None else read.names
        # Testbed images know their class, in the model's classes when the model is that testbed's (files: unknown, None).
        known = any(v is not None for v in read.labels)
        if labels is None and known and read.classes is not None and read.classes == list(class_names or []):
            labels = read.labels
    n = len(pixels)
    if len(names) != n or (labels is not None and len(labels) != n):
        raise ValueError(f"names/labels: expected {n} values, one per image")
    options = eo.method_options()
    if eo.simplifier is not None:
        options[explainer]["simplifier"] = load_simplifier(eo.simplifier, forward_func=model)
    options = head_options([explainer, *baselines], options, head, threshold)
    checked = preflight(
        model, pixels, preprocessing=preprocessing, device=run.device, class_names=class_names, labels=labels, target=target,
        target_name=target_name, explainer=explainer, methods=baselines, method_options=options, estimator=estimator,
        head=head, threshold=threshold,
    )

    seconds = dict.fromkeys(checked.methods, 0.0)
    records: list[dict[str, Any]] = []
    with JobProgress(disable=not run.show_progress) as progress:
        task = progress.add_task("explaining", total=n)
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            x = preprocessing.to_model(pixels[sl].to(checked.device))
            t = None if checked.targets is None else checked.targets[sl].to(checked.device)
            batch = explain_batch(model, x, t, checked.methods,
                context=checked.context(seed), method_options=options, n_classes=checked.n_classes)
            for name, spent in batch.seconds().items():
                seconds[name] += spent
            ids = [f"{i:03d}-{safe_stem(names[i])}" for i in range(start, start + len(x))]
            records += write_batch(
                out, batch, folders=ids, ids=ids, names=names[sl], class_names=class_names, top_k=top_k,
                labels=None if labels is None else [None if v is None else int(v) for v in labels[sl]], paths=paths[sl], head=head,
                threshold=threshold,
            )
            progress.advance(task, len(x))

    per_image = {k: v / n for k, v in seconds.items()}
    settings = {
        "title": title,
        "model": mo.model_name or type(model).__name__,
        "estimator": batch.result.settings.get("estimator", str(estimator)),
        "attribution": eo.attribution,
        "maps": list(batch.maps()),
        "baselines": checked.methods[1:],
        # A softmax run's settings read as they did before the head existed (the head is its default).
        "simplify": {k: v for k, v in batch.result.settings.items()
                     if isinstance(v, (int, float, str, bool)) and (head != "softmax" or k not in ("head", "threshold"))},
        "preprocessing": asdict(preprocessing),
        "class_names": list(class_names) if class_names is not None else None,
        "seed": seed,
        "seconds_per_image": per_image,
    }
    if head != "softmax":
        settings.update({"head": head, "threshold": float(threshold), "label_names": label_names(class_names, checked.n_classes)})
    # Render first: if that fails, neither the results nor the report of an earlier run are replaced.
    html_text = render_explanation_report(out, records, settings)
    earlier = _earlier_image_folders(out)
    results_path = write_explain_results(out, settings, records)
    report_path = atomic_write(out / REPORT_FILE, lambda tmp: tmp.write_text(html_text, encoding="utf-8"))
    # An earlier run into the same folder: its images that this one's results do not list would be stale.
    prune_image_folders(out, earlier, explain_image_folders(records))
    return ExplainOutput(records, results_path, report_path, per_image)


def _earlier_image_folders(out: Path) -> set[str]:
    """The image folders an earlier explain run into ``out`` listed (none if there was none, or it cannot be read)."""
    try:
        return explain_image_folders(read_explain_results(out)[1])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


__all__ = ["ExplainOutput", "explain_images"]
