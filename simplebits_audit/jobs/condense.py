"""The condense job: a training set condensed to a few synthetic images per class, with and without the bits term, evaluated.

Data comes from the same sources as the audit (ImageFolder, CSV of ``path,label``, testbed name)
and is read into memory (condensation samples real batches of every class at every step). Test
images are a testbed's test split, another source (``test_data``), or a held-out share of the data.

The output folder (layout: :mod:`simplebits_audit.results`, "condensation") holds the condensed
sets, their PNGs, ``condense.json`` and ``report.html``. Rerunning the same command continues:
finished sets are read back, an interrupted condensation resumes from its checkpoint, a finished
evaluation is reused when its settings agree.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from .. import results as res
from ..codecs import codec_bits
from ..estimators import BitEstimator, resolve_estimator
from ..preprocessing import Preprocessing
from ..report.condense import write_condense_report
from ..training.condensation import (
    CondensedSet,
    basis_for,
    condense,
    evaluate_condensed,
    finish_images,
)
from ..training.data import data_fingerprint
from .checks import check_out_dir, refuse_changed
from .options import CondenseOptions, RunOptions, take_options
from .sources import AuditSource, hold_out, load_labelled, open_source

#: Settings of a finished set that must agree with the command's for the set to be reused.
SET_KEYS = ("lam", "outer_steps", "match_steps", "inner_steps", "real_batch", "lr", "init_scale",
    "images_per_class", "arch", "seed", "estimator", "data", "basis", "near")
#: What a finished set saved before a setting existed was made with.
SET_KEYS_BEFORE = {"basis": "rgb", "near": 0}
#: Row names of :func:`~simplebits_audit.training.evaluate_condensed` -> what the report calls them.
ROW_TITLES = {"condensed": "condensed, simplified", "without bits term": "condensed without bits term", "random real": "random real subset"}


def run_condense(
    data: str | Path | AuditSource,
    out: str | Path,
    *,
    condensation: CondenseOptions | None = None,
    run: RunOptions | None = None,
    estimator: BitEstimator | str | None = None,
    test_data: str | Path | AuditSource | None = None,
    held_out: float = 0.2,
    testbed_n: int | None = None,
    preprocessing: Preprocessing | None = None,
    class_names: list[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Condense ``data``, evaluate the condensed sets, write images, ``condense.json`` and ``report.html`` into ``out``.

    Parameters
    ----------
    data : path, testbed name or AuditSource
        Labelled training images: an ImageFolder directory, a CSV of ``path,label`` or a testbed
        name (its train split, ``testbed_n`` images).
    out : path
        The output folder; rerunning the same command resumes there.
    condensation : CondenseOptions, optional
        Images per class, lam, architecture, outer steps, the baselines and the evaluation's
        classifiers (checked before any image is read).
    run : RunOptions, optional
        Device (default: the CPU), seed, progress.
    estimator : BitEstimator, str or path, optional
        The bit estimator (default: the package default).
    test_data : path, testbed name or AuditSource, optional
        Test images; default: a testbed's test split, else a ``held_out`` share of ``data``
        (every ``1/held_out``-th image, kept out of condensation).
    testbed_n : int, optional
        Training images when ``data`` is a testbed.
    preprocessing : Preprocessing, optional
        Resize / crop of a folder's or CSV's images (they must share one size).
    class_names : list of str, optional
        Names of the classes of a folder or CSV.
    **options
        Fields of the condensation and run options, overriding the objects' (e.g. ``lam=1``, ``seed=3``).

    Returns
    -------
    dict
        What ``condense.json`` holds: ``settings``, ``data``, ``sets`` (per kind: files, labels,
        bits, WebP and JPEG-XL bits per image, seconds) and ``evaluation`` (the accuracy table).
    """
    chosen, run = take_options("run_condense", options, (CondenseOptions, condensation), (RunOptions, run))
    device, seed, show_progress, baselines = run.device, run.seed, run.show_progress, chosen.baselines
    settings, evaluate = chosen.settings(seed), chosen.evaluation()
    arch = settings["arch"]
    if not (math.isfinite(held_out) and 0 <= held_out < 1):
        raise ValueError(f"held_out: expected a share in [0, 1), got {held_out}")
    out = check_out_dir(out, "condense")
    preprocessing = preprocessing or Preprocessing()
    source = data if isinstance(data, AuditSource) else open_source(
        data, preprocessing=preprocessing, class_names=class_names, testbed_n=testbed_n, seed=seed, split="train")
    items = list(source.items)
    testbed = source.name.startswith("testbed:")
    if test_data is not None:
        test_source = test_data if isinstance(test_data, AuditSource) else open_source(
            test_data, preprocessing=preprocessing, class_names=source.class_names, seed=seed, split="test", name="test_data")
        test_items, train_items = list(test_source.items), items
    elif testbed:
        test_source = open_source(source.name, seed=seed, split="test")
        test_items, train_items = list(test_source.items), items
    else:
        if held_out == 0:
            raise ValueError("held_out: 0 leaves no test images; give test_data (--test) or a share > 0")
        test_source = source
        train_items, test_items = hold_out(items, held_out, len(items))
    train_images, train_labels, _, skipped = load_labelled(source, train_items, "data")
    test_images, test_labels, _, test_skipped = load_labelled(test_source, test_items, "test_data")
    n_classes = len(source.class_names) if source.class_names else int(train_labels.max()) + 1
    # The test set is checked now, not after the condensations: same image shape, known classes.
    if test_images.shape[1:] != train_images.shape[1:]:
        raise ValueError(f"test_data: images of shape {tuple(test_images.shape[1:])}"
            f", the training images are {tuple(train_images.shape[1:])}; give --size")
    if int(test_labels.max()) >= n_classes or int(test_labels.min()) < 0:
        raise ValueError(f"test_data: labels up to {int(test_labels.max())}, but the training data has {n_classes} classes")
    classes = [str(c) for c in source.class_names] if source.class_names else [str(c) for c in range(n_classes)]
    if n_classes < 2:  # every model trained on it would score 100 %: a number that says nothing
        raise ValueError(f"data: {source.name!r} has one class ({classes[0]!r}); condensation needs at least two")
    if empty := sorted(set(range(n_classes)) - set(train_labels.tolist())):  # before the output folder exists
        raise ValueError(f"data: no training images of class(es) {[classes[c] for c in empty]} among {n_classes} classes; "
                         "every class needs real images to match (with class_names / --labels, one name per class of the data)")
    train = _Data(train_images, train_labels, classes)
    estimator = resolve_estimator(estimator, device=device or "cpu")
    out.mkdir(parents=True, exist_ok=True)

    settings["basis"] = basis_for(settings["basis"], train_images.shape[1])  # what the sets are made in (and the report says)
    wanted = {"simplified": settings["lam"], **({"without_bits": 0.0} if baselines else {})}
    fingerprint = data_fingerprint(train_images, train_labels)
    expected = {kind: {**settings, "lam": kind_lam, "estimator": estimator.name, "data": fingerprint} for kind, kind_lam in wanted.items()}
    found = finished_sets(out, expected)  # refuses sets made otherwise before any condensation starts
    sets: dict[str, CondensedSet] = {}
    for kind, kind_lam in wanted.items():
        path = out / res.CONDENSED_FILES[kind]
        if kind in found:
            finished, near_pass_due = found[kind]
            if not near_pass_due:
                sets[kind] = finished
            else:
                # Made without the near-lossless pass, the same otherwise: the pass is condense's last step, so only it runs.
                images, bits, near_pass = finish_images(finished.images.to(device or "cpu"), expected[kind]["near"], estimator)
                sets[kind] = CondensedSet(images.cpu(), finished.labels, bits.cpu().float(), finished.classes,
                                          {**finished.settings, "near": expected[kind]["near"], **near_pass}, finished.history)
                sets[kind].save(path)
            continue
        started = time.perf_counter()
        sets[kind] = condense(
            train, images_per_class=settings["images_per_class"], lam=kind_lam, estimator=estimator,
            arch=arch, outer_steps=settings["outer_steps"], basis=settings["basis"], near=settings["near"],
            checkpoint=res.condense_checkpoint(out, kind), device=device, seed=seed, show_progress=show_progress,
        )
        sets[kind].settings["wall_seconds_this_run"] = round(time.perf_counter() - started, 2)
        sets[kind].save(path)
        res.condense_checkpoint(out, kind).unlink(missing_ok=True)  # the finished set is what a rerun reads

    evaluation_key = {**evaluate, "arch": arch, "seed": seed, "test": data_fingerprint(test_images, test_labels),
                      "sets": {k: data_fingerprint(s.images, s.labels) for k, s in sets.items()}, "baselines": baselines}
    previous = _previous(out)
    if previous.get("evaluation_key") == evaluation_key:
        evaluation = previous["evaluation"]
    else:
        evaluation = {ROW_TITLES[k]: v for k, v in evaluate_condensed(
            sets["simplified"], (test_images, test_labels), train_data=train if baselines else None, without_bits=sets.get("without_bits"),
            arch=arch, **evaluate, estimator=estimator, device=device, seed=seed, show_progress=show_progress,
        ).items()}
    dims = math.prod(train_images.shape[1:])
    written: dict[str, Any] = {}
    for kind, cs in sets.items():
        files = res.write_condensed_images(out, kind, cs.images, cs.labels, classes)
        webp, jxl = cs.webp_bits(), cs.jxl_bits()
        written[kind] = {
            **files, "file": res.CONDENSED_FILES[kind], "labels": cs.labels.tolist(), "bits": [round(float(b), 2) for b in cs.bits],
            "webp_bits": [float(b) for b in webp], "bpd_mean": float(cs.bpd.mean()), "webp_bpd_mean": float(webp.mean() / dims),
            "jxl_bits": [float(b) for b in jxl], "jxl_bpd_mean": float(jxl.mean() / dims),
            "seconds": cs.settings.get("seconds"), "settings": cs.settings, "history": cs.history,
        }
    real_bits = estimator.bits(train_images[: 256].to(device or "cpu")).double().cpu()
    results = {
        "settings": {**settings, "estimator": estimator.name, "baselines": baselines, **evaluate,
                     "torch_threads": torch.get_num_threads(), "device": str(device or "cpu")},
        "data": {"name": source.name, "classes": classes, "train_images": len(train_labels), "test_images": len(test_labels),
                 "test": test_source.name + ("" if test_source is not source else f" (every {math.ceil(1 / held_out)}th image held out)"),
                 "skipped": skipped + test_skipped, "real_bpd_mean": float(real_bits.mean() / dims),
                 "real_webp_bpd_mean": float(codec_bits(train_images[:256]).mean() / dims),
                 "real_jxl_bpd_mean": float(codec_bits(train_images[:256], "jxl").mean() / dims)},
        "sets": written,
        "evaluation": evaluation,
        "evaluation_key": evaluation_key,
    }
    res.write_condense_results(out, results)
    write_condense_report(out)
    return results


