"""The on-disk layout of every job's output: file names, per-image records, arrays, strict JSON.

The jobs write through this module and the reports read through it; nothing else names a file.

An output folder of ``explain`` (and ``demo``) holds::

    results.json              {"settings": {...}, "images": [record, ...]}
    report.html
    images/<id>/              original.png, simplified.png, map_<name>.png, path.png, arrays.npz

and of ``audit``::

    audit.json                the settings (a rerun must agree on them to resume)
    results.jsonl             one record per line, in selection order (results.rank<r>.jsonl while running)
    summary.json
    report.html
    images/<index>-<kind>/    as above

A factorised run (``parameterization="factorised"``) adds, per record, ``information``: the
information profile (:func:`information_record`; numbers only), and per image the axis masks: in
``arrays.npz`` as ``axis_<axis>`` (H, W) float32, the engine's raw masks (the returned image is
``round8(compose(original, masks))``), and as ``axis_<axis>.png`` (grey, 0 = removed, 1 = kept, on
a fixed [0, 1] scale) the map of what the returned image kept: ``factorised.kept_axis_maps``. Records of
other engines have neither.

A record is a JSON-able dict (ids, names, predictions and probabilities before and after, bits,
codec sizes, the trade-off path, status, file names). Its arrays (original and simplified image,
maps, the path's snapshots) go beside it: PNGs to look at and an ``arrays.npz`` (no pickles) from
which a report can be rebuilt without recomputing. Every JSON file and line is strict: NaN and
infinities are ``null``.

The path of a record is a list of S snapshots in the engine's order, the original first:
``path_labels`` (what each snapshot is), ``path_lambdas``, ``path_bpd``, ``path_target_prob``,
``path_kept`` and ``path_chosen`` (the index of the returned snapshot); ``arrays.npz`` holds their
images as ``path_images`` uint8 (S, C, H, W), and ``path.png`` shows them as one strip of
thumbnails from the simplest snapshot to the original (:func:`path_order`).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._io import atomic_write, dumps_json, save_json
from .codecs import codec_bpd, to_uint8_images
from .simplification import SimplificationResult
from .simplification.factorised import kept_axis_maps

# ---- file names
REPORT_FILE = "report.html"
EXPLAIN_RESULTS_FILE = "results.json"
AUDIT_RESULTS_FILE = "results.jsonl"
AUDIT_SUMMARY_FILE = "summary.json"
AUDIT_SETTINGS_FILE = "audit.json"
#: ``audit --simplifier auto``: the simplifier trained on the audited data (reused on resume)
AUDIT_SIMPLIFIER_FILE = "simplifier.pt"
COMPARISON_CSV_FILE = "comparison.csv"
COMPARISON_JSON_FILE = "comparison.json"
IMAGES_DIR = "images"

#: Display names of the maps the jobs write (explainer names are shown as they are).
MAP_TITLES = {"simplebits": "SimpleBits", "bits_removed": "bits removed"}


def map_title(key: str) -> str:
    """The display name of a map."""
    return MAP_TITLES.get(key, key)


def safe_stem(name: str, max_len: int = 40) -> str:
    """A file-name-safe version of ``name`` (letters, digits, ``._-``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._") or "image"
    return stem[:max_len]


def class_name(index: int, class_names: Sequence[str] | None) -> str:
    return str(class_names[index]) if class_names and 0 <= index < len(class_names) else str(index)


def labels_on_before_after(record: dict[str, Any], arrow: str = "->") -> str:
    """A sigmoid record's labels on, before and after: ``"labels on digit, stripes -> digit"``."""
    on = [", ".join(record[k]) or "none" for k in ("on_before", "on_after")]
    return f"labels on {on[0]} {arrow} {on[1]}"


def answer_before_after(record: dict[str, Any], arrow: str = "->") -> str:
    """A record's answer before and after: the prediction, or under several sigmoid labels the labels on
    (the most probable label, which ``pred_*_name`` name, can stay on top while it switches off)."""
    if len(record.get("labels", ())) > 1:
        return labels_on_before_after(record, arrow)
    return f"{record['pred_before_name']} {arrow} {record['pred_after_name']}"


def target_not_predicted(record: dict[str, Any]) -> bool:
    """Whether a softmax record explains a class that was not the prediction: its "kept" then means the
    target kept :data:`~simplebits_audit.simplification.heads.NON_TOP_TARGET_FRACTION` of its probability."""
    return "labels" not in record and record["target"] != record["pred_before"]


def explained_name(record: dict[str, Any]) -> str:
    """What a record's simplification explained, as text: its ``explained`` labels (multi-label sigmoid), else its target's name."""
    return str(record.get("explained") or record["target_name"])


def _top(probs: torch.Tensor, k: int, class_names: Sequence[str] | None) -> list[list[Any]]:
    values, indices = probs.topk(min(k, probs.numel()))
    return [[int(i), class_name(int(i), class_names), round(float(v), 6)] for v, i in zip(values, indices)]


def path_labels(result: SimplificationResult) -> list[str]:
    """What each path snapshot is: the engine's labels, or (older engines) the lambda of each snapshot."""
    if result.path_labels is not None:
        return [str(v) for v in result.path_labels]
    lambdas = [float(v) for v in result.path_lambdas]
    return ["original" if s == 0 else f"lambda {lam:.3g}" for s, lam in enumerate(lambdas)]


def chosen_snapshot(result: SimplificationResult, i: int) -> int:
    """The index along the path of the snapshot returned for image ``i``.

    The engines return the simplest snapshot that kept the prediction (the first on ties), the
    original (index 0) if none did; the index found by that rule is checked against the returned
    image, and if they disagree the first snapshot equal to the returned image is taken. Among
    equal images (a mask that kept everything returns the original's pixels) the one whose knob is
    the result's ``lambda_chosen`` is taken, so the record's ``lambda`` and snapshot agree.
    """
    bits = result.path_bits[:, i].detach().double().cpu()
    ok = result.path_kept[:, i].cpu() & torch.isfinite(bits) & torch.isfinite(result.path_target_prob[:, i].detach().double().cpu())
    choice = int(torch.where(ok, bits, torch.full_like(bits, math.inf)).argmin()) if bool(ok.any()) else 0
    images = result.path_images[:, i].cpu()
    returned = (result.simplified[i].detach().float().clamp(0, 1).cpu() * 255).round().to(torch.uint8)
    same = [s for s in range(len(images)) if torch.equal(images[s], returned)]
    agree = [s for s in same if float(result.path_lambdas[s]) == float(result.lambda_chosen[i])] or same
    return choice if choice in agree or not agree else agree[0]


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float if it is a finite number, else None (JSON null, NaN, infinity)."""
    return float(value) if value is not None and math.isfinite(float(value)) else None


def path_order(record: dict[str, Any]) -> list[int]:
    """Indices of a record's path snapshots from the simplest (fewest bits) to the original (always last).

    Snapshots whose bits are unknown (non-finite, ``null``) come just before the original; ties keep
    the engine's order.
    """
    bpd = record["path_bpd"]

    def key(s: int) -> tuple[bool, float, int]:
        value = finite_or_none(bpd[s])
        return (s == 0, math.inf if value is None else value, s)

    return sorted(range(len(bpd)), key=key)


def simplification_records(
    result: SimplificationResult,
    *,
    ids: Sequence[str],
    names: Sequence[str],
    class_names: Sequence[str] | None = None,
    labels: Sequence[int | None] | None = None,
    paths: Sequence[str | None] | None = None,
    top_k: int = 5,
) -> list[dict[str, Any]]:
    """One JSON-able record per image of ``result`` (codec sizes included)."""
    n = len(result)
    labels = labels if labels is not None else [None] * n
    paths = paths if paths is not None else [None] * n
    # the two real-codec checks of the estimator's bits (SPEC section 6): WebP and JPEG-XL lossless
    webp_before, webp_after = codec_bpd(result.original), codec_bpd(result.simplified)
    jxl_before, jxl_after = codec_bpd(result.original, "jxl"), codec_bpd(result.simplified, "jxl")
    dims = result.original[0].numel()
    labels_path = path_labels(result)
    records = []
    for i in range(n):
        target = int(result.target[i])
        label = labels[i]
        records.append({
            "id": ids[i],
            "name": names[i],
            "path": paths[i],
            "label": None if label is None else int(label),
            "label_name": None if label is None else class_name(int(label), class_names),
            "target": target,
            "target_name": class_name(target, class_names),
            "pred_before": int(result.pred_before[i]),
            "pred_before_name": class_name(int(result.pred_before[i]), class_names),
            "pred_after": int(result.pred_after[i]),
            "pred_after_name": class_name(int(result.pred_after[i]), class_names),
            "prob_target_before": float(result.probs_before[i, target]),
            "prob_target_after": float(result.probs_after[i, target]),
            "confidence": float(result.probs_before[i].max()),
            "top_before": _top(result.probs_before[i], top_k, class_names),
            "top_after": _top(result.probs_after[i], top_k, class_names),
            "bits_before": float(result.bits_before[i]),
            "bits_after": float(result.bits_after[i]),
            "bpd_before": float(result.bpd_before[i]),
            "bpd_after": float(result.bpd_after[i]),
            "bits_retained": float(result.bits_after[i] / result.bits_before[i].clamp_min(1e-9)),
            "webp_bpd_before": float(webp_before[i]),
            "webp_bpd_after": float(webp_after[i]),
            "jxl_bpd_before": float(jxl_before[i]),
            "jxl_bpd_after": float(jxl_after[i]),
            "kept": bool(result.kept[i]),
            "lambda": float(result.lambda_chosen[i]),
            "kl": float(result.kl[i]),
            "status": result.status[i],
            # the returned image keeps nothing of the original: the flat reference alone gets this answer
            # (None: an engine without a mask, e.g. pixels, cannot say)
            "nothing_needed": None if result.mask is None else bool(result.mask[i].amax() < NOTHING_KEPT),
            "seconds": result.seconds_per_image,
            "path_lambdas": [float(v) for v in result.path_lambdas],
            "path_bpd": [float(v) / dims for v in result.path_bits[:, i]],
            "path_target_prob": [float(v) for v in result.path_target_prob[:, i]],
            "path_kept": [bool(v) for v in result.path_kept[:, i]],
            "path_labels": labels_path,
            "path_chosen": chosen_snapshot(result, i),
        })
    return records


def information_record(profile: dict[str, dict[str, torch.Tensor]], i: int, *, region: str, codec: str | None = "webp") -> dict[str, Any]:
    """Image ``i``'s entry of an information profile as strict-JSON numbers (NaN -> None).

    ``profile`` is :func:`~simplebits_audit.metrics.information_profile`'s answer; ``region`` says
    where the shares were read (``"ground-truth mask"`` or ``"whole image"``). The record holds
    ``{"region": ..., "codec": ..., "axes": {axis: {"kept_inside", "bits_removed", "codec_bits_removed"}}}``:
    ``kept_inside`` in [0, 1] (None where the axis does not apply, e.g. colour of a grey image), bits
    removed by the estimator and by the codec in bits (positive = removed).
    """
    axes = {axis: {key: finite_or_none(values[i]) for key, values in entry.items()} for axis, entry in profile.items()}
    return {"region": region, "codec": codec, "axes": axes}


def grey_map(values: np.ndarray) -> np.ndarray:
    """A map (H, W) in [0, 1] as an RGB uint8 picture on a fixed scale: black = 0 (removed), white = 1 (kept)."""
    grey = (np.clip(np.nan_to_num(values.astype(np.float64)), 0, 1) * 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, 2)


def colour_map(values: np.ndarray) -> np.ndarray:
    """A map (H, W) as an RGB uint8 picture: inferno for maps >= 0, a diverging scale centred at 0 otherwise."""
    import matplotlib

    values = np.nan_to_num(values.astype(np.float64))
    if values.min() < 0:
        scale = max(np.abs(values).max(), 1e-12)
        rgba = matplotlib.colormaps["RdBu_r"](0.5 + 0.5 * values / scale)
    else:
        scale = max(values.max(), 1e-12)
        rgba = matplotlib.colormaps["inferno"](values / scale)
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def image_folder(out_dir: str | Path, name: str) -> Path:
    """The folder of one explained image's PNGs and arrays inside a job's output folder."""
    return Path(out_dir) / IMAGES_DIR / name


#: A mask below this keeps nothing: blending less than half a grey level of the original rounds to the reference.
NOTHING_KEPT = 0.5 / 255


def explain_image_folders(records: Iterable[dict[str, Any]]) -> set[str]:
    """The names of the image folders (under ``images/``) that explain records use."""
    return {Path(r["files"]["original"]).parent.name for r in records if r.get("files", {}).get("original")}


def prune_image_folders(out_dir: str | Path, earlier: Iterable[str], keep: Iterable[str]) -> list[str]:
    """Remove the image folders an earlier explain run wrote in ``out_dir`` (``earlier``, the names its
    results listed) that the new results do not use (``keep``); returns the names removed.

    Nothing else is touched (a folder the earlier results did not list, an audit's images). Called
    after the new results and report are written, so a failed run leaves the earlier one whole.
    """
    import shutil

    root, keep = Path(out_dir) / IMAGES_DIR, set(keep)
    removed = []
    for name in sorted(set(earlier) - keep):
        folder = root / name
        if name and Path(name).name == name and folder.is_dir() and (folder / "arrays.npz").is_file():
            shutil.rmtree(folder)
            removed.append(name)
    return removed


#: Largest side of a snapshot in ``path.png`` (the full snapshots are in ``arrays.npz``).
PATH_THUMBNAIL_SIDE = 128


def path_strip(images: np.ndarray, order: Sequence[int], side: int = PATH_THUMBNAIL_SIDE, gap: int = 2) -> np.ndarray:
    """Snapshots (S, C, H, W) uint8 as one RGB strip (h, n * w + gaps, 3), left to right in ``order``."""
    from PIL import Image

    thumbs = []
    for s in order:
        img = images[s]
        img = np.repeat(img, 3, 0) if img.shape[0] == 1 else img
        pil = Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0)))
        if max(pil.size) > side:
            pil.thumbnail((side, side), Image.Resampling.LANCZOS)
        thumbs.append(np.asarray(pil))
    h = max(t.shape[0] for t in thumbs)
    strip = np.full((h, sum(t.shape[1] for t in thumbs) + gap * (len(thumbs) - 1), 3), 255, np.uint8)
    x = 0
    for t in thumbs:
        strip[: t.shape[0], x : x + t.shape[1]] = t
        x += t.shape[1] + gap
    return strip


def save_artifacts(
    folder: str | Path,
    original: torch.Tensor,
    simplified: torch.Tensor,
    maps: dict[str, torch.Tensor],
    path: torch.Tensor | None = None,
    order: Sequence[int] | None = None,
    axes: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Write one image's PNGs and ``arrays.npz`` into ``folder`` (atomically); return their names.

    ``original``/``simplified`` are pixel images (C, H, W); ``maps`` maps names to (1, H, W) or
    (H, W) tensors; ``path`` (optional) holds the path's snapshots (S, C, H, W) uint8, saved as
    ``path_images`` and drawn into ``path.png`` in ``order`` (default: as given; see :func:`path_order`). Names in
    the returned dict are relative to ``folder``'s parent's parent (the job's output directory)
    so that records stay valid when the directory moves. ``axes`` (optional): the factorised
    engine's masks, axis -> (1, H, W) in [0, 1], saved raw as ``axis_<axis>`` and drawn as
    ``axis_<axis>.png`` (``factorised.kept_axis_maps``, :func:`grey_map`); listed under ``files["axes"]``.
    """
    from PIL import Image

    folder = Path(folder)
    rel = Path(folder.parent.name) / folder.name
    images = dict(zip(("original", "simplified"), to_uint8_images(torch.stack([original, simplified]))))
    arrays = {f"image_{k}": v for k, v in images.items()}
    files: dict[str, Any] = {"maps": {}}
    for key, img in images.items():
        atomic_write(folder / f"{key}.png", lambda tmp, img=img: Image.fromarray(img).save(tmp, format="PNG"))
        files[key] = str(rel / f"{key}.png")
    for key, value in maps.items():
        array = value.detach().float().cpu().reshape(value.shape[-2:]).numpy()
        arrays[f"map_{key}"] = array.astype(np.float32)
        name = f"map_{safe_stem(key)}.png"
        atomic_write(folder / name, lambda tmp, a=array: Image.fromarray(colour_map(a)).save(tmp, format="PNG"))
        files["maps"][key] = str(rel / name)
    if axes is not None:
        files["axes"] = {}
        raw = {k: v.detach().float().cpu().reshape(v.shape[-2:]) for k, v in axes.items()}
        kept = kept_axis_maps(raw)
        for key in axes:
            arrays[f"axis_{key}"] = raw[key].numpy().astype(np.float32)
            name = f"axis_{safe_stem(key)}.png"
            picture = grey_map(kept[key].numpy())
            atomic_write(folder / name, lambda tmp, p=picture: Image.fromarray(p).save(tmp, format="PNG"))
            files["axes"][key] = str(rel / name)
    if path is not None:
        snapshots = path.detach().cpu().to(torch.uint8).numpy()
        arrays["path_images"] = snapshots
        strip = path_strip(snapshots, range(len(snapshots)) if order is None else order)
        atomic_write(folder / "path.png", lambda tmp: Image.fromarray(strip).save(tmp, format="PNG"))
        files["path"] = str(rel / "path.png")

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    atomic_write(folder / "arrays.npz", write_npz)
    files["arrays"] = str(rel / "arrays.npz")
    return files


def load_arrays(out_dir: str | Path, record: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays saved for a record (``image_original``, ``image_simplified``, ``map_<name>``,
    ``path_images``, ``axis_<axis>``); no pickles."""
    path = Path(out_dir) / record["files"]["arrays"]
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# ---------------------------------------------------------------------------------------------
# explain: one JSON file


def write_explain_results(out_dir: str | Path, settings: dict[str, Any], records: Sequence[dict[str, Any]]) -> Path:
    """Write ``results.json`` (settings and records, strict JSON) atomically."""
    return save_json({"settings": settings, "images": list(records)}, Path(out_dir) / EXPLAIN_RESULTS_FILE)


def read_explain_results(out_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(settings, records)`` of an explain run; ``ValueError`` naming ``out_dir`` if it has none."""
    path = Path(out_dir) / EXPLAIN_RESULTS_FILE
    if not path.is_file():
        raise ValueError(f"out_dir: {str(out_dir)!r} has no {EXPLAIN_RESULTS_FILE}")
    results = json.loads(path.read_text(encoding="utf-8"))
    return results["settings"], results["images"]


# ---------------------------------------------------------------------------------------------
# audit: records appended line by line (flushed), read back tolerantly, merged at the end


def rank_results_file(out_dir: str | Path, rank: int, world_size: int) -> Path:
    """The file a process appends its records to: ``results.jsonl`` alone, ``results.rank<r>.jsonl`` under torchrun."""
    return Path(out_dir) / (AUDIT_RESULTS_FILE if world_size == 1 else f"results.rank{rank}.jsonl")


def results_files(out_dir: str | Path) -> list[Path]:
    """Every audit results file in ``out_dir`` (the merged one and the per-rank ones)."""
    return sorted(Path(out_dir).glob("results*.jsonl"))


def read_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every complete record in the files (a torn last line from a kill is ignored)."""
    records = []
    for path in paths:
        for line in path.read_bytes().split(b"\n"):
            try:  # a kill can tear a line anywhere, even inside a multi-byte character
                records.append(json.loads(line.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
    return records


def cut_torn_line(path: Path) -> None:
    """Drop an incomplete last line (the process died mid-write) so appends start on a fresh line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def append_records(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Append records as strict JSON lines, flushed to disk before returning."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(dumps_json(r) + "\n" for r in records))
        handle.flush()
        os.fsync(handle.fileno())


def write_records(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    """Write records as strict JSON lines, atomically (the merged ``results.jsonl``)."""
    text = "".join(dumps_json(r) + "\n" for r in records)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@dataclass
class AuditResults:
    """What a finished audit wrote: its settings (``audit.json``), summary and records."""

    settings: dict[str, Any]
    summary: dict[str, Any]
    records: list[dict[str, Any]]


def read_audit(out_dir: str | Path) -> AuditResults:
    """Read a finished audit; ``ValueError`` naming ``out_dir`` if a file is missing."""
    out_dir = Path(out_dir)
    for name in (AUDIT_SUMMARY_FILE, AUDIT_RESULTS_FILE, AUDIT_SETTINGS_FILE):
        if not (out_dir / name).is_file():
            raise ValueError(f"out_dir: {str(out_dir)!r} has no {name} (is the audit finished?)")
    summary = json.loads((out_dir / AUDIT_SUMMARY_FILE).read_text(encoding="utf-8"))
    settings = json.loads((out_dir / AUDIT_SETTINGS_FILE).read_text(encoding="utf-8"))
    lines = (out_dir / AUDIT_RESULTS_FILE).read_text(encoding="utf-8").splitlines()
    return AuditResults(settings, summary, [json.loads(line) for line in lines if line.strip()])


def job_kind(out_dir: str | Path) -> str | None:
    """``"audit"``, ``"explain"``, ``"train"`` or ``"condense"`` by the results in ``out_dir``; None if it holds none of them."""
    out_dir = Path(out_dir)
    if (out_dir / TRADEOFF_FILE).is_file():
        return "train"
    if (out_dir / CONDENSE_RESULTS_FILE).is_file():
        return "condense"
    if (out_dir / AUDIT_RESULTS_FILE).is_file():
        return "audit"
    if (out_dir / EXPLAIN_RESULTS_FILE).is_file():
        return "explain"
    return None


# ---- training with simplification (``simplebits train``)
#
# An output folder of ``train`` holds::
#
#     train.json          the settings (a rerun must agree on them to resume)
#     tradeoff.json       {"settings": {...}, "points": [one per run], "reference": name, "simplest_within_2pt": name}
#     examples.npz        uint8 validation images: "original" and one per run ("budget-0.3", "lam-0.5"), each (E, H, W, 3) or (E, H, W)
#     report.html
#     budget-<b>/         classifier.pt, simplifier.pt, history.json (budget-<b>.ckpt while it trains); lam-<lambda>/ with --lam

TRAIN_SETTINGS_FILE = "train.json"
TRADEOFF_FILE = "tradeoff.json"
TRADEOFF_EXAMPLES_FILE = "examples.npz"
#: One finished run of :func:`~simplebits_audit.training.tradeoff` (``TrainingResult.save``); history.json is written last
RUN_CLASSIFIER_FILE, RUN_SIMPLIFIER_FILE, RUN_HISTORY_FILE = "classifier.pt", "simplifier.pt", "history.json"


def strength_name(lam: float | None = None, budget: float | None = None) -> str:
    """The name of one run of a curve, its folder and its examples: ``budget-0.3`` for a bits budget,
    ``lam-0.5`` for a fixed lambda (``:g``, so distinct values must differ in 6 significant digits)."""
    return f"lam-{float(lam or 0):g}" if budget is None else f"budget-{float(budget):g}"


def strength_label(point: dict[str, Any]) -> str:
    """How a report names a curve's point: ``budget 0.3`` or ``λ=0.5``."""
    return f"λ={point['lam']:g}" if point.get("budget") is None else f"budget {point['budget']:g}"


def accuracy_delta(record: dict[str, Any], point: dict[str, Any]) -> str:
    """A run's validation accuracy minus the reference run's, in points, with the paired standard error: ``-2.6 ± 1.9``.

    Without the standard error (records written before it, or one validation image) the difference alone;
    "—" where either point has no validation accuracy.
    """
    reference = min(record["points"], key=removal_order)
    if "val_accuracy_simplified" not in reference or "val_accuracy_simplified" not in point:
        return "—"
    delta = f"{100 * (point['val_accuracy_simplified'] - reference['val_accuracy_simplified']):+.1f}"
    se = point.get("val_delta_se")
    return delta if se is None else f"{delta} ± {100 * se:.1f}"


def removal_order(point: dict[str, Any]) -> float:
    """Sort key of a curve's points, from the one asked to remove least (lambda 0, budget 1) to the most."""
    return float(point["lam"]) if point.get("budget") is None else -float(point["budget"])


def run_directory(directory: str | Path, name: str) -> Path:
    """Where :func:`~simplebits_audit.training.tradeoff` keeps the finished run ``name`` (:func:`strength_name`;
    :func:`run_checkpoint`: its resumable state)."""
    return Path(directory) / name


def run_checkpoint(directory: str | Path, name: str) -> Path:
    """The resumable state of run ``name`` while it trains: ``<name>.ckpt`` beside its folder."""
    done = run_directory(directory, name)
    return done.with_name(done.name + ".ckpt")


def write_tradeoff(out_dir: str | Path, record: dict[str, Any], examples: dict[str, np.ndarray]) -> Path:
    """Write ``tradeoff.json`` and ``examples.npz`` (uint8 arrays) atomically."""
    out_dir = Path(out_dir)

    def write_npz(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez_compressed(handle, **{k: np.asarray(v, dtype=np.uint8) for k, v in examples.items()})

    atomic_write(out_dir / TRADEOFF_EXAMPLES_FILE, write_npz)
    return save_json(record, out_dir / TRADEOFF_FILE)


def read_tradeoff(out_dir: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``tradeoff.json`` and the examples of a ``train`` output folder."""
    out_dir = Path(out_dir)
    if not (out_dir / TRADEOFF_FILE).is_file():
        raise ValueError(f"out_dir: no {TRADEOFF_FILE} in {str(out_dir)!r}")
    record = json.loads((out_dir / TRADEOFF_FILE).read_text(encoding="utf-8"))
    examples: dict[str, np.ndarray] = {}
    if (out_dir / TRADEOFF_EXAMPLES_FILE).is_file():
        with np.load(out_dir / TRADEOFF_EXAMPLES_FILE, allow_pickle=False) as arrays:
            examples = {k: arrays[k] for k in arrays.files}
    return record, examples


# =============================================================================================
# condensation (``simplebits condense``, issue #14): the condensed sets, their PNGs, one JSON of results
#
#     condense.json                       settings, data, per set: files, bits, WebP and JPEG-XL bits per image; the accuracy table
#     condensed.pt, condensed-without-bits.pt     the sets (CondensedSet.save: weights only)
#     condense-<kind>.ckpt                resumable state while condensing
#     condensed.png, condensed-without-bits.png   one row per class
#     images/condensed-<kind>/<class>-<name>-<k>.png
#     report.html

CONDENSE_RESULTS_FILE = "condense.json"
#: the kinds of condensed set a run makes: with the bits term, and the same condensation without it
CONDENSE_KINDS = ("simplified", "without_bits")
CONDENSED_FILES = {"simplified": "condensed.pt", "without_bits": "condensed-without-bits.pt"}
CONDENSED_GRID_FILES = {"simplified": "condensed.png", "without_bits": "condensed-without-bits.png"}


def condense_checkpoint(out_dir: str | Path, kind: str) -> Path:
    """Where condensing the set ``kind`` (:data:`CONDENSE_KINDS`) keeps its resumable state."""
    if kind not in CONDENSE_KINDS:
        raise ValueError(f"kind: expected one of {CONDENSE_KINDS}, got {kind!r}")
    return Path(out_dir) / f"condense-{kind.replace('_', '-')}.ckpt"


def condensed_grid(images: torch.Tensor, rows: int, scale: int = 2, gap: int = 2) -> np.ndarray:
    """Pixel images (N, C, H, W) as one RGB uint8 picture, ``rows`` rows of N / rows images (a class per row), upscaled ``scale`` x."""
    arrays = to_uint8_images(images)
    per_row = max(1, math.ceil(len(arrays) / rows))
    h, w = arrays[0].shape[:2]
    sh, sw = h * scale, w * scale
    grid = np.full((rows * (sh + gap) - gap, per_row * (sw + gap) - gap, 3), 255, np.uint8)
    for i, a in enumerate(arrays):
        a = np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a
        a = np.repeat(np.repeat(a, scale, 0), scale, 1)
        r, c = divmod(i, per_row)
        grid[r * (sh + gap) : r * (sh + gap) + sh, c * (sw + gap) : c * (sw + gap) + sw] = a
    return grid


def write_condensed_images(
    out_dir: str | Path, kind: str, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]
) -> dict[str, Any]:
    """Write a condensed set's PNGs (one per image, and the grid) atomically; return their paths relative to ``out_dir``.

    ``images`` (N, C, H, W) in [0, 1] come class by class; file names carry the class index and a
    file-name-safe class name.
    """
    from PIL import Image

    if kind not in CONDENSE_KINDS:
        raise ValueError(f"kind: expected one of {CONDENSE_KINDS}, got {kind!r}")
    out_dir = Path(out_dir)
    folder = Path(IMAGES_DIR) / f"condensed-{kind.replace('_', '-')}"
    files, counts = [], {}
    for img, label in zip(to_uint8_images(images), labels.tolist()):
        k = counts.get(label, 0)
        counts[label] = k + 1
        rel = folder / f"{label:03d}-{safe_stem(class_name(label, classes), 24)}-{k:02d}.png"
        atomic_write(out_dir / rel, lambda tmp, img=img: Image.fromarray(img).save(tmp, format="PNG"))
        files.append(str(rel))
    grid = condensed_grid(images, max(1, len(counts)))
    atomic_write(out_dir / CONDENSED_GRID_FILES[kind], lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))
    return {"images": files, "grid": CONDENSED_GRID_FILES[kind]}


def write_condense_results(out_dir: str | Path, results: dict[str, Any]) -> Path:
    """Write ``condense.json`` (strict JSON) atomically."""
    return save_json(results, Path(out_dir) / CONDENSE_RESULTS_FILE)


def read_condense_results(out_dir: str | Path) -> dict[str, Any]:
    """The results of a ``condense`` run; ``ValueError`` naming ``out_dir`` if it has none."""
    path = Path(out_dir) / CONDENSE_RESULTS_FILE
    if not path.is_file():
        raise ValueError(f"out_dir: {str(out_dir)!r} has no {CONDENSE_RESULTS_FILE} (is the condensation finished?)")
    return json.loads(path.read_text(encoding="utf-8"))

# end of condensation
# =============================================================================================
