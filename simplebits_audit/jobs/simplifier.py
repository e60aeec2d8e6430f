"""The train-simplifier job: fit a learned simplifier to a model on a dataset, score a held-out share, write the file.

Data comes from the same sources as the audit (ImageFolder, CSV of ``path,label``, testbed name),
read lazily. A share of the images is held out and scored at the end (top-1 kept and bits kept of
the one-pass output), and the scores go into the simplifier's card. Training writes a checkpoint
beside the output (``<out>.ckpt``) and resumes from it, so rerunning an interrupted command
continues where it stopped; under ``torchrun`` every process trains on its share of each batch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..estimators import BitEstimator
from ..simplification.learned import Simplifier
from ..training.simplifier import train_simplifier
from .checks import check_out_file, job_device
from .distributed import join_world
from .options import ModelOptions, RunOptions, take_options
from .sources import AuditItem, AuditSource, FileSource, hold_out, open_source

#: At most this many held-out images are scored for the card.
MAX_HELD_OUT = 512


class SourceImages(Dataset):
    """A source's images (pixels, C x H x W) as a map-style Dataset.

    The job leaves out files whose header cannot be read before training (:func:`check_files`). A
    file that passes that look but fails to decode (a truncated image) is replaced by the next
    readable one, so that a long run does not end mid-way, and its id is added to ``replaced``: the
    job says so and the simplifier's card records it.
    """

    def __init__(self, source: AuditSource, items: list[AuditItem]) -> None:
        self.source, self.items = source, items
        self.replaced: set[str] = set()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        for k in range(len(self.items)):
            item = self.items[(i + k) % len(self.items)]
            try:
                return self.source.load(item)
            except ValueError:
                self.replaced.add(item.id)
        raise ValueError(f"data: none of the {len(self.items)} images of {self.source.name!r} is readable")


def files_fingerprint(items: list[AuditItem]) -> str | None:
    """A short hash of the items' files (path, size, modification time), None for items without files (a testbed):
    a checkpoint of the same folder whose images changed is then refused, not resumed (the library reads only
    a dataset's first and last images)."""
    paths = [it.path for it in items if it.path is not None]
    if not paths:
        return None
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()[:12]


def check_files(source: AuditSource) -> list[str]:
    """The ids of a file source's images whose header cannot be read (to leave out); ``ValueError`` naming
    ``data`` if the others come out of its preprocessing at different sizes.

    Training stacks images into batches, so torch's own error would come only when such a batch is
    drawn, mid-training, and a file left to fail then would have to be replaced in its batch. Only the
    files' headers are read; a testbed (one size, no files) needs no look.
    """
    from PIL import Image

    if not isinstance(source, FileSource):
        return []
    prep = source.preprocessing
    shapes: dict[tuple[int, int], tuple[int, int]] = {}  # file (H, W) -> after the preprocessing
    first: tuple[str, tuple[int, int]] | None = None
    unreadable = []
    for item in source.items:
        try:
            with Image.open(item.path) as im:
                w, h = im.size
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            unreadable.append(item.id)
            continue
        if prep.crop is not None:  # every image comes out crop x crop
            continue
        if (h, w) not in shapes:  # the resize itself on a meta tensor: its output size, exactly, without pixels
            shapes[h, w] = tuple(prep.apply(torch.empty(1, 1, h, w, device="meta")).shape[-2:])
        shape = shapes[h, w]
        if first is None:
            first = (item.id, shape)
        elif shape != first[1]:
            raise ValueError(f"data: images of different sizes in {source.name!r} ({first[0]!r} {first[1][0]} x {first[1][1]}, "
                             f"{item.id!r} {shape[0]} x {shape[1]}); give --size and --crop so that they agree")
    return unreadable


def checkpoint_path(out: str | Path) -> Path:
    """Where training on the way to ``out`` keeps its resumable state."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def train_simplifier_job(
    model: Any,
    data: str | Path | AuditSource,
    out: str | Path,
    *,
    model_options: ModelOptions | None = None,
    run: RunOptions | None = None,
    held_out: float = 0.1,
    split: str = "train",
    estimator: BitEstimator | str | None = None,
    lam: float | None = None,
    margin: float | None = None,
    deletion: float | None = None,
    order_steps: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    testbed_n: int | None = None,
    **options: Any,
) -> Simplifier:
    """Train a :class:`Simplifier` for ``model`` on ``data`` and write it to ``out`` (atomically).

    Parameters
    ----------
    model : callable
        The classifier (model-space images -> logits). Never modified.
    data : path, testbed name or AuditSource
        An ImageFolder directory, a CSV of ``path,label`` or a testbed name (its ``split``).
    out : path
        The simplifier file (``.pt``); ``<out>.ckpt`` holds the resumable training state.
    model_options : ModelOptions, optional
        The model's preprocessing (its normalisation: the simplifier works in pixel space), output
        head (``"sigmoid"``: one logit per label, a single logit for a binary classifier) and the
        sigmoid head's "on" probability, as for :func:`~simplebits_audit.train_simplifier`.
    run : RunOptions, optional
        Device (the model's by default; if given, it must be the model's; under torchrun with
        CUDA, each rank's ``cuda:LOCAL_RANK``), seed, progress.
    held_out : float
        Share of the images (every ``1/held_out``-th one, at most :data:`MAX_HELD_OUT`) kept out of
        training and scored at the end; 0 scores training images instead (the card says so).
    split : {"train", "test"}
        Which split of a testbed to train on.
    lam, margin, deletion, order_steps, steps, batch_size : optional
        As :func:`~simplebits_audit.train_simplifier`.
    testbed_n : int, optional
        Number of testbed images.
    **options
        Fields of the model and run options, overriding the objects' (e.g. ``head="sigmoid"``, ``seed=3``).

    Returns
    -------
    Simplifier
        Also written to ``out``; its card holds the held-out top-1 kept and bits kept.
    """
    mo, run = take_options("train_simplifier_job", options, (ModelOptions, model_options), (RunOptions, run))
    preprocessing, seed = mo.preprocessing, run.seed
    if not 0 <= held_out < 1:
        raise ValueError(f"held_out: expected a share in [0, 1), got {held_out}")
    out = check_out_file(out, ".pt", "simplifier.pt")
    if isinstance(data, AuditSource):
        source = data
    else:
        # only the images are used (the model's own answers are kept), so a multi-label testbed is fine
        source = open_source(data, preprocessing=preprocessing, testbed_n=testbed_n, seed=seed, split=split, multilabel=True,
                             sorted_names=True)
    unreadable = set(check_files(source))
    items = [it for it in source.items if it.id not in unreadable]
    if not items:
        raise ValueError(f"data: none of the {len(unreadable)} images of {source.name!r} is readable")
    train_items, scored = hold_out(items, held_out, MAX_HELD_OUT)
    if not train_items:
        raise ValueError(f"data: {source.name!r} has no images left to train on after holding out {held_out:.0%}")
    world, device = join_world(job_device(model, run.device))
    try:
        held_out_source, train_source = SourceImages(source, scored), SourceImages(source, train_items)
        held_out_images = torch.stack([held_out_source[i] for i in range(len(scored))]) if scored else None
        simplifier = train_simplifier(
            model, train_source, estimator=estimator, lam=lam, margin=margin, deletion=deletion,
            order_steps=order_steps, steps=steps, batch_size=batch_size, held_out=held_out_images,
            normalization=preprocessing.normalization, checkpoint=checkpoint_path(out),
            data_description=f"{source.name} ({len(train_items)} training images, {len(scored)} held out"
                             + (f"; files {files}" if (files := files_fingerprint(train_items + scored)) else "") + ")", device=device,
            seed=seed, show_progress=run.show_progress, head=mo.head, threshold=mo.threshold,
        )
        # every rank's (a truncated file may be drawn on one rank only); a replaced image's place went to the next one
        replaced = set().union(*world.all_gather(sorted(train_source.replaced | held_out_source.replaced))) - unreadable
        if skipped := sorted(unreadable | replaced):  # what the CLI warns about
            simplifier.card["skipped_images"] = {"count": len(skipped), "first": skipped[0], "left_out": len(unreadable),
                                                  "replaced_in_batches": len(replaced)}
        if world.is_main:
            simplifier.save(out)
        world.barrier()
    finally:
        world.close()
    return simplifier


__all__ = ["MAX_HELD_OUT", "SourceImages", "check_files", "checkpoint_path", "train_simplifier_job"]
