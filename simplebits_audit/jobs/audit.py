"""Batch audit of a dataset: predict everything, simplify the selected images, never lose a result.

:func:`run_audit` is what ``simplebits audit`` runs.

1. **Predict** every image (streaming, batched; unreadable images are recorded as skipped). The
   prediction follows the model's output head (:mod:`~simplebits_audit.jobs.answers`): the top
   class of a softmax; for ``head="sigmoid"`` the decision of a single-logit model
   (``p >= threshold``: class 1, with ``--labels`` e.g. ``negative,positive``) or, for ordering
   and selection, the most probable label of a multi-label one (whose explained prediction keeps
   every label on its side; it gets no accuracy).
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

import math
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .._helpers import class_index_of
from .._io import save_json
from .._progress import JobProgress
from ..estimators import BitEstimator
from ..explainers import SIMPLEBITS, get_spec
from ..preprocessing import Preprocessing
from ..results import (
    AUDIT_RESULTS_FILE,
    AUDIT_SETTINGS_FILE,
    AUDIT_SIMPLIFIER_FILE,
    AUDIT_SUMMARY_FILE,
    append_records,
    class_name,
    cut_torn_line,
    rank_results_file,
    read_records,
    results_files,
    target_not_predicted,
    write_records,
)
from ..simplification import Simplifier
from ..simplification.learned import model_fingerprint
from .answers import decide
from .checks import check_out_dir, check_resume, head_options, job_device, preflight
from .distributed import World, join_world
from .options import ExplainOptions, ModelOptions, RunOptions, take_options
from .pipeline import explain_batch, mask_shares, write_batch
from .simplifier import train_simplifier_job
from .sources import AuditItem, AuditSource, open_source

EXPLAIN_CHOICES = ("true", "pred", "both")
#: settings that change results: a rerun into the same folder must agree on them
RESULT_SETTINGS = (
    "data", "n_items", "select", "limit", "explain", "baselines", "estimator", "attribution", "batch_size", "seed", "simplify",
    "model", "preprocessing", "top_k", "class_names", "explainer", "simplifier", "head", "threshold",
    "baseline_options", "kept_labels",
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
    def parse(cls, text: str, class_names: Sequence[str] | None) -> Selection:
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
                return cls(kind, class_index=class_index_of(value, list(class_names), "select", "use class:INDEX"))
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


def _predict(model, source: AuditSource, preprocessing: Preprocessing, world: World, device, batch_size: int, shape: tuple,
             progress: JobProgress | None, head: str = "softmax", threshold: float = 0.5):
    """(index, pred, confidence) for this rank's readable items, and (index, reason) for the others.

    ``pred`` and ``confidence`` follow the output head (:func:`~simplebits_audit.jobs.answers.decide`).

    The dataset is cut into fixed chunks of ``batch_size`` and chunk ``c`` goes to rank
    ``c % world``: the batches the model sees do not depend on the number of processes. An image
    the model answers with NaN or infinite logits is skipped with that reason.
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
                logits = model(preprocessing.to_model(torch.stack(pixels).to(device))).float()
            finite = torch.isfinite(logits).all(1).tolist()
            pred, conf = decide(logits.cpu(), head, threshold)
            for it, p, c, ok in zip(chunk, pred, conf, finite):
                if ok:
                    predictions.append((it.index, int(p), float(c)))
                else:
                    skipped.append((it.index, "the model's output is NaN or infinite on this image"))
        if progress:
            progress.advance(task, len(items))
    return predictions, skipped


