"""Training data: labelled images as tensors, their fingerprint, and batches by step number.

Every training setting reads its data through here: a tensor of images, a map-style Dataset of
(image, label), an ``(images, labels)`` pair or (for the learned simplifier) an iterable of batches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from .._validation import check_pixel_images
from .loop import step_seed

__all__ = ["Batches", "collate", "collate_batch", "content_fingerprint", "data_fingerprint", "dataset_tensors", "labelled_tensors"]


def labelled_tensors(
    data: Any, name: str = "data", *, multilabel: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    """``(images (N, C, H, W) in [0, 1], labels, class names or None)`` of a Dataset or an ``(images, labels)`` pair.

    Labels are class indices (N,) >= 0, as long; with ``multilabel`` also label rows (N, K) of 0/1
    (a ``ValueError`` naming ``name`` otherwise).
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        images, labels = data
        labels = torch.as_tensor(labels)
    elif hasattr(data, "images") and hasattr(data, "labels") and (held := dataset_tensors(data)) is not None:
        images, labels = held
    elif hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(data, (str, bytes)):
        if len(data) == 0:
            raise ValueError(f"{name}: the dataset is empty")
        pairs = [data[i] for i in range(len(data))]
        if not all(isinstance(p, (tuple, list)) and len(p) >= 2 for p in pairs[:1]):
            raise ValueError(f"{name}: expected a Dataset of (image, label) pairs")
        images = torch.stack([torch.as_tensor(p[0]) for p in pairs])
        labels = collate(pairs)[1]
    else:
        raise TypeError(f"{name}: expected a Dataset of (image, label) pairs or an (images, labels) pair of tensors, "
                        f"got {type(data).__name__}")
    images = check_pixel_images(images, f"{name} (images)")
    if labels.dim() not in (1, 2) or len(labels) != len(images):
        raise ValueError(f"{name}: expected one label (or one row of labels) per image ({len(images)}), got labels of shape "
                         f"{tuple(labels.shape)}")
    if labels.dim() == 2 and labels.shape[1] == 1 and len(labels):  # (N, 1): one label per image
        labels = labels[:, 0]
    if labels.dim() == 2:
        if not multilabel:
            raise ValueError(f"{name}: label rows (multi-label, shape {tuple(labels.shape)}) are not taken here; "
                             "give one class index per image")
        if bool(((labels != 0) & (labels != 1)).any()):
            raise ValueError(f"{name}: label rows (multi-label) must hold 0 or 1")
    elif torch.is_floating_point(labels) or (len(labels) and int(labels.min()) < 0):
        raise ValueError(f"{name}: labels must be class indices >= 0")
    classes = getattr(data, "classes", None)
    return images, labels.long(), list(map(str, classes)) if classes is not None else None


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of 8-bit images (N, C, H, W) and labels (N,): which data a condensed set was made from."""
    digest = hashlib.sha256()
    digest.update(str((tuple(images.shape), tuple(labels.shape))).encode())
    digest.update((images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes())
    digest.update(labels.detach().cpu().long().numpy().tobytes())
    return digest.hexdigest()


def content_fingerprint(data: Any) -> str:
    """What a resumable run trained on, so that a checkpoint of other data is refused rather than reused silently.

    Data held as tensors (a tensor of images, a ``TensorDataset``, a testbed): all of it
    (:func:`data_fingerprint`). Any other dataset, which would have to be read whole: its length and
    its first and last images, which tell another set of images apart but not one changed image in
    between (the command line adds its files' sizes and times). A loader without ``len`` and
    indexing: its type only. The same on every process of a distributed run.
    """
    tensors = dataset_tensors(data)
    if tensors is not None:
        return data_fingerprint(*tensors)[:16]
    if isinstance(data, torch.Tensor):
        return data_fingerprint(data, torch.zeros(0))[:16]
    digest = hashlib.sha256(type(data).__name__.encode())
    if hasattr(data, "__len__") and hasattr(data, "__getitem__") and len(data) > 0:
        digest.update(str(len(data)).encode())
        for i in (0, len(data) - 1):
            item = data[i]
            image = item[0] if isinstance(item, (tuple, list)) else item
            if isinstance(image, torch.Tensor):
                digest.update((image.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def dataset_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(images, labels) of a dataset that holds them as tensors (a ``TensorDataset``, a testbed), else None."""
    from torch.utils.data import TensorDataset

    if isinstance(data, TensorDataset) and len(data.tensors) >= 2:
        return data.tensors[0], data.tensors[1]
    if isinstance(getattr(data, "images", None), torch.Tensor) and getattr(data, "labels", None) is not None:
        try:
            return data.images, torch.as_tensor(data.labels)
        except (TypeError, ValueError, RuntimeError):  # labels not one tensor (a list of rows): read item by item
            return None
    return None


class Batches:
    """Training batches by step number: the same ``(seed, step, rank)`` always gives the same batch.

    Tensors and map-style datasets are sampled at random (with replacement across steps), so a
    resumed run sees exactly the batches the uninterrupted run would have seen. An iterable of
    batches is cycled in its own order (a resumed run starts it over).
    """

    def __init__(self, data: Any, batch_size: int, seed: int, rank: int = 0) -> None:
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.iterable: Iterable | None = None
        if isinstance(data, torch.Tensor):
            check_pixel_images(data, "data")
            self.tensor, self.dataset, self.n = data, None, len(data)
        elif isinstance(data, Dataset) and hasattr(data, "__len__"):
            self.tensor, self.dataset, self.n = None, data, len(data)  # type: ignore[arg-type]
        elif isinstance(data, Iterable):
            self.tensor, self.dataset, self.n, self.iterable = None, None, None, data
            self._iter: Iterator | None = None
        else:
            raise TypeError(f"data: expected a tensor of images, a Dataset of (image, label) or an iterable of batches, "
                            f"got {type(data).__name__}")
        if self.n is not None and self.n < 1:
            raise ValueError("data: no images")

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.iterable is not None:
            return self._next_from_iterable()
        generator = torch.Generator().manual_seed(step_seed(self.seed, step, self.rank))
        idx = torch.randint(self.n, (self.batch_size,), generator=generator)
        if self.tensor is not None:
            return self.tensor[idx], None
        items = [self.dataset[int(i)] for i in idx]
        return collate(items)

    def _next_from_iterable(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        for _ in range(2):
            if self._iter is None:
                self._iter = iter(self.iterable)
            try:
                return collate_batch(next(self._iter))
            except StopIteration:
                self._iter = None
        raise ValueError("data: the iterable of batches is empty")

    def peek(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The first batch, without advancing a stream of batches."""
        if self.iterable is not None:
            for batch in self.iterable:
                return collate_batch(batch)
            raise ValueError("data: the iterable of batches is empty")
        return self(0)

    def sample(self, n: int) -> torch.Tensor:
        """Up to ``n`` images for the card's held-out check when none were given (the first ones)."""
        if self.tensor is not None:
            return self.tensor[:n]
        if self.dataset is not None:
            return collate([self.dataset[i] for i in range(min(n, self.n))])[0]
        return self.peek()[0][:n]

    def spread(self, n: int) -> torch.Tensor:
        """Up to ``n`` images at evenly spaced indices (a dataset sorted by class gives every class); a stream: its first batch."""
        if self.n is None:
            return self.peek()[0][:n]
        k = min(n, self.n)
        idx = torch.arange(k) * (self.n - 1) // max(k - 1, 1)  # integers: exact at any size
        return self.tensor[idx] if self.tensor is not None else collate([self.dataset[int(i)] for i in idx])[0]


def collate(items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Items of a map-style dataset (images, or (image, label) pairs) -> ``(images (B, C, H, W), labels or None)``.

    Labels: (B,) class indices, or (B, K) label rows (multi-label), in their own dtype (checked later).
    """
    if isinstance(items[0], (tuple, list)):
        images = torch.stack([torch.as_tensor(it[0]) for it in items])
        labels = [torch.as_tensor(it[1]) for it in items]
        if labels[0].numel() == 1:  # a class index, also as a one-element tensor
            return images, torch.stack([label.reshape(()) for label in labels])
        return images, torch.stack(labels)  # label rows; their dtype is kept: the checks refuse non-integer values
    return torch.stack([torch.as_tensor(it) for it in items]), None


def collate_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One batch of an iterable (a tensor, or an (images, labels) pair) -> ``(images, labels or None)``.

    ``TypeError`` naming ``data`` for anything else.
    """
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
        return batch[0], torch.as_tensor(batch[1])
    raise TypeError(f"data: each batch must be a tensor of images or an (images, labels) pair, got {type(batch).__name__}")