def finished_sets(out: Path, expected: dict[str, dict[str, Any]]) -> dict[str, tuple[CondensedSet, bool]]:
    """The finished sets in ``out`` that the command can reuse, by kind, each with whether it still needs
    the near-lossless pass; ``ValueError`` naming ``out`` for one made otherwise.

    A set differing only in ``near`` is reusable when it was made without the pass (``near`` 0):
    the pass is condense's last step and runs alone. Any other difference would mean condensing again
    over a finished set, which is refused instead (it may have taken hours)."""
    found = {}
    for kind, wanted in expected.items():
        path = out / res.CONDENSED_FILES[kind]
        if not path.is_file():
            continue
        finished = CondensedSet.load(path)
        made = {k: finished.settings.get(k, SET_KEYS_BEFORE.get(k)) for k in SET_KEYS}
        changed = [k for k in SET_KEYS if made[k] != wanted.get(k) and not (k == "near" and made[k] == 0)]
        refuse_changed(out, f"a finished condensed set ({res.CONDENSED_FILES[kind]})", changed)
        found[kind] = (finished, made["near"] != wanted.get("near"))
    return found


class _Data:
    """Images, labels and class names in the form :func:`condense` reads (a testbed-like object)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> None:
        self.images, self.labels, self.classes = images, labels, classes

    def __len__(self) -> int:
        return len(self.labels)


def _previous(out: Path) -> dict[str, Any]:
    try:
        return res.read_condense_results(out)
    except ValueError:
        return {}


__all__ = ["ROW_TITLES", "SET_KEYS", "finished_sets", "run_condense"]