def run_audit(
    model: Callable[[torch.Tensor], torch.Tensor],
    data: str | Path | AuditSource,
    out: str | Path,
    *,
    model_options: ModelOptions | None = None,
    explain_options: ExplainOptions | None = None,
    run: RunOptions | None = None,
    select: str = "misclassified",
    limit: int | None = None,
    explain: str = "pred",
    predict_batch_size: int = 128,
    top_k: int = 5,
    testbed_n: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Audit a dataset; returns the summary written to ``out/summary.json`` (an empty dict on torchrun ranks other than 0).

    Parameters
    ----------
    model : callable
        The classifier: model-space images (B, C, H, W) -> logits (B, K). Never modified.
    data : path, testbed name or AuditSource
        An ImageFolder directory, a CSV of ``path,label``, or a testbed name (its test split).
    out : path
        Output folder; rerunning into the same folder resumes.
    model_options : ModelOptions, optional
        Preprocessing, class names (default: the data's), output head and threshold, the model's
        name in the report. With ``head="sigmoid"`` a single-logit (binary) model's prediction is
        its decision, 1 when ``p >= threshold``, compared with labels 0/1 (class names: the two
        decisions, e.g. an ImageFolder with ``negative/`` and ``positive/``); it has one answer to
        keep, so ``explain`` must be ``"pred"``. A multi-label model's explained prediction keeps
        every label on its side (as :func:`~simplebits_audit.jobs.explain_images`); ``explain`` is
        ``"pred"`` or ``"true"`` (one label kept), ``select`` not ``"misclassified"``, and the
        summary has no accuracy. Records list every label's probability before and after and which labels are on.
    explain_options : ExplainOptions, optional
        As for :func:`simplebits_audit.jobs.explain_images`; its ``batch_size`` is the images per
        simplification batch, and its ``simplifier`` may also be ``"auto"``: train one on the
        audited data first (``out/simplifier.pt``, 10% held out and scored for its card), reused
        when the audit resumes.
    run : RunOptions, optional
        Device (the model's by default; if given, it must be the model's; under torchrun with
        CUDA, each rank's ``cuda:LOCAL_RANK``), seed, progress.
    select : str
        ``misclassified`` (default), ``all``, ``low-confidence:P`` or ``class:NAME``.
    limit : int, optional
        Explain at most this many selected images (the first ones, in dataset order).
    explain : {"pred", "true", "both"}
        Which class to keep: the prediction, the true label, or one record for each.
    predict_batch_size : int
        Images per prediction batch.
    top_k : int
        Classes each record lists with their probabilities.
    testbed_n : int, optional
        Number of testbed images (default: the testbed's test size).
    **options
        Fields of the three option groups, overriding the objects' (as for
        :func:`simplebits_audit.jobs.explain_images`).
    """
    from ..report.audit import write_audit_report

    groups = (ModelOptions, model_options), (ExplainOptions, explain_options), (RunOptions, run)
    mo, eo, run = take_options("run_audit", options, *groups)
    preprocessing, class_names, head, threshold = mo.preprocessing, mo.class_names, mo.head, mo.threshold
    explainer, baselines, batch_size, estimator, simplifier = eo.explainer, eo.baselines, eo.batch_size, eo.estimator, eo.simplifier
    seed, show_progress = run.seed, run.show_progress
    out = check_out_dir(out, "audit")
    if explain not in EXPLAIN_CHOICES:
        raise ValueError(f"explain: expected one of {EXPLAIN_CHOICES}, got {explain!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit: expected a positive number, got {limit}")
    if predict_batch_size < 1:
        raise ValueError(f"predict_batch_size: expected a positive number, got {predict_batch_size}")
    if simplifier is not None and "simplifier" not in get_spec(explainer).options:
        raise ValueError(f"simplifier: explainer {explainer!r} does not take a learned simplifier")
    if isinstance(simplifier, (str, Path)) and str(simplifier) != "auto" and not Path(simplifier).is_file():
        raise ValueError(f"simplifier: expected 'auto' or an existing simplifier file, got {str(simplifier)!r}")
    source = data if isinstance(data, AuditSource) else open_source(data, preprocessing=preprocessing,
        class_names=class_names, testbed_n=testbed_n, seed=seed)
    names = source.class_names
    selection = Selection.parse(select, names)
    has_labels = any(i.label is not None for i in source.items)
    if explain in ("true", "both") and not has_labels:
        raise ValueError(f"explain: {explain!r} needs labels, and {source.name!r} has none")
    if selection.kind in ("misclassified", "class") and not has_labels:
        raise ValueError(f"select: {select!r} needs labels, and {source.name!r} has none; use --select all or low-confidence:P")

    world, device = join_world(job_device(model, run.device))
    try:
        # ---- check the model and the folder before any long work
        first = _first_readable(source)
        if first is None:
            raise ValueError(f"data: none of the {len(source)} images of {source.name!r} is readable")
        options = head_options([explainer, *baselines], eo.method_options(), head, threshold)
        checked = preflight(
            model, first[None], preprocessing=preprocessing, device=device, class_names=names, labels=[i.label for i in source.items],
            labels_name="data", explainer=explainer, methods=baselines, method_options=options, estimator=estimator, n_images=1,
            head=head, threshold=threshold, learned=simplifier is not None,
        )
        binary = checked.n_classes == 1
        if binary and explain != "pred":
            raise ValueError("explain: a single-logit (sigmoid) model has one answer to keep, its decision; "
                             f"use explain='pred' (--explain pred), not {explain!r}")
        # A multi-label model's answer is every label on its side: explaining its prediction keeps them all (as explain
        # does), and no single predicted class can be compared with an image's one label.
        multilabel = head == "sigmoid" and not binary
        if multilabel and explain == "both":
            raise ValueError("explain: a multi-label (sigmoid) model's prediction is every label on its side, explained apart "
                             "from a single true label; use explain='pred' or 'true' (--explain pred|true), not 'both'")
        if multilabel and selection.kind == "misclassified":
            raise ValueError("select: 'misclassified' compares one predicted class with one label; a multi-label (sigmoid) "
                             "model's prediction is every label on its side: use --select all, low-confidence:P or class:NAME")
        n_classes = checked.n_decisions
        if selection.kind == "class" and not 0 <= selection.class_index < n_classes:
            raise ValueError(f"select: class index {selection.class_index} is out of range for {n_classes} classes")
        settings = {
            "data": source.name, "n_items": len(source), "select": select, "limit": limit, "explain": explain,
            "baselines": checked.methods[1:],
            "estimator": str(estimator) if estimator is not None and not isinstance(estimator, BitEstimator)
                else (type(estimator).__name__ if estimator is not None else "default"),
            "attribution": eo.attribution, "batch_size": batch_size, "seed": seed, "simplify": dict(eo.simplify_options or {}),
            "model": mo.model_name or type(model).__name__, "class_names": names, "world_size": world.size, "top_k": top_k,
            "preprocessing": asdict(preprocessing),
        }
        if explainer != SIMPLEBITS:  # only recorded when set, so that audits written before the option can resume
            settings["explainer"] = explainer
        if head != "softmax":  # only recorded when set, so that audits written before the option can resume
            settings.update({"head": head, "threshold": float(threshold)})
        every_label = multilabel and explain == "pred"  # the prediction of a multi-label model: every label on its side
        if every_label:  # earlier multi-label audits kept only the top label: not resumed into
            settings["kept_labels"] = "every label on its side"
        if eo.baseline_options:  # only recorded when set (as head), JSON-able values only
            settings["baseline_options"] = {k: {o: str(v) for o, v in d.items()} for k, d in eo.baseline_options.items()}
        if simplifier is not None:
            if not isinstance(simplifier, Simplifier) and str(simplifier) != "auto":
                # Loaded before the settings are written: a bad file leaves the output folder untouched.
                simplifier = Simplifier.load(simplifier, forward_func=model, device=device)
            # Its weights' fingerprint: another simplifier (or new contents at the same path) is another audit.
            settings["simplifier"] = "auto" if isinstance(simplifier, (str, Path)) else model_fingerprint(simplifier)
        check_resume(out / AUDIT_SETTINGS_FILE, settings, RESULT_SETTINGS, "an audit")
        world.barrier()
        if world.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if not (out / AUDIT_SETTINGS_FILE).exists():
                save_json(settings, out / AUDIT_SETTINGS_FILE)
            for stale in out.glob("**/.*.tmp"):  # temporary files of writes a kill interrupted
                stale.unlink(missing_ok=True)
        world.barrier()

        timing = {"predict_seconds": 0.0, "simplify_seconds": 0.0, "write_seconds": 0.0, "explained_this_run": 0}
        if simplifier is not None:
            t0 = time.perf_counter()
            options[explainer]["simplifier"] = _simplifier(simplifier, model, source, out, mo, replace(run, device=device), estimator)
            timing["simplifier_seconds"] = time.perf_counter() - t0
        with JobProgress(disable=not (show_progress and world.is_main)) as progress:
            # ---- 1. predict everything (each rank its share), gather the small results
            t0 = time.perf_counter()
            shape = tuple(first.shape)  # one reference size for every rank
            predictions, skipped = _predict(model, source, preprocessing, world, device, predict_batch_size, shape, progress,
                                            head, threshold)
            gathered = world.all_gather((predictions, skipped))
            predictions = sorted(p for part in gathered for p in part[0])
            skipped = sorted(s for part in gathered for s in part[1])
            timing["predict_seconds"] = time.perf_counter() - t0

            # ---- 2. select, in dataset order
            entries = _select(source, predictions, selection, explain, limit)
            batches = [entries[i : i + batch_size] for i in range(0, len(entries), batch_size)]

            # ---- 3. explain this rank's batches that are not done yet
            own_file = rank_results_file(out, world.rank, world.size)
            cut_torn_line(own_file)
            world.barrier()  # every rank has repaired its file before any rank reads them all
            done = {r["id"] for r in read_records(results_files(out))}
            # Pending batches are dealt out afresh, so a resumed run stays balanced; a batch's
            # result depends only on its index k, not on which rank runs it.
            pending = [(k, b) for k, b in enumerate(batches) if not all(e.id in done for e in b)]
            mine = pending[world.rank :: world.size]
            total = sum(len(b) for _, b in mine)
            task = progress.add_task("simplifying", total=total)
            for k, batch in mine:
                t0 = time.perf_counter()
                x = preprocessing.to_model(torch.stack([source.load(e.item) for e in batch]).to(device))
                # A single-logit model's answer is its one logit (label 0), whichever side of the threshold it is on.
                targets = None if every_label else torch.tensor([0 if binary else e.target for e in batch], device=device)
                explained = explain_batch(model, x, targets, checked.methods, context=checked.context(seed + k), method_options=options,
                                          n_classes=checked.n_classes)
                timing["simplify_seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                extra, regions = [], []
                for j, e in enumerate(batch):
                    fields = {"index": e.item.index, "explain": e.kind, "confidence": e.confidence, "batch": k}
                    mask = source.mask(e.item)
                    regions.append(mask)
                    if mask is not None:
                        fields.update(mask_shares(explained.result, j, explained.primary.map[j], mask))
                    extra.append(fields)
                records = write_batch(
                    out, explained, folders=[f"{e.item.index:06d}-{e.kind}" for e in batch], ids=[e.id for e in batch],
                    names=[e.item.id for e in batch], class_names=names, top_k=top_k, labels=[e.item.label for e in batch],
                    paths=[e.item.path for e in batch], extra=extra, head=head, threshold=threshold, regions=regions,
                )
                append_records(own_file, records)
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
            summary = _summary(source, predictions, skipped, entries, records, n_classes, timings, world.size, multilabel)
            save_json(summary, out / AUDIT_SUMMARY_FILE)
            write_audit_report(out)
            summary["timing"]["merge_and_report_seconds"] = time.perf_counter() - t0
            save_json(summary, out / AUDIT_SUMMARY_FILE)
        world.barrier()
        return summary
    finally:
        world.close()


def _simplifier(
    simplifier: Simplifier | str | Path, model: Any, source: AuditSource, out: Path, model_options: ModelOptions, run: RunOptions,
    estimator: BitEstimator | str | None,
) -> Simplifier:
    """The learned simplifier to explain with: as given, or (``"auto"``) trained on the audited data (once: reused on resume)."""
    if isinstance(simplifier, Simplifier):
        return simplifier
    path = out / AUDIT_SIMPLIFIER_FILE
    if path.is_file():  # trained by an earlier run of this audit
        return Simplifier.load(path, forward_func=model, device=run.device)
    return train_simplifier_job(model, source, path, model_options=model_options, run=run, estimator=estimator)


def _first_readable(source: AuditSource) -> torch.Tensor | None:
    """Pixels of the dataset's first readable image (None if no image can be read)."""
    for item in source.items:
        try:
            return source.load(item)
        except ValueError:
            continue
    return None


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
    files = results_files(out)
    by_id: dict[str, dict[str, Any]] = {}
    for record in read_records(files):
        by_id.setdefault(record["id"], record)
    missing = [e.id for e in entries if e.id not in by_id]
    if missing:
        raise RuntimeError(f"audit: {len(missing)} results missing after all ranks finished (e.g. {missing[:3]})")
    records = [by_id[e.id] for e in entries]
    write_records(out / AUDIT_RESULTS_FILE, records)
    for path in files:
        if path.name != AUDIT_RESULTS_FILE:
            path.unlink()
    return records


def _mean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def _summary(source, predictions, skipped, entries, records, n_classes, timings, world_size, multilabel=False) -> dict[str, Any]:
    from ..report.information import summarise_information

    names = source.class_names
    # a multi-label model's most probable label is no prediction to score against one label: no accuracy, no confusion
    labelled = [] if multilabel else [(source.items[i].label, p) for i, p, _ in predictions if source.items[i].label is not None]
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
        shortcut = {k: _mean([r[k] for r in with_mask])
            for k in ("mask_area_share", "mask_bits_share_before", "mask_bits_share_after", "mask_attribution_share")}
        shortcut["n"] = len(with_mask)
        if shortcut["mask_bits_share_after"] is not None and shortcut["mask_area_share"]:
            shortcut["retained_bits_enrichment"] = shortcut["mask_bits_share_after"] / shortcut["mask_area_share"]
        else:
            shortcut["retained_bits_enrichment"] = None
    total = {k: sum(t[k] for t in timings) for k in timings[0] if k != "peak_rss_mb"}
    total["explained_per_process"] = [t["explained_this_run"] for t in timings]
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
        # explanations of a class that was not the prediction: "kept" means its probability stayed >= 90 % of what it was
        "not_prediction_targets": sum(map(target_not_predicted, records)),
        "bpd_before": _mean([r["bpd_before"] for r in ok]),
        "bpd_after": _mean([r["bpd_after"] for r in ok]),
        "bits_retained": _mean([r["bits_retained"] for r in ok]),
        "non_finite": sum(r["status"] == "non-finite" for r in records),
        "per_class": per_class,
        "shortcut": shortcut,
        **({"information": info} if (info := summarise_information(ok, names)) else {}),  # factorised runs only
        "timing": {**total, "wall_seconds_this_run": wall, "world_size": world_size,
                   "explained_per_second": total["explained_this_run"] / wall if wall > 0 else None},
        "peak_rss_mb_per_process": [t["peak_rss_mb"] for t in timings],
    }
