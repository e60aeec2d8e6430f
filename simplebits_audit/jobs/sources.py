"""What an audit reads: an ``ImageFolder`` directory, a CSV of ``path,label``, or a testbed.

Every source is a list of :class:`AuditItem` (id, path, label, index) plus a way to load one
item's pixels. Items are listed without reading any image, and images are read lazily, one batch
at a time, so memory stays bounded however large the dataset is. An unreadable image does not
stop the audit: :meth:`AuditSource.load` raises ``ValueError`` and the caller records it as skipped.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .._helpers import class_index_of
from .._io import read_utf8
from ..preprocessing import Preprocessing


@dataclass(frozen=True)
class AuditItem:
    """One image of the dataset: a stable id, where it comes from, its label (or None)."""

    index: int
    id: str
    path: str | None
    label: int | tuple[int, ...] | None  # a tuple: a row of 0/1 labels (multi-label testbeds, training only)


class AuditSource:
    """Items plus lazy loading. Subclasses set ``items``, ``class_names`` and implement ``_pixels``."""

    name: str
    items: list[AuditItem]
    class_names: list[str] | None
    #: whether :meth:`mask` localises the evidence (a testbed whose mask is the whole image does not)
    has_localisation: bool = False

    def __init__(self, preprocessing: Preprocessing | None = None) -> None:
        self.preprocessing = preprocessing or Preprocessing()

    def __len__(self) -> int:
        return len(self.items)

    def load(self, item: AuditItem) -> torch.Tensor:
        """Pixels (C, H, W) in [0, 1]; ``ValueError`` if the image cannot be read."""
        return self._pixels(item)

    def mask(self, item: AuditItem) -> torch.Tensor | None:
        """Ground-truth mask (1, H, W) bool, where the source has one."""
        return None

    def _pixels(self, item: AuditItem) -> torch.Tensor:
        raise NotImplementedError


class FileSource(AuditSource):
    """Image files with optional labels (from ``ImageFolder`` or a CSV)."""

    def __init__(self, name: str, entries: Sequence[tuple[str, int | None]],
        class_names: list[str] | None, preprocessing: Preprocessing | None) -> None:
        super().__init__(preprocessing)
        self.name, self.class_names = name, class_names
        root = Path(name) if Path(name).is_dir() else Path(name).parent
        self.items = []
        for i, (path, label) in enumerate(entries):
            rel = Path(path).relative_to(root) if Path(path).is_relative_to(root) else Path(path)
            self.items.append(AuditItem(i, str(rel), str(path), label))

    def _pixels(self, item: AuditItem) -> torch.Tensor:
        return self.preprocessing.load(item.path, name="image")[0]


class TestbedSource(AuditSource):
    """The test split of an offline testbed (images generated in memory, masks known)."""

    def __init__(self, name: str, n: int | None = None, seed: int = 0, split: str = "test") -> None:
        from .. import testbeds

        super().__init__(None)
        self.data = testbeds.load(name, split, n=n, seed=seed)
        self.name, self.class_names = f"testbed:{name}", list(self.data.classes)
        self.has_localisation = bool(self.data.has_localisation)
        self.items = [AuditItem(i, f"{name}-{split}-{i:06d}", None, tuple(label) if isinstance(label, list) else label)  # a list: a row
                      for i, label in enumerate(self.data.labels.tolist())]

    def _pixels(self, item: AuditItem) -> torch.Tensor:
        return self.data.images[item.index]

    def mask(self, item: AuditItem) -> torch.Tensor | None:
        return self.data.masks[item.index] if self.has_localisation else None


def _image_folder(root: Path, preprocessing: Preprocessing | None, class_names: Sequence[str] | None, name: str = "data") -> FileSource:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(root))
    except FileNotFoundError as err:
        raise ValueError(f"{name}: {str(root)!r} is not an ImageFolder (one sub-folder per class): {err}") from None
    # Every file with an image extension is listed; unreadable ones are recorded as skipped later.
    if class_names is not None:
        names = list(class_names)
        named = [c for c in classes if c in names]
        if len(named) == len(classes):  # folders named after classes: index by the given order
            class_to_idx = {c: class_index_of(c, names, name, "give the classes unique names (--labels)") for c in classes}
        elif named:  # some folders are class names, others not: taken in order, a named folder could get another's name
            others = [c for c in classes if c not in names]
            raise ValueError(f"{name}: class folders {others[:3]} are not among the class names (--labels), while "
                             f"{named[:3]} are; name every folder after its class, or give names that match no folder "
                             "(the sorted folders then take them in order)")
        elif len(classes) != len(names):  # otherwise the sorted folders must line up with the names
            raise ValueError(f"{name}: {len(classes)} class folders, {len(names)} class names (--labels)"
                ", and the folder names are not class names")
    entries = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    if not entries:
        raise ValueError(f"{name}: {str(root)!r} holds no image files in its class folders")
    return FileSource(str(root), entries, list(class_names) if class_names is not None else classes, preprocessing)


def _csv(path: Path, class_names: list[str] | None, preprocessing: Preprocessing | None, name: str = "data",
         sorted_names: bool = False) -> FileSource:
    text = read_utf8(path, name)  # decoded whole: an error's offset is the file's (a text stream's is its buffer's)
    rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    if not rows:
        raise ValueError(f"{name}: {str(path)!r} has no rows; expected 'path,label' lines")
    names = list(class_names) if class_names else None
    raw = [r[1].strip() for r in rows if len(r) > 1 and r[1].strip()]
    if names is None and raw and not all(v.lstrip("-").isdigit() for v in raw) and sorted_names:
        names = sorted(set(raw))  # a classifier trained from these labels takes their order as an ImageFolder does
    elif names is None and raw and not all(v.lstrip("-").isdigit() for v in raw):
        # The class order (which index each name is) cannot be guessed from names: ask for it.
        raise ValueError(f"{name}: {str(path)!r} gives labels as class names, whose order cannot be guessed; give the class "
                         "names in order (class_names, --labels where the command has it) or write class indices")
    entries = []
    for line, row in enumerate(rows, start=1):
        file = Path(row[0].strip())
        file = file if file.is_absolute() else path.parent / file
        value = row[1].strip() if len(row) > 1 else ""
        if not value:
            label = None
        elif names is not None and value in names:
            label = class_index_of(value, names, name, "write its class index instead")
        elif value.lstrip("-").isdigit():
            label = int(value)
        else:
            raise ValueError(f"{name}: {str(path)!r} row {line}: label {value!r} is neither a class index nor a class name")
        entries.append((str(file), label))
    seen: set[str] = set()
    for file, _ in entries:
        if file in seen:
            raise ValueError(f"{name}: {str(path)!r} lists {file!r} twice")
        seen.add(file)
    return FileSource(str(path), entries, names, preprocessing)


def hold_out(items: Sequence[AuditItem], share: float, limit: int) -> tuple[list[AuditItem], list[AuditItem]]:
    """(training items, held-out items): every ``1/share``-th item held out, at most ``limit`` of them (share 0: none)."""
    every = math.ceil(1 / share) if share > 0 else 0
    held = [it for i, it in enumerate(items) if every and i % every == every - 1][:limit]
    ids = {it.index for it in held}
    return [it for it in items if it.index not in ids], held


def load_labelled(
    source: AuditSource, items: Sequence[AuditItem], what: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, list[str]]:
    """Read labelled items into memory (the training jobs): images (N, C, H, W), labels (N,) or rows (N, K), masks
    (N, 1, H, W) where the source has one for every image (else None), and the ids of the items
    skipped (unreadable or unlabelled). ``what`` names the argument in errors."""
    images, labels, masks, skipped = [], [], [], []
    for item in items:
        if item.label is None:
            skipped.append(item.id)
            continue
        try:
            images.append(source.load(item))
        except ValueError:
            skipped.append(item.id)
            continue
        labels.append(item.label)
        masks.append(source.mask(item))
    if not images:
        raise ValueError(f"{what}: none of the {len(items)} images of {source.name!r} is readable and labelled")
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        raise ValueError(f"{what}: images of {len(shapes)} different shapes in {source.name!r}; give --size and --crop so that they agree")
    stacked_masks = torch.stack(masks) if all(m is not None for m in masks) else None
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), stacked_masks, skipped  # label tuples: rows (N, K)


def open_source(
    data: str | Path,
    *,
    preprocessing: Preprocessing | None = None,
    class_names: Sequence[str] | None = None,
    testbed_n: int | None = None,
    seed: int = 0,
    split: str = "test",
    multilabel: bool = False,
    name: str = "data",
    sorted_names: bool = False,
) -> AuditSource:
    """Open ``data``: an ImageFolder directory, a ``.csv`` of ``path,label``, or a testbed name.

    Errors name ``name``, the caller's parameter (e.g. ``test_data`` for a second source).

    ``class_names`` (e.g. from ``--labels``) override the folder names / CSV label names; a
    testbed gives its ``split`` (the test split by default: what an audit looks at). Multi-label
    testbeds (a row of labels per image) only with ``multilabel`` (the jobs that
    take them: train, train-simplifier). ``sorted_names``: a CSV labelled by class names, without
    ``class_names``, takes them in sorted order, as an ImageFolder its folders (the jobs whose
    classes the data defines or that use no labels: train, train-simplifier); else it is refused.
    """

    text = str(data)
    path = Path(text)
    if path.is_dir():
        source: AuditSource = _image_folder(path, preprocessing, class_names, name)
    elif path.is_file() and path.suffix.lower() == ".csv":
        source = _csv(path, list(class_names) if class_names else None, preprocessing, name, sorted_names)
    elif text.removeprefix("testbed:") in _multilabel_testbeds() and not multilabel:
        raise ValueError(f"{name}: {text!r} is a multi-label testbed (a row of labels per image), which only `simplebits train` and "
                         "`train-simplifier` take; "
                         f"choose from {_audit_testbeds()}")
    elif text in (known := _audit_testbeds() + (_multilabel_testbeds() if multilabel else [])) or text.startswith("testbed:"):
        testbed = text.removeprefix("testbed:")
        if testbed not in known:
            raise ValueError(f"{name}: unknown testbed {testbed!r} for a dataset job; choose from {known}")
        if testbed_n is not None and testbed_n < 1:  # named here: the testbed's own check names its ``n``
            raise ValueError(f"testbed_n: expected at least 1 image, got {testbed_n}")
        source = TestbedSource(testbed, n=testbed_n, seed=seed, split=split)
    elif path.exists():
        raise ValueError(f"{name}: {text!r} is neither a folder nor a .csv file")
    else:
        raise ValueError(f"{name}: {text!r} does not exist and is not a testbed name ({_audit_testbeds()})")
    if class_names is not None:
        source.class_names = list(class_names)
    labels = [i.label for i in source.items if isinstance(i.label, int)]
    if source.class_names is not None and labels and (max(labels) >= len(source.class_names) or min(labels) < 0):
        raise ValueError(f"{name}: labels go up to {max(labels)} but there are {len(source.class_names)} class names")
    return source


def _audit_testbeds() -> list[str]:
    """Testbeds a dataset job takes: one class index per image (a multi-label testbed has label rows)."""
    from .. import testbeds

    return [t for t in testbeds.list_testbeds(head=None) if testbeds.SIGMOID_HEADS.get(t, 1) == 1]


def _multilabel_testbeds() -> list[str]:
    """Testbeds with a row of labels per image (sigmoid heads of several logits)."""
    from .. import testbeds

    return [t for t in testbeds.list_testbeds(head=None) if testbeds.SIGMOID_HEADS.get(t, 1) > 1]


#: how an image argument names one testbed image: image INDEX of NAME's test split (seed 0, its
#: default size), the image an audit of ``testbed:NAME`` at its defaults calls ``NAME-test-INDEX``
TESTBED_IMAGE = "testbed:NAME:INDEX"


@dataclass
class ImageArguments:
    """Images given as arguments, read: ``pixels`` (N, C, H, W) in [0, 1], and per image its
    display name, file path (None for a testbed image) and true class (None when unknown: a file, a
    multi-label testbed's row); ``classes`` names the classes of those labels (the testbed's, when
    every testbed image comes from one testbed, files beside them or not; else None)."""

    pixels: torch.Tensor
    names: list[str]
    paths: list[str | None]
    labels: list[int | None]
    classes: list[str] | None = None


def load_image_arguments(images: Sequence[str | Path], preprocessing: Preprocessing | None = None, *,
                         name: str = "images") -> ImageArguments:
    """Read image files and testbed images (``testbed:NAME:INDEX``, see :data:`TESTBED_IMAGE`) into one batch.

    Files are read with ``preprocessing`` (:func:`~simplebits_audit.preprocessing.load_images`); a
    testbed image is the testbed's own pixels as they are (``preprocessing``'s size, crop and
    grayscale apply to files), named ``NAME-test-INDEX`` as in an audit at its defaults, with its
    label (None for a multi-label testbed's row). An existing file is a file whatever its name.
    Every argument is checked before any image is returned; the images must come out the same
    shape. Raises ``ValueError`` naming ``name``.
    """
    from ..preprocessing import load_images

    images = list(images)
    if not images:
        raise ValueError(f"{name}: no image given")
    specs = [_testbed_image(str(p), name) if str(p).startswith("testbed:") and not Path(p).exists() else None for p in images]
    sources = {testbed: TestbedSource(testbed, split="test") for testbed, _ in filter(None, specs)}
    for testbed, index in filter(None, specs):
        if index >= len(sources[testbed].items):
            raise ValueError(f"{name}: testbed {testbed!r} has {len(sources[testbed].items)} test images, "
                             f"so INDEX in testbed:{testbed}:INDEX goes from 0 to {len(sources[testbed].items) - 1}; got {index}")
    if preprocessing is not None and preprocessing.grayscale and any(sources[t].data.images.shape[1] != 1 for t in sources):
        raise ValueError(f"{name}: testbed images are used as they are, in colour; --grayscale applies to files only")
    files = [str(p) for p, spec in zip(images, specs) if spec is None]
    loaded = iter(load_images(files, preprocessing, name=name)) if files else iter(())
    pixels, names, paths, labels = [], [], [], []
    for p, spec in zip(images, specs):
        if spec is None:
            pixels.append(next(loaded))
            names.append(Path(p).name)
            paths.append(str(p))
            labels.append(None)
        else:
            item = sources[spec[0]].items[spec[1]]
            pixels.append(sources[spec[0]].data.images[spec[1]])
            names.append(item.id)
            paths.append(None)
            labels.append(item.label if isinstance(item.label, int) else None)
    if len(shapes := {tuple(x.shape) for x in pixels}) > 1:
        hint = "; set --size/--crop (and --grayscale) for the files" if files else ""
        raise ValueError(f"{name}: the images have different shapes (C, H, W) {sorted(shapes)}{hint}")
    origins = {spec[0] for spec in specs if spec}  # the testbeds named (files have no classes to disagree with)
    classes = list(sources[origins.pop()].class_names) if len(origins) == 1 else None
    return ImageArguments(torch.stack(pixels), names, paths, labels, classes)


def _testbed_image(text: str, name: str) -> tuple[str, int]:
    """(testbed, index) of ``testbed:NAME:INDEX``; a ``ValueError`` naming ``name`` otherwise."""
    testbed, sep, index = text.removeprefix("testbed:").rpartition(":")
    known = _audit_testbeds() + _multilabel_testbeds()
    if not sep or not (index.isascii() and index.isdigit()):
        raise ValueError(f"{name}: {text!r}: a testbed image is {TESTBED_IMAGE} (e.g. testbed:stripes:3, image 3 of its test split)")
    if testbed not in known:
        raise ValueError(f"{name}: unknown testbed {testbed!r} in {text!r}; choose from {known}")
    return testbed, int(index)
