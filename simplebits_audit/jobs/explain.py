"""Explain a few predictions end to end: images in, ``results.json`` + PNGs + ``report.html`` out.

:func:`explain_images` is what ``simplebits explain`` and ``simplebits demo`` run. Its images come
from files (or a tensor) held in memory; its records go into one ``results.json``. Everything the
user gave is checked before any work starts (:func:`~simplebits_audit.jobs.preflight.preflight`);
the results file and the report are written last and atomically, so a failed run never leaves a
partial report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from .._helpers import TargetLike
from .._io import atomic_write
from .._validation import check_pixel_images
from ..estimators import BitEstimator
from ..explainers import ATTRIBUTIONS, SIMPLEBITS
from ..preprocessing import Preprocessing, load_images
from ..results import REPORT_FILE, safe_stem, write_explain_results
from ..simplification import Simplifier
from ..simplification.learned import load_simplifier
from .answers import label_names
from .information import check_engine_attribution
from .pipeline import explain_batch, write_batch
from .preflight import head_options, preflight


@dataclass
class ExplainOutput:
    """What :func:`explain_images` wrote and measured."""

    records: list[dict[str, Any]]
    results_path: Path
    report_path: Path
    seconds_per_image: dict[str, float] = field(default_factory=dict)


def check_out_dir(out: str | Path) -> Path:
    """``out`` as a Path; ``ValueError`` if it exists and is not a folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {str(out)!r} exists and is not a folder")
    return out


