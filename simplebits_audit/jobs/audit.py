"""Batch audit of a dataset: predict everything, simplify the selected images, never lose a result.

:func:`run_audit` is what ``simplebits audit`` runs.

1. **Predict** every image (streaming, batched; unreadable images are recorded as skipped).
2. **Select** images (``misclassified`` by default, ``all``, ``low-confidence:P``, ``class:NAME``,
   plus ``limit``) and give each one or two targets (``explain``: true label, prediction, both).
3. **Simplify** the selection in fixed batches; batch ``k`` belongs to rank ``k % world_size``
   (torchrun) and is seeded by ``seed + k``, so its results do not depend on how many processes
   run or on interruptions. Each finished batch's records are appended to the rank's results
   file and flushed; PNGs and arrays are written atomically before the record.
4. **Merge** (rank 0): all records, deduplicated and in selection order, into ``results.jsonl``;
   ``summary.json`` and ``report.html`` follow.

Rerun the same command after any interruption (even SIGKILL): finished batches are skipped, a
torn last line is cut off, and the final files equal those of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from rich.progress import Progress

from .._io import atomic_write, save_json
from ..estimators import BitEstimator, load_estimator
from ..explainer import ATTRIBUTIONS, SimpleBits
from ..models import check_classifier_output, check_not_training
from ..preprocessing import Preprocessing
from .data import AuditItem, AuditSource, open_source
from .distributed import World, join_world
from .explain import baseline_map, check_baselines
from .records import class_name, save_artifacts, simplification_records

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
SETTINGS_FILE = "audit.json"
EXPLAIN_CHOICES = ("true", "pred", "both")
#: settings that change results: a rerun into the same folder must agree on them
RESULT_SETTINGS = (
    "data", "n_items", "select", "limit", "explain", "baselines", "estimator", "attribution", "batch_size", "seed", "simplify",
    "model", "preprocessing", "top_k", "class_names",
)


# ------------------------------------------------------------------------------------------
# selection


@dataclass(frozen=True)
class Selection:
    """Which predicted images to explain: ``misclassified``, ``all``, ``low-confidence:P``, ``class:NAME``."""

    kind: str
    threshold: float = 0.0
    class_index: int = -1

    @classmethod
    def parse(cls, text: str, class_names: Sequence[str] | None) -> "Selection":
        kind, _, value = text.partition(":")
        if kind in ("misclassified", "all") and not value:
            return cls(kind)
        if kind == "low-confidence":
            try:
                p = float(value)
            except ValueError:
                p = math.nan
            if not 0 < p <= 1:
                raise ValueError(f"select: low-confidence needs a probability in (0, 1], e.g. low-confidence:0.6; got {text!r}")
            return cls(kind, threshold=p)
        if kind == "class" and value:
            if class_names and value in class_names:
                return cls(kind, class_index=list(class_names).index(value))
            if value.isdigit():
                return cls(kind, class_index=int(value))
            raise ValueError(f"select: class {value!r} is not a class name; e.g. {list(class_names or [])[:5]}")
        raise ValueError(f"select: expected misclassified, all, low-confidence:P or class:NAME; got {text!r}")

    def __call__(self, label: int | None, pred: int, confidence: float) -> bool:
        if self.kind == "all":
            return True
        if self.kind == "misclassified":
            return label is not None and label != pred
        if self.kind == "low-confidence":
            return confidence < self.threshold
        return label == self.class_index


# ------------------------------------------------------------------------------------------
# results files: append + flush, tolerant reading


def _results_files(out: Path) -> list[Path]:
    return sorted(out.glob("results*.jsonl"))


def _read_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every complete record in the files (a torn last line from a kill is ignored)."""
    records = []
    for path in paths:
        for line in path.read_bytes().split(b"\n"):
            try:  # a kill can tear a line anywhere, even inside a multi-byte character
                records.append(json.loads(line.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
    return records


def _cut_torn_line(path: Path) -> None:
    """Drop an incomplete last line (the process died mid-write) so appends start on a fresh line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def _append(path: Path, records: Sequence[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        handle.flush()
        os.fsync(handle.fileno())


# ------------------------------------------------------------------------------------------
# the audit


@dataclass
class _Entry:
    """One explanation to compute: an image and the class to explain."""

    item: AuditItem
    kind: str  # "true" or "pred"
    target: int
    pred: int
    confidence: float

    @property
    def id(self) -> str:
        return f"{self.item.id}#{self.kind}"


def _predict(model, source: AuditSource, preprocessing: Preprocessing, world: World, device, batch_size: int, shape: tuple, progress: Progress | None):
    """(index, pred, confidence) for this rank's readable items, and (index, reason) for unreadable ones.

    The dataset is cut into fixed chunks of ``batch_size`` and chunk ``c`` goes to rank
    ``c % world``: the batches the model sees do not depend on the number of processes.
    """
    chunks = [source.items[i : i + batch_size] for i in range(0, len(source.items), batch_size)][world.rank :: world.size]
    predictions, skipped = [], []
    task = progress.add_task("predicting", total=sum(len(c) for c in chunks)) if progress else None
    for items in chunks:
        chunk, pixels = [], []
        for item in items:
            try:
                x = source.load(item)
            except ValueError as err:
                skipped.append((item.index, str(err)))
                continue
            if tuple(x.shape) != shape:
                skipped.append((item.index, f"size {tuple(x.shape)} differs from {shape}; set --size/--crop"))
                continue
            chunk.append(item)
            pixels.append(x)
        if chunk:
            with torch.no_grad():
                probs = torch.softmax(model(preprocessing.to_model(torch.stack(pixels).to(device))).float(), 1).cpu()
            conf, pred = probs.max(1)
            predictions += [(it.index, int(p), float(c)) for it, p, c in zip(chunk, pred, conf)]
        if progress:
            progress.advance(task, len(items))
    return predictions, skipped


def _mask_shares(result, j: int, attr_map: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Where the bits and the attribution sit relative to a ground-truth mask (e.g. a shortcut marker)."""
    m = mask.to(result.bits_map_before.device).float()
    share = lambda values: float((values * m).sum() / values.sum().clamp_min(1e-12))  # noqa: E731
    return {
        "mask_area_share": float(m.mean()),
        "mask_bits_share_before": share(result.bits_map_before[j].clamp_min(0)),
        "mask_bits_share_after": share(result.bits_map_after[j].clamp_min(0)),
        "mask_attribution_share": share(attr_map.abs()),
    }


def run_audit(
    model: Callable[[torch.Tensor], torch.Tensor],
    data: str | Path | AuditSource,
    out: str | Path,
    *,
    preprocessing: Preprocessing | None = None,
    class_names: Sequence[str] | None = None,
    select: str = "misclassified",
    limit: int | None = None,
    explain: str = "pred",
    baselines: Sequence[str] = (),
    estimator: BitEstimator | str | None = None,
    attribution: str = "ablation",
    batch_size: int = 16,
    predict_batch_size: int = 128,
    top_k: int = 5,
    model_name: str = "",
    device: str | torch.device = "cpu",
    seed: int = 0,
    testbed_n: int | None = None,
    show_progress: bool = False,
    simplify_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Audit a dataset; returns the summary written to ``out/summary.json``.

    Parameters
    ----------
    model : callable
        The classifier: model-space images (B, C, H, W) -> logits (B, K). Never modified.
    data : path, testbed name or AuditSource
        An ImageFolder directory, a CSV of ``path,label``, or a testbed name (its test split).
    out : path
        Output folder; rerunning into the same folder resumes.
    select : str
        ``misclassified`` (default), ``all``, ``low-confidence:P`` or ``class:NAME``.
    limit : int, optional
        Explain at most this many selected images (the first ones, in dataset order).
    explain : {"pred", "true", "both"}
        Which class to keep: the prediction, the true label, or one record for each.
    batch_size, predict_batch_size : int
        Images per simplification batch / per prediction batch.
    testbed_n : int, optional
        Number of testbed images (default: the testbed's test size).

    The remaining parameters are those of :func:`simplebits_audit.audit.explain_images`.
    """
    from ..report.audit import write_audit_report

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {str(out)!r} exists and is not a folder")
    if explain not in EXPLAIN_CHOICES:
        raise ValueError(f"explain: expected one of {EXPLAIN_CHOICES}, got {explain!r}")
    if attribution not in ATTRIBUTIONS:
        raise ValueError(f"attribution: expected one of {ATTRIBUTIONS}, got {attribution!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit: expected a positive number, got {limit}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive number, got {batch_size}")
    if predict_batch_size < 1:
        raise ValueError(f"predict_batch_size: expected a positive number, got {predict_batch_size}")
    baselines = check_baselines(baselines)
    preprocessing = preprocessing or Preprocessing()
    source = data if isinstance(data, AuditSource) else open_source(data, preprocessing=preprocessing, class_names=class_names, testbed_n=testbed_n, seed=seed)
    names = source.class_names
    selection = Selection.parse(select, names)
    has_labels = any(i.label is not None for i in source.items)
    if explain in ("true", "both") and not has_labels:
        raise ValueError(f"explain: {explain!r} needs labels, and {source.name!r} has none")
    if selection.kind in ("misclassified", "class") and not has_labels:
        raise ValueError(f"select: {select!r} needs labels, and {source.name!r} has none; use --select all or low-confidence:P")
    check_not_training(model)

    world, device = join_world(device)
    try:
        params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
        if params and params[0].device != device:
            raise ValueError(f"model: its weights are on {params[0].device} but this process runs on {device}; move the model (or pass device=)")
        # ---- check the model and the folder before any long work
        first = _first_readable(source)
        if first is None:
            raise ValueError(f"data: none of the {len(source)} images of {source.name!r} is readable")
        first_input = preprocessing.to_model(first[None].to(device))
        n_classes = check_classifier_output(model, first_input, name="model")
        if names is not None and len(names) != n_classes:
            raise ValueError(f"class_names: {len(names)} class names (from --labels or the data's class folders) but the model has {n_classes} outputs")
        bad = sorted({i.label for i in source.items if i.label is not None and not 0 <= i.label < n_classes})
        if bad:
            raise ValueError(f"data: labels {bad[:5]} are outside the model's classes [0, {n_classes - 1}]")
        if selection.kind == "class" and not 0 <= selection.class_index < n_classes:
            raise ValueError(f"select: class index {selection.class_index} is out of range for {n_classes} classes")
        settings = {
            "data": source.name, "n_items": len(source), "select": select, "limit": limit, "explain": explain,
            "baselines": baselines, "estimator": str(estimator) if estimator is not None and not isinstance(estimator, BitEstimator) else (type(estimator).__name__ if estimator is not None else "default"),
            "attribution": attribution, "batch_size": batch_size, "seed": seed, "simplify": dict(simplify_options or {}),
            "model": model_name or type(model).__name__, "class_names": names, "world_size": world.size, "top_k": top_k,
            "preprocessing": asdict(preprocessing),
        }
        _check_settings(out, settings)
        world.barrier()
        if world.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if not (out / SETTINGS_FILE).exists():
                save_json(settings, out / SETTINGS_FILE)
            for stale in out.glob("**/.*.tmp"):  # temporary files of writes a kill interrupted
                stale.unlink(missing_ok=True)
        world.barrier()

        est = estimator if isinstance(estimator, BitEstimator) else load_estimator(estimator, device=device)
        for name in baselines:  # fail now if a method cannot run on this model
            baseline_map(name, model, first_input, torch.zeros(1, dtype=torch.long))

        timing = {"predict_seconds": 0.0, "simplify_seconds": 0.0, "write_seconds": 0.0, "explained_this_run": 0}
        with Progress(disable=not (show_progress and world.is_main), transient=True) as progress:
            # ---- 1. predict everything (each rank its share), gather the small results
            t0 = time.perf_counter()
            shape = tuple(first.shape)  # one reference size for every rank
            predictions, skipped = _predict(model, source, preprocessing, world, device, predict_batch_size, shape, progress)
            gathered = world.all_gather((predictions, skipped))
            predictions = sorted(p for part in gathered for p in part[0])
            skipped = sorted(s for part in gathered for s in part[1])
            timing["predict_seconds"] = time.perf_counter() - t0

            # ---- 2. select, in dataset order
            entries = _select(source, predictions, selection, explain, limit)
            batches = [entries[i : i + batch_size] for i in range(0, len(entries), batch_size)]

            # ---- 3. simplify this rank's batches that are not done yet
            own_file = out / (RESULTS_FILE if world.size == 1 else f"results.rank{world.rank}.jsonl")
            _cut_torn_line(own_file)
            world.barrier()  # every rank has repaired its file before any rank reads them all
            done = {r["id"] for r in _read_records(_results_files(out))}
            # Pending batches are dealt out afresh, so a resumed run stays balanced; a batch's
            # result depends only on its index k, not on which rank runs it.
            pending = [(k, b) for k, b in enumerate(batches) if not all(e.id in done for e in b)]
            mine = pending[world.rank :: world.size]
            explainer = SimpleBits(model, est, normalization=preprocessing.normalization, **(simplify_options or {}))
            task = progress.add_task("simplifying", total=sum(len(b) for _, b in mine))
            for k, batch in mine:
                t0 = time.perf_counter()
                x = preprocessing.to_model(torch.stack([source.load(e.item) for e in batch]).to(device))
                targets = torch.tensor([e.target for e in batch], device=device)
                attr, result = explainer.attribute(x, target=targets, attribution=attribution, return_result=True, seed=seed + k)
                maps = {"simplebits": attr[:, :1], "bits_removed": result.bit_reduction_map}
                for name in baselines:
                    maps[name], _ = baseline_map(name, model, x, targets)
                records = simplification_records(
                    result, ids=[e.id for e in batch], names=[e.item.id for e in batch], class_names=names, top_k=top_k,
                    labels=[e.item.label for e in batch], paths=[e.item.path for e in batch],
                )
                timing["simplify_seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                for j, (e, record) in enumerate(zip(batch, records)):
                    record.update({"index": e.item.index, "explain": e.kind, "confidence": e.confidence, "batch": k})
                    mask = source.mask(e.item)
                    if mask is not None:
                        record.update(_mask_shares(result, j, maps["simplebits"][j], mask))
                    folder = out / "images" / f"{e.item.index:06d}-{e.kind}"
                    record["files"] = save_artifacts(folder, result.original[j], result.simplified[j], {n: m[j] for n, m in maps.items()})
                _append(own_file, records)
                timing["write_seconds"] += time.perf_counter() - t0
                timing["explained_this_run"] += len(batch)
                progress.advance(task, len(batch))

        # ---- 4. merge, summarise, report (rank 0)
        timing["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        timings = world.all_gather(timing)
        world.barrier()
        summary: dict[str, Any] = {}
        if world.is_main:
            t0 = time.perf_counter()
            records = _merge(out, entries)
            summary = _summary(source, predictions, skipped, entries, records, n_classes, timings, world.size)
            save_json(summary, out / SUMMARY_FILE)
            write_audit_report(out)
            summary["timing"]["merge_and_report_seconds"] = time.perf_counter() - t0
            save_json(summary, out / SUMMARY_FILE)
        world.barrier()
        return summary
    finally:
        world.close()


def _first_readable(source: AuditSource) -> torch.Tensor | None:
    """Pixels of the dataset's first readable image (None if no image can be read)."""
    for item in source.items:
        try:
            return source.load(item)
        except ValueError:
            continue
    return None


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / SETTINGS_FILE
    if not path.is_file():
        return
    previous = json.loads(path.read_text(encoding="utf-8"))
    changed = [k for k in RESULT_SETTINGS if previous.get(k) != json.loads(json.dumps(settings.get(k)))]
    if changed:
        raise ValueError(f"out: {str(out)!r} holds an audit with other settings ({', '.join(changed)}); rerun with the same ones to resume, or use a new --out")


def _select(source: AuditSource, predictions, selection: Selection, explain: str, limit: int | None) -> list[_Entry]:
    entries: list[_Entry] = []
    chosen = 0
    for index, pred, confidence in predictions:
        item = source.items[index]
        if not selection(item.label, pred, confidence):
            continue
        kinds = [k for k in (("true", "pred") if explain == "both" else (explain,)) if k == "pred" or item.label is not None]
        if not kinds:
            continue  # nothing to explain without a label
        if limit is not None and chosen >= limit:
            break
        chosen += 1
        for kind in kinds:
            entries.append(_Entry(item, kind, item.label if kind == "true" else pred, pred, confidence))
    return entries


def _merge(out: Path, entries: Sequence[_Entry]) -> list[dict[str, Any]]:
    """All records, one per entry, in selection order, into ``results.jsonl`` (atomic); rank files removed."""
    files = _results_files(out)
    by_id: dict[str, dict[str, Any]] = {}
    for record in _read_records(files):
        by_id.setdefault(record["id"], record)
    missing = [e.id for e in entries if e.id not in by_id]
    if missing:
        raise RuntimeError(f"audit: {len(missing)} results missing after all ranks finished (e.g. {missing[:3]})")
    records = [by_id[e.id] for e in entries]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write(out / RESULTS_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    for path in files:
        if path.name != RESULTS_FILE:
            path.unlink()
    return records


def _mean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def _summary(source, predictions, skipped, entries, records, n_classes, timings, world_size) -> dict[str, Any]:
    names = source.class_names
    labelled = [(source.items[i].label, p) for i, p, _ in predictions if source.items[i].label is not None]
    confusion = [[0] * n_classes for _ in range(n_classes)]
    for label, pred in labelled:
        if 0 <= label < n_classes:
            confusion[label][pred] += 1
    ok = [r for r in records if r["status"] != "non-finite"]
    per_class: dict[str, dict[str, Any]] = {}
    duplicated = names is not None and len(set(names)) < len(names)  # e.g. ImageNet's two "crane"s
    for c in range(n_classes):
        rs = [r for r in ok if (r["label"] if r["label"] is not None else r["pred_before"]) == c]
        if rs:
            key = f"{c}: {class_name(c, names)}" if duplicated else class_name(c, names)
            per_class[key] = {
                "n": len(rs),
                "bpd_before": _mean([r["bpd_before"] for r in rs]),
                "bpd_after": _mean([r["bpd_after"] for r in rs]),
                "bits_retained": _mean([r["bits_retained"] for r in rs]),
                "kept_rate": _mean([float(r["kept"]) for r in rs]),
            }
    shortcut = None
    with_mask = [r for r in ok if "mask_area_share" in r]
    if with_mask:
        shortcut = {k: _mean([r[k] for r in with_mask]) for k in ("mask_area_share", "mask_bits_share_before", "mask_bits_share_after", "mask_attribution_share")}
        shortcut["n"] = len(with_mask)
        if shortcut["mask_bits_share_after"] is not None and shortcut["mask_area_share"]:
            shortcut["retained_bits_enrichment"] = shortcut["mask_bits_share_after"] / shortcut["mask_area_share"]
        else:
            shortcut["retained_bits_enrichment"] = None
    total = {k: sum(t[k] for t in timings) for k in timings[0] if k != "peak_rss_mb"}
    wall = max(t["predict_seconds"] + t["simplify_seconds"] + t["write_seconds"] for t in timings)
    return {
        "data": source.name,
        "items": len(source),
        "readable": len(predictions),
        "skipped": [{"index": i, "id": source.items[i].id, "path": source.items[i].path, "reason": reason} for i, reason in skipped],
        "accuracy": (sum(int(label == pred) for label, pred in labelled) / len(labelled)) if labelled else None,
        "class_names": names,
        "confusion_matrix": confusion if labelled else None,
        "selected_images": len({e.item.index for e in entries}),
        "explained": len(records),
        "kept_rate": _mean([float(r["kept"]) for r in records]),
        "bpd_before": _mean([r["bpd_before"] for r in ok]),
        "bpd_after": _mean([r["bpd_after"] for r in ok]),
        "bits_retained": _mean([r["bits_retained"] for r in ok]),
        "non_finite": sum(r["status"] == "non-finite" for r in records),
        "per_class": per_class,
        "shortcut": shortcut,
        "timing": {**total, "wall_seconds_this_run": wall, "world_size": world_size,
                   "explained_per_second": total["explained_this_run"] / wall if wall > 0 else None},
        "peak_rss_mb_per_process": [t["peak_rss_mb"] for t in timings],
    }
