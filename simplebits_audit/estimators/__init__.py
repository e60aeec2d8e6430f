"""Bit estimators: frozen generative image models that say how many bits an image costs.

Adding an estimator is one module defining a :class:`BitEstimator` subclass plus one entry in
:data:`ARCHITECTURES` (and, if it ships weights, a file pair in ``weights/``).
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .analytic import AnalyticCoder
from .base import BitEstimator
from .context import ContextCoder
from .glow import Glow
from .pixelcnn import LocalPixelCNN

#: architecture name -> class; every class is constructible from its ``config`` dict
ARCHITECTURES: dict[str, type[BitEstimator]] = {
    "analytic": AnalyticCoder,
    "pixelcnn": LocalPixelCNN,
    "glow": Glow,
    "context": ContextCoder,
}

#: the estimator :func:`load_estimator` returns when given no name
DEFAULT_ESTIMATOR = "analytic"

_WEIGHTS = resources.files(__package__) / "weights"


def list_estimators() -> list[str]:
    """Names accepted by :func:`load_estimator` (architectures with shipped weights, or none needed)."""
    return [name for name, cls in ARCHITECTURES.items() if _needs_no_weights(cls) or (_WEIGHTS / f"{name}.pt").is_file()]


def model_card(name: str) -> dict[str, Any]:
    """The model card of a registered estimator (training data, steps, held-out bpd, ...)."""
    _check_name(name)
    card_file = _WEIGHTS / f"{name}.json"
    if card_file.is_file():
        return json.loads(card_file.read_text())
    return dict(ARCHITECTURES[name]().card)


def load_estimator(
    name_or_path: str | Path | None = None, *, device: str | torch.device | None = None
) -> BitEstimator:
    """Load a frozen bit estimator by registry name or from a checkpoint file.

    Parameters
    ----------
    name_or_path : str or Path, optional
        A name from :func:`list_estimators` (default: :data:`DEFAULT_ESTIMATOR`), or the path of a
        checkpoint written by :func:`simplebits_audit.estimators.training.train_estimator`.
        Checkpoints are read with ``weights_only=True``: no pickled code runs.
    device : str or torch.device, optional
        Where to put the estimator (default CPU).

    Returns
    -------
    BitEstimator
        In evaluation mode with ``requires_grad=False`` on every parameter.
    """
    name_or_path = DEFAULT_ESTIMATOR if name_or_path is None else name_or_path
    if isinstance(name_or_path, str) and name_or_path in ARCHITECTURES:
        cls = ARCHITECTURES[name_or_path]
        if _needs_no_weights(cls):
            estimator = cls()
        else:
            weights = _WEIGHTS / f"{name_or_path}.pt"
            if not weights.is_file():
                raise ValueError(f"name_or_path: estimator {name_or_path!r} has no shipped weights; available: {list_estimators()}")
            with resources.as_file(weights) as path:
                estimator = load_checkpoint(path)
            estimator.card = model_card(name_or_path)
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(
                f"name_or_path: {str(name_or_path)!r} is neither a registered estimator {list_estimators()} nor an existing file"
            )
        estimator = load_checkpoint(path)
    return estimator.to(device or "cpu").freeze()


def resolve_estimator(
    estimator: BitEstimator | str | Path | None = None, *, device: str | torch.device | None = None
) -> BitEstimator:
    """The one way every engine, training setting and job turns an ``estimator`` argument into an estimator.

    Parameters
    ----------
    estimator : BitEstimator, str, Path or None
        An estimator object, a registered name, a checkpoint path, or None for :data:`DEFAULT_ESTIMATOR`.
    device : str or torch.device, optional
        Where the estimator must live. A given estimator on another device is copied there; the
        caller's object is never moved. Names and paths load there (default CPU).

    Raises
    ------
    TypeError
        ``estimator`` is neither an estimator, a name, a path nor None.
    ValueError
        An unknown name or an unreadable checkpoint (from :func:`load_estimator`).
    """
    if isinstance(estimator, BitEstimator):
        if device is None:
            return estimator
        target = torch.device(device)
        current = next((t.device for t in [*estimator.parameters(), *estimator.buffers()]), torch.device("cpu"))
        if current.type == target.type and (target.index is None or current.index == target.index):
            return estimator
        return copy.deepcopy(estimator).to(target)
    if estimator is None or isinstance(estimator, (str, Path)):
        return load_estimator(estimator, device=device)
    raise TypeError(f"estimator: expected a BitEstimator, a registered name {list_estimators()}, a checkpoint path or None, "
                    f"got {type(estimator).__name__}")


def load_checkpoint(path: str | Path) -> BitEstimator:
    """Build an estimator from a checkpoint ``{"arch", "config", "state_dict", "card"}`` (weights only)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or corrupt files
        # the class only: torch's text runs to several lines and advises weights_only=False, which would run the file's code
        raise ValueError(f"name_or_path: {str(path)!r} is not a readable estimator checkpoint ({err.__class__.__name__}: "
                         "not a weights-only checkpoint)") from None
    if not isinstance(ckpt, dict) or ckpt.get("arch") not in ARCHITECTURES:
        raise ValueError(f"name_or_path: {str(path)!r} is not an estimator checkpoint (needs 'arch' in {sorted(ARCHITECTURES)})")
    estimator = ARCHITECTURES[ckpt["arch"]](**ckpt.get("config", {}))
    estimator.load_state_dict(ckpt["state_dict"])
    estimator.card = dict(ckpt.get("card", {}))
    return estimator


def _needs_no_weights(cls: type[BitEstimator]) -> bool:
    return cls is AnalyticCoder


def _check_name(name: str) -> None:
    if name not in ARCHITECTURES:
        raise ValueError(f"name: unknown estimator {name!r}; choose from {sorted(ARCHITECTURES)}")


__all__ = [
    "ARCHITECTURES",
    "DEFAULT_ESTIMATOR",
    "AnalyticCoder",
    "BitEstimator",
    "ContextCoder",
    "Glow",
    "LocalPixelCNN",
    "list_estimators",
    "load_checkpoint",
    "load_estimator",
    "model_card",
    "resolve_estimator",
]