def explain_images(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: Sequence[str | Path] | torch.Tensor,
    out: str | Path,
    *,
    preprocessing: Preprocessing | None = None,
    class_names: Sequence[str] | None = None,
    labels: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    target: TargetLike = None,
    target_name: str | None = None,
    baselines: Sequence[str] = (),
    estimator: BitEstimator | str | None = None,
    attribution: str = "auto",
    explainer: str = SIMPLEBITS,
    batch_size: int = 16,
    top_k: int = 5,
    title: str = "SimpleBits explanations",
    model_name: str = "",
    device: str | torch.device | None = None,
    seed: int = 0,
    show_progress: bool = False,
    simplify_options: dict[str, Any] | None = None,
    baseline_options: dict[str, dict[str, Any]] | None = None,
    simplifier: Simplifier | str | Path | None = None,
    head: str = "softmax",
    threshold: float = 0.5,
) -> ExplainOutput:
    """Simplify and explain images, compute baselines beside them, write results and a report.

    Parameters
    ----------
    model : callable
        The classifier: model-space images (B, C, H, W) -> logits (B, K) (K = 1 with
        ``head="sigmoid"``: a binary classifier). Never modified.
    images : sequence of paths, or Tensor (N, C, H, W)
        Image files (read with ``preprocessing``), or pixel images in [0, 1].
    out : path
        Output folder: ``results.json``, ``report.html``, ``images/<id>/*.png`` and ``arrays.npz``.
    preprocessing : Preprocessing, optional
        Resize / crop / normalisation the model expects (default: none).
    class_names : sequence of str, optional
        One name per class (length K); a single-logit model: its label's name, or the names of
        its two decisions (e.g. ``["negative", "positive"]``).
    labels : sequence of int, optional
        True classes, when known (shown beside the prediction; 0 or 1 for a single-logit model).
    names : sequence of str, optional
        Display names (default: the file names, or ``image 0``, ...).
    target, target_name : optional
        The class to explain (index, one per image, or a class name). Default: the prediction.
    baselines : sequence of str
        Explainers of :mod:`simplebits_audit.explainers` to compute beside the primary one.
    estimator : BitEstimator or str, optional
        Bit estimator (default: the package default).
    attribution : str
        The SimpleBits map (see :data:`simplebits_audit.explainers.ATTRIBUTIONS`).
    explainer : str
        The primary explainer (one that simplifies; default ``"simplebits"``): its simplification
        gives the records.
    batch_size : int
        Images simplified together.
    device : str or torch.device, optional
        Where the job runs: the model's device by default; if given, it must be the model's.
    seed : int
        Seeds every explainer.
    simplify_options : dict, optional
        Options of the primary explainer (``steps``, ``objective``, ...; see :func:`simplebits_audit.simplify`).
    baseline_options : dict name -> dict, optional
        Options of the baselines, e.g. ``{"gradcam": {"layer": "layer4"}}`` (checked before any work).
    simplifier : Simplifier or path, optional
        Explain with this learned simplifier (one forward pass per image) instead of the per-image engine.
    head : {"softmax", "sigmoid"}
        The model's output head: a softmax over classes, or one sigmoid per label (binary with one
        logit, or multi-label). Under ``"sigmoid"`` each record lists every label's probability
        before and after and which labels are on (probability >= ``threshold``), and a single-logit
        model's prediction is its decision (:mod:`~simplebits_audit.jobs.answers`).
    threshold : float
        The sigmoid head's "on" probability.

    Returns
    -------
    ExplainOutput
    """
    from ..report.explanation import render_explanation_report

    out = check_out_dir(out)
    if attribution not in ATTRIBUTIONS:
        raise ValueError(f"attribution: expected one of {ATTRIBUTIONS}, got {attribution!r}")
    check_engine_attribution(attribution, simplify_options, simplifier)
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive number, got {batch_size}")
    preprocessing = preprocessing or Preprocessing()
    if isinstance(images, torch.Tensor):
        check_pixel_images(images, "images")
        pixels, paths = images.detach().float().cpu(), [None] * len(images)
        names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
    else:
        paths = [str(p) for p in images]
        pixels = load_images(paths, preprocessing, name="images")
        names = list(names) if names is not None else [Path(p).name for p in paths]
    n = len(pixels)
    if len(names) != n or (labels is not None and len(labels) != n):
        raise ValueError(f"names/labels: expected {n} values, one per image")
    options = {**{k: dict(v) for k, v in (baseline_options or {}).items()}, explainer: {"attribution": attribution, **(simplify_options or {})}}
    if simplifier is not None:
        options[explainer]["simplifier"] = load_simplifier(simplifier, forward_func=model)
    options = head_options([explainer, *baselines], options, head, threshold)
    checked = preflight(
        model, pixels, preprocessing=preprocessing, device=device, class_names=class_names, labels=labels, target=target,
        target_name=target_name, explainer=explainer, methods=baselines, method_options=options, estimator=estimator,
        head=head, threshold=threshold,
    )

    seconds = dict.fromkeys(checked.methods, 0.0)
    records: list[dict[str, Any]] = []
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("explaining", total=n)
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            x = preprocessing.to_model(pixels[sl].to(checked.device))
            t = None if checked.targets is None else checked.targets[sl].to(checked.device)
            batch = explain_batch(model, x, t, checked.methods, context=checked.context(seed), method_options=options, n_classes=checked.n_classes)
            for name, spent in batch.seconds().items():
                seconds[name] += spent
            ids = [f"{i:03d}-{safe_stem(names[i])}" for i in range(start, start + len(x))]
            records += write_batch(
                out, batch, folders=ids, ids=ids, names=names[sl], class_names=class_names, top_k=top_k,
                labels=None if labels is None else [int(v) for v in labels[sl]], paths=paths[sl], head=head, threshold=threshold,
            )
            progress.advance(task, len(x))

    per_image = {k: v / n for k, v in seconds.items()}
    settings = {
        "title": title,
        "model": model_name or type(model).__name__,
        "estimator": batch.result.settings.get("estimator", str(estimator)),
        "attribution": attribution,
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
    results_path = write_explain_results(out, settings, records)
    report_path = atomic_write(out / REPORT_FILE, lambda tmp: tmp.write_text(html_text, encoding="utf-8"))
    return ExplainOutput(records, results_path, report_path, per_image)


__all__ = ["ExplainOutput", "check_out_dir", "explain_images"]
