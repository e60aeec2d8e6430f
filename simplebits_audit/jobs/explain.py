"""Explain a few predictions end to end: images in, ``results.json`` + PNGs + ``report.html`` out.

:func:`explain_images` is what ``simplebits explain`` and ``simplebits demo`` run. Everything the
user gave is checked before any work starts (images readable and equally sized, model output of
shape (B, classes), class names matching, target in range, baseline names known); the results file
and the report are written last and atomically, so a failed run never leaves a partial report.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from rich.progress import Progress

from .._io import atomic_write, save_json
from ..estimators import BitEstimator, load_estimator
from ..explainer import ATTRIBUTIONS, SimpleBits
from ..models import check_classifier_output, check_not_training
from ..preprocessing import Preprocessing, load_images
from .records import safe_stem, save_artifacts, simplification_records


@dataclass
class ExplainOutput:
    """What :func:`explain_images` wrote and measured."""

    records: list[dict[str, Any]]
    results_path: Path
    report_path: Path
    seconds_per_image: dict[str, float] = field(default_factory=dict)


def _model_device(model: Callable, fallback: str | torch.device) -> torch.device:
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    return params[0].device if params else torch.device(fallback)


def resolve_target(
    target: int | Sequence[int] | None, target_name: str | None, class_names: Sequence[str] | None, n_classes: int, batch: int
) -> torch.Tensor | None:
    """The class to explain per image from ``target`` (index/indices) or ``target_name``; None = prediction."""
    from ..simplification import normalize_target

    if target is not None and target_name is not None:
        raise ValueError("target and target_name: give at most one of them")
    if target_name is not None:
        if not class_names:
            raise ValueError("target_name: needs class names (labels / --labels)")
        if target_name not in class_names:
            raise ValueError(f"target_name: {target_name!r} is not a class name; e.g. {list(class_names)[:5]}")
        target = list(class_names).index(target_name)
    return normalize_target(target, batch, n_classes)


def check_baselines(baselines: Sequence[str]) -> list[str]:
    """Validate baseline names against the registry (before any work)."""
    names = list(dict.fromkeys(baselines))
    if not names:
        return names
    from ..baselines import list_baselines

    unknown = [b for b in names if b not in list_baselines()]
    if unknown:
        raise ValueError(f"baselines: unknown method(s) {unknown}; choose from {list_baselines()}")
    return names


def explain_images(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: Sequence[str | Path] | torch.Tensor,
    out: str | Path,
    *,
    preprocessing: Preprocessing | None = None,
    class_names: Sequence[str] | None = None,
    labels: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    target: int | Sequence[int] | None = None,
    target_name: str | None = None,
    baselines: Sequence[str] = (),
    estimator: BitEstimator | str | None = None,
    attribution: str = "ablation",
    batch_size: int = 16,
    top_k: int = 5,
    title: str = "SimpleBits explanations",
    model_name: str = "",
    device: str | torch.device = "cpu",
    seed: int = 0,
    show_progress: bool = False,
    simplify_options: dict[str, Any] | None = None,
) -> ExplainOutput:
    """Simplify and explain images, compute baselines beside them, write results and a report.

    Parameters
    ----------
    model : callable
        The classifier: model-space images (B, C, H, W) -> logits (B, K). Never modified.
    images : sequence of paths, or Tensor (B, C, H, W)
        Image files (read with ``preprocessing``), or pixel images in [0, 1].
    out : path
        Output folder: ``results.json``, ``report.html``, ``images/<id>/*.png`` and ``arrays.npz``.
    preprocessing : Preprocessing, optional
        Resize / crop / normalisation the model expects (default: none).
    class_names : sequence of str, optional
        One name per class (length K).
    labels : sequence of int, optional
        True classes, when known (shown beside the prediction).
    names : sequence of str, optional
        Display names (default: the file names, or ``image 0``, ...).
    target, target_name : optional
        The class to explain (index, one per image, or a class name). Default: the prediction.
    baselines : sequence of str
        Methods of :mod:`simplebits_audit.baselines` to compute beside SimpleBits.
    estimator : BitEstimator or str, optional
        Bit estimator (default: the package default).
    attribution : str
        The SimpleBits map (see :data:`simplebits_audit.explainer.ATTRIBUTIONS`).
    batch_size : int
        Images simplified together.
    simplify_options : dict, optional
        Extra keyword arguments of :func:`simplebits_audit.simplify` (``steps``, ``objective``, ...).

    Returns
    -------
    ExplainOutput
    """
    from ..report.explanation import REPORT_FILE, RESULTS_FILE, render_explanation_report

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {str(out)!r} exists and is not a folder")
    if attribution not in ATTRIBUTIONS:
        raise ValueError(f"attribution: expected one of {ATTRIBUTIONS}, got {attribution!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive number, got {batch_size}")
    check_not_training(model)
    baselines = check_baselines(baselines)
    preprocessing = preprocessing or Preprocessing()
    if isinstance(images, torch.Tensor):
        from .._validation import check_pixel_images

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
    device = _model_device(model, device)
    first_input = preprocessing.to_model(pixels[:1].to(device))
    n_classes = check_classifier_output(model, first_input, name="model")
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(f"class_names: {len(class_names)} names but the model has {n_classes} outputs")
    targets = resolve_target(target, target_name, class_names, n_classes, n)
    est = estimator if isinstance(estimator, BitEstimator) else load_estimator(estimator, device=device)
    for name in baselines:  # a method that cannot run on this model fails here, not after the simplification
        baseline_map(name, model, first_input, torch.zeros(1, dtype=torch.long) if targets is None else targets[:1])

    explainer = SimpleBits(model, est, normalization=preprocessing.normalization, **(simplify_options or {}))
    seconds = {"simplebits": 0.0, **{b: 0.0 for b in baselines}}
    records: list[dict[str, Any]] = []
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("explaining", total=n)
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            x = preprocessing.to_model(pixels[sl].to(device))
            t = None if targets is None else targets[sl].to(device)
            t0 = time.perf_counter()
            attr, result = explainer.attribute(x, target=t, attribution=attribution, return_result=True, seed=seed)
            seconds["simplebits"] += time.perf_counter() - t0
            maps = {"simplebits": attr[:, :1], "bits_removed": result.bit_reduction_map}
            for name in baselines:
                maps[name], spent = baseline_map(name, model, x, result.target)
                seconds[name] += spent
            ids = [f"{i:03d}-{safe_stem(names[i])}" for i in range(start, start + len(x))]
            batch_records = simplification_records(
                result, ids=ids, names=names[sl], class_names=class_names, top_k=top_k,
                labels=None if labels is None else [int(v) for v in labels[sl]], paths=paths[sl],
            )
            for j, record in enumerate(batch_records):
                record["files"] = save_artifacts(out / "images" / record["id"], result.original[j], result.simplified[j], {k: m[j] for k, m in maps.items()})
            records.extend(batch_records)
            progress.advance(task, len(x))

    per_image = {k: v / n for k, v in seconds.items()}
    settings = {
        "title": title,
        "model": model_name or type(model).__name__,
        "estimator": result.settings.get("estimator", str(estimator)),
        "attribution": attribution,
        "maps": ["simplebits", "bits_removed", *baselines],
        "baselines": baselines,
        "simplify": {k: v for k, v in result.settings.items() if isinstance(v, (int, float, str, bool))},
        "preprocessing": asdict(preprocessing),
        "class_names": list(class_names) if class_names is not None else None,
        "seed": seed,
        "seconds_per_image": per_image,
    }
    # Render first: if that fails, neither the results nor the report of an earlier run are replaced.
    html_text = render_explanation_report(out, records, settings)
    results_path = save_json({"settings": settings, "images": records}, out / RESULTS_FILE)
    report_path = atomic_write(out / REPORT_FILE, lambda tmp: tmp.write_text(html_text, encoding="utf-8"))
    return ExplainOutput(records, results_path, report_path, per_image)


def baseline_map(name: str, model: Callable, inputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, float]:
    """A baseline's map (B, 1, H, W) (sum of |attribution| over channels) and the seconds it took."""
    from .. import baselines

    t0 = time.perf_counter()
    attr = baselines.attribute(name, model, inputs, target=target.to(inputs.device))
    return baselines.to_map(attr).detach(), time.perf_counter() - t0
