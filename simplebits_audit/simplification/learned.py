"""The learned simplifier: one forward pass per image, trained once against a frozen classifier.

The per-image mask engine (:mod:`~simplebits_audit.simplification.mask`) optimises a coarse mask
between each image and its flat mean colour. :class:`Simplifier` is a small convolutional network
that predicts that mask directly from the image, so simplifying costs one forward pass:

    x' = m * x + (1 - m) * r,    m = upsample(sigmoid(net(x))),  r = the image's mean colour

:func:`train_simplifier` fits it over a dataset with the mask engine's objective, per image

    KL(f(x) || f(x'))  +  lambda * gate * bpd(x')

where the frozen classifier f is softened by a random temperature and ``gate`` charges the bits
term only while x' keeps f's top class by a log-probability ``margin``: an image whose mask gave
too much away is pulled back by the task term alone, and the margin leaves room so that unseen
images land on the kept side too. Outputs are rounded to 8 bits (straight-through), as the
estimator and every report see them.

Why this form (measured, README "Learned simplifier"): a residual U-Net in logit space (the
paper's form) kept 0.68 of the bits against 0.51 for a mask network after the same 6 minutes,
and a mask removes whole regions, which a real codec (WebP) values too. Training starts near the
identity (mask 0.9): from a half mask the network fell into the flat reference or the identity,
where the sigmoid saturates and no gradient returns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import Dataset

from .._helpers import DeferredInterrupt, ForwardFunc, Transform, model_guard
from .._io import load_saved, save_torch
from .._validation import check_pixel_images
from ..estimators import BitEstimator, load_estimator
from ..spaces import make_spaces
from .common import Classifier, Decision, PathRecorder, RunContext, round_8bit
from .config import SimplifyConfig
from .heads import check_head, check_outputs, probabilities
from .mask import REFERENCES, blend, mask_engine, reference_image
from .result import SimplificationResult

#: What :meth:`Simplifier.load` reads: the format version written by :meth:`Simplifier.save`.
FORMAT = 1
#: Below this held-out top-1 kept, :func:`train_simplifier` warns.
LOW_KEPT = 0.8
#: Defaults of :func:`train_simplifier` (measured choices: README, "Learned simplifier").
TRAINING_DEFAULTS: dict[str, Any] = {"lam": 1.0, "margin": 2.0, "steps": 4000, "batch_size": 32, "lr": 2e-3}


class Simplifier(nn.Module):
    """Pixels in, simplified pixels out: a mask towards the image's simple reference, predicted in one pass.

    Parameters
    ----------
    in_channels : int
        Image channels (1 or 3).
    mask_size : int
        The mask is predicted on a ``mask_size`` x ``mask_size`` grid (at most the image size) and
        upsampled bilinearly, like the mask engine's.
    width : int
        Channels of the network's first layer (the others have twice as many).
    reference : {"mean", "blur", "grey"}
        The simple image the mask blends towards (:func:`~simplebits_audit.simplification.mask.reference_image`).
    mask_init : float
        The mask's value everywhere before training, in (0, 1). Near 1 (the default, 0.9) training
        starts close to the identity, as the paper's simplifier does, and removes bits from there;
        from 0.5 it fell into the flat reference on ``shortcut`` and ``stripes`` (README).
    binary : bool
        Each grid cell keeps the original or takes the reference, nothing between: in evaluation
        mode a cell is kept where the mask is above 0.5; in training mode with the mask's value as
        probability (the global random generator; seed it), straight-through for the gradient.
        Edges are still soft after upsampling.
        For a classifier trained together with the simplifier
        (:func:`~simplebits_audit.train_with_simplification`): with a soft mask it learned to read
        faint, low-contrast copies of the whole image instead of dropping the background (README).

    Attributes
    ----------
    card : dict
        What it was trained on and how well it held out (filled by :func:`train_simplifier`).
    """

    def __init__(
        self, in_channels: int = 3, mask_size: int = 16, width: int = 16, reference: str = "mean", mask_init: float = 0.9, binary: bool = False,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels: expected 1 or 3, got {in_channels}")
        if mask_size < 1 or width < 1:
            raise ValueError(f"mask_size, width: expected positive sizes, got {mask_size}, {width}")
        if reference not in REFERENCES:
            raise ValueError(f"reference: expected one of {REFERENCES}, got {reference!r}")
        if not 0 < mask_init < 1:
            raise ValueError(f"mask_init: expected a value in (0, 1), got {mask_init}")
        self.config = {"in_channels": in_channels, "mask_size": mask_size, "width": width, "reference": reference, "mask_init": mask_init}
        if binary:  # only when set, so that the files of soft simplifiers stay as they were
            self.config["binary"] = True
        w = width
        # The image and its difference from the mean colour (what a flat reference would lose) go in.
        self.local = nn.Sequential(
            nn.Conv2d(2 * in_channels, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=4, dilation=4), nn.ReLU(),
        )
        # Image-wide context (which digit, which marker colour) added to every position.
        self.context = nn.Linear(2 * w, 2 * w)
        self.head = nn.Conv2d(2 * w, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.constant_(self.head.bias, math.log(mask_init / (1 - mask_init)))
        self.card: dict[str, Any] = {}
        #: A binary mask's sampling temperature in training mode (lowered towards 0 the samples become the threshold).
        self.temperature = 1.0
        # Caches of as_simplifier (not state): classifiers already checked, copies on other devices.
        self._checked: set[int] = set()
        self._copies: dict[str, Simplifier] = {}

    def mask_logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Mask logits (B, 1, h, w) on the coarse grid (``mask_size``, at most the image size)."""
        h, w = pixels.shape[-2:]
        mean = pixels.mean((2, 3), keepdim=True)
        feats = self.local(torch.cat([pixels, pixels - mean], 1))
        feats = F.relu(feats + self.context(feats.mean((2, 3)))[..., None, None])
        logits = self.head(feats)
        grid = (min(self.config["mask_size"], h), min(self.config["mask_size"], w))
        return F.adaptive_avg_pool2d(logits, grid) if logits.shape[-2:] != grid else logits

    def mask(self, pixels: torch.Tensor) -> torch.Tensor:
        """The mask (B, 1, H, W) in [0, 1]: 1 keeps the original's pixel, 0 takes the reference's."""
        return self.grid_to_mask(self.mask_logits(pixels), pixels.shape[-2:])

    def grid_to_mask(self, logits: torch.Tensor, size: Sequence[int], offset: float = 0.0) -> torch.Tensor:
        """Mask logits (B, 1, h, w) (shifted by ``offset``) -> the mask (B, 1, H, W), binarised if the simplifier is ``binary``."""
        if not self.config.get("binary"):
            return grid_mask(logits, size, offset)
        soft = torch.sigmoid((logits + offset) / (self.temperature if self.training else 1.0))
        # Training: each cell kept with probability ``soft`` (a deterministic threshold flipped every cell of
        # a uniform image such as stripes at once, and the classifier never saw a partial one); evaluation: soft > 0.5.
        binary = torch.bernoulli(soft.detach()) if self.training else (soft > 0.5).to(soft.dtype)
        hard = soft + (binary - soft).detach()  # straight-through
        return hard if tuple(hard.shape[-2:]) == tuple(size) else F.interpolate(hard, size=tuple(size), mode="bilinear", align_corners=False)

    def reference(self, pixels: torch.Tensor) -> torch.Tensor:
        """The simple end (B, C, H, W), 8-bit: each image's mean colour by default."""
        return reference_image(pixels, self.config["reference"])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Simplified pixel images (B, C, H, W), rounded to 8 bits (straight-through: differentiable).

        ``pixels`` (B, C, H, W) in [0, 1], C = ``in_channels``.
        """
        if pixels.dim() != 4 or pixels.shape[1] != self.config["in_channels"]:
            raise ValueError(f"pixels: expected (B, {self.config['in_channels']}, H, W), got {tuple(pixels.shape)}")
        x = round_8bit(pixels, False)
        m = self.mask(x)
        return round_8bit(m * x + (1 - m) * self.reference(x), True)

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write weights, configuration and card atomically (loads with ``weights_only=True``)."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        return save_torch({"format": FORMAT, "config": dict(self.config), "state_dict": state, "card": json.dumps(self.card)}, path)

    @classmethod
    def load(cls, path: str | Path, *, forward_func: ForwardFunc | None = None, device: str | torch.device | None = None) -> Simplifier:
        """Read a simplifier written by :meth:`save` (weights only: no pickled code runs).

        With ``forward_func`` (the classifier it will explain), warn if it is not the classifier it
        was trained against (the card's fingerprint). The simplifier is returned in eval mode with
        frozen parameters.
        """
        ckpt = load_saved(path, what="a simplifier written by Simplifier.save", missing="no simplifier file", version=FORMAT, key="state_dict")
        simplifier = cls(**ckpt["config"])
        simplifier.load_state_dict(ckpt["state_dict"])
        simplifier.card = json.loads(ckpt.get("card") or "{}")
        if forward_func is not None:
            simplifier.check_classifier(forward_func)
        simplifier.eval().requires_grad_(False)
        return simplifier.to(device or "cpu")

    @classmethod
    def pretrained(cls, testbed: str, *, device: str | torch.device | None = None) -> Simplifier:
        """The shipped simplifier for a testbed's shipped classifier (``testbeds.load_classifier(testbed)``).

        Trained offline by ``scripts/train_testbed_simplifiers.py``; ``.card`` holds its held-out
        top-1 kept, bits kept, WebP kept and mask AUROC.
        """
        from importlib import resources

        from .. import testbeds

        weights = resources.files(testbeds) / "weights" / f"simplifier-{testbed}.pt"
        if not weights.is_file():
            raise ValueError(f"testbed: no shipped simplifier for {testbed!r}; testbeds: {testbeds.list_testbeds()}")
        with resources.as_file(weights) as path:
            return cls.load(path, device=device)

    def check_classifier(self, forward_func: ForwardFunc) -> bool:
        """Whether ``forward_func`` is the classifier this simplifier was trained against; warns if not."""
        trained = self.card.get("model_fingerprint")
        now = model_fingerprint(forward_func)
        if trained and now and trained != now:
            warnings.warn(
                f"simplifier: trained against classifier {trained[:12]}, used with {now[:12]}; its masks may not "
                "keep this classifier's answers (retrain with train_simplifier, or refine with refine_steps)",
                stacklevel=3,
            )
            return False
        return True

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def model_fingerprint(forward_func: Any) -> str | None:
    """SHA-256 of an ``nn.Module``'s parameters and buffers (names, shapes, values); None for a plain function."""
    module = forward_func if isinstance(forward_func, nn.Module) else getattr(forward_func, "__self__", None)
    if not isinstance(module, nn.Module):
        return None
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def grid_mask(logits: torch.Tensor, size: Sequence[int], offset: float = 0.0) -> torch.Tensor:
    """sigmoid(``logits`` + ``offset``) (B, 1, h, w) upsampled bilinearly to ``size`` (H, W)."""
    m = torch.sigmoid(logits + offset)
    return m if tuple(m.shape[-2:]) == tuple(size) else F.interpolate(m, size=tuple(size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------------
# the engine: the learned mask (one pass), optionally refined per image by the mask engine

#: Fallbacks for images whose learned output loses the prediction: the learned mask's logits shifted
#: up by these amounts (towards the original), tried in order on those images only.
MASK_OFFSETS = (1.0, 2.0, 4.0, 8.0)


def learned_engine(run: RunContext, config: SimplifyConfig, simplifier: Simplifier) -> SimplificationResult:
    """Simplify with ``simplifier``'s mask; with ``config.refine_steps`` > 0 the mask engine refines it per image.

    Without refinement the path is the original, the learned output and a fallback: for images
    whose learned output loses the prediction, the first of the learned mask's shifts towards the
    original (:data:`MASK_OFFSETS`) that keeps it (tried on those images only, so an image costs
    about two classifier passes); the simplest kept of these is returned. With refinement the mask
    engine starts from the learned mask's logits, with ``config`` (resolved) for its options and
    the simplifier's ``mask_size``, ``mask_init`` and ``reference``. The result's mask is always
    the returned image's (all ones where the original itself comes back).
    """
    classifier, estimator, pixels, decision = run.classifier, run.estimator, run.pixels, run.decision
    original_8bit = round_8bit(pixels, False)
    with torch.no_grad():
        grid = simplifier.mask_logits(original_8bit)
    if config.refine_steps > 0:
        refine = dataclasses.replace(
            config, steps=config.refine_steps, **{k: simplifier.config[k] for k in ("mask_size", "mask_init", "reference")},
        )
        return mask_engine(run, refine, init_logits=grid)
    with torch.no_grad():
        probs_before = decision.probs_before
        ref = simplifier.reference(original_8bit)

        def candidate(rows: torch.Tensor, offset: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            m = simplifier.grid_to_mask(grid[rows], pixels.shape[-2:], offset)
            image = blend(original_8bit[rows], ref[rows], m)
            probs = probabilities(classifier.logits(image), decision.head)
            return image, probs, decision.rows(rows).kept(probs), m

        every = torch.arange(len(pixels), device=pixels.device)
        learned_image, learned_probs, learned_kept, learned_mask = candidate(every, 0.0)
        fallback, fallback_probs, fallback_mask = learned_image.clone(), learned_probs.clone(), learned_mask.clone()
        pending = every[~learned_kept]
        for offset in MASK_OFFSETS:
            if len(pending) == 0:
                break
            image, probs, ok, m = candidate(pending, offset)
            fallback[pending[ok]], fallback_probs[pending[ok]], fallback_mask[pending[ok]] = image[ok], probs[ok], m[ok]
            pending = pending[~ok]
        # Nothing kept: the fallback is the original itself, and so is its mask (all ones).
        ones = torch.ones_like(learned_mask)
        fallback[pending], fallback_probs[pending], fallback_mask[pending] = original_8bit[pending], probs_before[pending], 1.0
        original_map, learned_map = estimator.bits_map(original_8bit), estimator.bits_map(learned_image)
        shifted = every[~learned_kept & ~torch.isin(every, pending)]  # rows whose fallback is a shifted mask
        fallback_map = learned_map.clone()
        fallback_map[pending] = original_map[pending]  # the original: already rated
        if len(shifted):
            fallback_map[shifted] = estimator.bits_map(fallback[shifted])
        lam = float(simplifier.card.get("lam", 1.0))
        path = PathRecorder(original_8bit, original_map, probs_before, mask=ones, label="original")
        path.add(learned_image, learned_map.flatten(1).sum(1), learned_probs, lam, mask=learned_mask, label="learned mask", bits_map=learned_map)
        path.add(fallback, fallback_map.flatten(1).sum(1), fallback_probs, lam, mask=fallback_mask, label="learned mask shifted until kept",
                 bits_map=fallback_map)
    return path.result(run, active=torch.ones(len(pixels), dtype=torch.bool, device=pixels.device), steps=0)


def load_simplifier(
    simplifier: Simplifier | str | Path, forward_func: ForwardFunc | None = None, device: str | torch.device | None = None,
) -> Simplifier:
    """``simplifier`` as given, or read from its file (weights only, checked against ``forward_func``)."""
    if isinstance(simplifier, Simplifier):
        return simplifier
    if not isinstance(simplifier, (str, Path)):
        raise TypeError(f"simplifier: expected a Simplifier or the path of one, got {type(simplifier).__name__}")
    return Simplifier.load(simplifier, forward_func=forward_func, device=device)


def as_simplifier(simplifier: Simplifier | str | Path, forward_func: ForwardFunc, channels: int, device: torch.device) -> Simplifier:
    """``simplifier`` (a :class:`Simplifier` or its file) ready for ``channels``-channel images on ``device``.

    The classifier check (a fingerprint of its weights) runs once per classifier, and a copy on
    another device is made once: jobs call this for every batch.
    """
    simplifier = load_simplifier(simplifier, device=device)
    if simplifier.config["in_channels"] != channels:
        raise ValueError(f"simplifier: made for {simplifier.config['in_channels']}-channel images, the inputs have {channels}")
    if id(forward_func) not in simplifier._checked:
        simplifier.check_classifier(forward_func)
        simplifier._checked.add(id(forward_func))
    if next(simplifier.parameters()).device != device:
        # A copy on the inputs' device: the user's module stays where it is.
        if str(device) not in simplifier._copies:
            twin = Simplifier(**simplifier.config)
            twin.load_state_dict(simplifier.state_dict())
            twin.card = simplifier.card
            simplifier._copies[str(device)] = twin.to(device).eval().requires_grad_(False)
        simplifier = simplifier._copies[str(device)]
    return simplifier


# --------------------------------------------------------------------------------------------
# data: a tensor, a map-style Dataset of (image, label), or an iterable of batches


class _Batches:
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
            raise TypeError(f"data: expected a tensor of images, a Dataset of (image, label) or an iterable of batches, got {type(data).__name__}")
        if self.n is not None and self.n < 1:
            raise ValueError("data: no images")

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.iterable is not None:
            return self._next_from_iterable()
        generator = torch.Generator().manual_seed(hash((self.seed, step, self.rank)) % (2**63))
        idx = torch.randint(self.n, (self.batch_size,), generator=generator)
        if self.tensor is not None:
            return self.tensor[idx], None
        items = [self.dataset[int(i)] for i in idx]
        return _collate(items)

    def _next_from_iterable(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        for _ in range(2):
            if self._iter is None:
                self._iter = iter(self.iterable)
            try:
                return _collate_batch(next(self._iter))
            except StopIteration:
                self._iter = None
        raise ValueError("data: the iterable of batches is empty")

    def peek(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The first batch, without advancing a stream of batches."""
        if self.iterable is not None:
            for batch in self.iterable:
                return _collate_batch(batch)
            raise ValueError("data: the iterable of batches is empty")
        return self(0)

    def sample(self, n: int) -> torch.Tensor:
        """Up to ``n`` images for the card's held-out check when none were given (the first ones)."""
        if self.tensor is not None:
            return self.tensor[:n]
        if self.dataset is not None:
            return _collate([self.dataset[i] for i in range(min(n, self.n))])[0]
        return self.peek()[0][:n]


def _collate(items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(items[0], (tuple, list)):
        return torch.stack([torch.as_tensor(it[0]) for it in items]), torch.as_tensor([int(it[1]) for it in items])
    return torch.stack([torch.as_tensor(it) for it in items]), None


def _collate_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
        return batch[0], torch.as_tensor(batch[1])
    raise TypeError(f"data: each batch must be a tensor of images or an (images, labels) pair, got {type(batch).__name__}")


# --------------------------------------------------------------------------------------------
# training


def simplifier_loss(
    simplifier: nn.Module, classifier: Classifier, estimator: BitEstimator, pixels: torch.Tensor, *,
    lam: float, margin: float, objective: str = "kl", labels: torch.Tensor | None = None,
    temperature: tuple[float, float] = (1.0, 1.5), generator: torch.Generator | None = None, head: str = "softmax", threshold: float = 0.5,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training objective on one batch of pixel images (B, C, H, W): mean loss (in bits per dimension) and stats.

    ``objective="kl"`` keeps the classifier's own distribution (no labels needed); ``"ce"`` keeps
    ``labels``. The bits term of an image counts only while its simplified version keeps the top
    class (the label for ``"ce"``) by a log-probability ``margin`` (sigmoid ``head``: every kept
    label stays on its side of ``threshold`` by ``margin`` in log-odds; see
    :class:`~simplebits_audit.simplification.heads.Decision`).
    """
    with torch.no_grad():
        logits_before = classifier.logits(pixels)
    target = None if labels is None or objective == "kl" else labels.to(pixels.device)
    decision = Decision.of(logits_before, target, head=head, threshold=threshold)
    simplified = simplifier(pixels)
    logits = classifier.logits(simplified)
    task = decision.task_loss(logits, objective, temperature, generator or torch.Generator().manual_seed(0))
    bpd = estimator.bpd(simplified)
    gap = decision.margin(logits)
    # An image the classifier was less sure of than ``margin`` must keep its own original gap.
    required = torch.minimum(decision.margin(logits_before), torch.full_like(gap, margin))
    holds = (gap >= required).detach()
    with torch.no_grad():
        bpd_before = estimator.bpd(round_8bit(pixels, False))
    loss = (task + lam * holds.to(bpd.dtype) * bpd).mean()
    stats = {
        "loss": float(loss.detach()), "task": float(task.detach().mean()), "bpd": float(bpd.detach().mean()),
        "bits_kept": float((bpd.detach() / bpd_before).mean()),
        "top1_kept": float(decision.kept(probabilities(logits.detach(), head), "top1").float().mean()),
        "margin_held": float(holds.float().mean()),
    }
    return loss, stats


def _gap(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Log-probability of ``target`` minus that of the strongest other class, (B,)."""
    return log_probs.gather(1, target[:, None])[:, 0] - log_probs.scatter(1, target[:, None], -math.inf).amax(1)


@torch.no_grad()
def evaluate_simplifier(
    simplifier: Simplifier, forward_func: ForwardFunc, images: torch.Tensor, *, estimator: BitEstimator | str | None = None,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None, transforms: tuple[Transform, Transform] | None = None,
    batch_size: int = 64, head: str = "softmax", threshold: float = 0.5,
) -> dict[str, float]:
    """Held-out scores of the one-pass output on pixel images (N, C, H, W): top-1 kept, bits kept, images.

    ``bits_kept`` is the mean per-image ratio of the simplified 8-bit image's bits to the original's
    under ``estimator``; ``top1_kept`` the share of images whose decision is unchanged (the predicted
    class; for a sigmoid ``head`` every switched-on label, see :class:`~simplebits_audit.simplification.heads.Decision`).
    """
    check_pixel_images(images, "images")
    device = next(simplifier.parameters()).device
    if not isinstance(estimator, BitEstimator):
        estimator = load_estimator(estimator, device=device)
    classifier = Classifier(forward_func, make_spaces(normalization, transforms), ())
    same, ratios = [], []
    with model_guard(forward_func):
        for chunk in images.split(batch_size):
            x = round_8bit(chunk.to(device), False)
            s = simplifier(x)
            decision = Decision.of(classifier.logits(x), None, head=head, threshold=threshold)
            same.append(decision.kept(probabilities(classifier.logits(s), head), "top1"))
            ratios.append(estimator.bits(s) / estimator.bits(x))
    return {"top1_kept": float(torch.cat(same).float().mean()), "bits_kept": float(torch.cat(ratios).mean()), "images": len(images)}


def train_simplifier(
    forward_func: ForwardFunc,
    data: Any,
    *,
    estimator: BitEstimator | str | None = None,
    lam: float | None = None,
    margin: float | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    objective: str = "kl",
    head: str = "softmax",
    threshold: float = 0.5,
    simplifier: Simplifier | None = None,
    held_out: torch.Tensor | None = None,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    transforms: tuple[Transform, Transform] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: float = 60.0,
    data_description: str | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> Simplifier:
    """Train a :class:`Simplifier` against the frozen classifier ``forward_func`` on ``data``.

    Parameters
    ----------
    forward_func : callable
        The classifier: model-space images (B, C, H, W) -> logits (B, K). Only called, never
        modified (its parameters get no gradient; its mode and buffers are left as they were).
    data : Tensor (N, C, H, W), Dataset of (image, label), or iterable of batches
        Training images in pixel space [0, 1] (a batch is a tensor or an ``(images, labels)`` pair).
        Labels are only used by ``objective="ce"``.
    estimator : BitEstimator or str, optional
        The bit estimator charged (default: the package default).
    lam : float, optional
        Weight of the bits term (bits per dimension) against the task term. Default 1.
    margin : float, optional
        The bits term of an image is charged only while its simplified version keeps the top class
        by this log-probability margin (nats). Larger keeps more predictions, removes fewer bits.
        Default 2 (an image the classifier was less sure of keeps its own original margin).
    steps, batch_size, lr : optional
        Adam steps, images per step (per process under ``torchrun``), learning rate. Defaults:
        :data:`TRAINING_DEFAULTS`.
    objective : {"kl", "ce"}
        Keep the classifier's own predicted distribution (no labels needed) or the labels.
    head, threshold : optional
        The classifier's output head and, for ``"sigmoid"``, the decision threshold (as for
        :func:`~simplebits_audit.simplify`).
    simplifier : Simplifier, optional
        Start from this network (trained in place; default: a new one, whose mask starts at 0.9,
        close to the identity).
    held_out : Tensor (M, C, H, W), optional
        Pixel images scored at the end for the card (top-1 kept, bits kept); default: 256 of ``data``.
    normalization, transforms : optional
        How pixels map to the model's input space (as for :func:`~simplebits_audit.simplify`).
    checkpoint : path, optional
        Written atomically every ``checkpoint_every`` seconds and on Ctrl-C; if it exists, training
        resumes from it (with the same settings and data, a tensor or Dataset gives the uninterrupted
        run's result exactly; an iterable of batches starts over from its first batch).
    data_description : str, optional
        What ``data`` is, for the card.
    device : optional
        Where to train (default: where the classifier's parameters are, else CPU).
    seed : int
        Initialisation, batches and temperatures follow from it.
    show_progress : bool
        A rich progress bar with the running loss, bits kept and top-1 kept.

    Returns
    -------
    Simplifier
        In eval mode with frozen parameters; ``card`` says what it was trained on and how well it
        held out. Under ``torchrun`` every process trains its share of each batch
        (DistributedDataParallel, gloo on CPU, nccl on GPU) and returns the same network.
    """
    options = {"lam": lam, "margin": margin, "steps": steps, "batch_size": batch_size, "lr": lr}
    settings = {k: TRAINING_DEFAULTS[k] if v is None else v for k, v in options.items()}
    if objective not in ("kl", "ce"):
        raise ValueError(f"objective: expected 'kl' or 'ce', got {objective!r}")
    check_head(head, threshold)
    if not callable(forward_func):
        raise TypeError("forward_func: must be callable (a model or a function returning logits)")
    for name in ("lam", "margin"):
        if not (isinstance(settings[name], (int, float)) and math.isfinite(settings[name]) and settings[name] >= 0):
            raise ValueError(f"{name}: expected a finite number >= 0, got {settings[name]!r}")
    for name in ("steps", "batch_size"):
        if not (isinstance(settings[name], int) and settings[name] >= 1):
            raise ValueError(f"{name}: expected a positive integer, got {settings[name]!r}")
    if not (settings["lr"] > 0):
        raise ValueError(f"lr: expected a positive learning rate, got {settings['lr']!r}")
    if checkpoint_every <= 0:
        raise ValueError(f"checkpoint_every: expected seconds > 0, got {checkpoint_every}")
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if device is None:
        params = list(forward_func.parameters()) if isinstance(forward_func, nn.Module) else []
        device = params[0].device if params else torch.device("cpu")
    device = torch.device(device)
    spaces = make_spaces(normalization, transforms)
    batches = _Batches(data, settings["batch_size"], seed, rank)
    first, first_labels = batches.peek()
    first = check_pixel_images(first.to(device), "data (a batch)")
    if held_out is not None:
        check_pixel_images(held_out, "held_out")
        if held_out.shape[1:] != first.shape[1:]:
            raise ValueError(f"held_out: images of shape {tuple(held_out.shape[1:])}, the training images are {tuple(first.shape[1:])}")
    if simplifier is not None and simplifier.config["in_channels"] != first.shape[1]:
        raise ValueError(f"simplifier: made for {simplifier.config['in_channels']}-channel images, the data has {first.shape[1]}")
    if not isinstance(estimator, BitEstimator):
        estimator = load_estimator(estimator, device=device)
    classifier = Classifier(forward_func, spaces, ())
    with model_guard(forward_func):
        with torch.no_grad():
            logits_first = classifier.logits(first[:2])
        n_classes = logits_first.shape[1]
        check_outputs(n_classes, head)
        # The simplifier learns through the classifier's gradient: refuse a blocked path before training.
        classifier.check_gradient_path(first[:2], Decision.of(logits_first, None, head=head, threshold=threshold).target)
    if objective == "ce" and first_labels is None:
        raise ValueError("objective: 'ce' needs labels, and data gives images only (use a Dataset of (image, label) or (images, labels) batches)")

    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's random state
        torch.manual_seed(seed)
        net = simplifier if simplifier is not None else Simplifier(in_channels=first.shape[1])
    net = net.to(device).train().requires_grad_(True)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings["lr"])
    fingerprint = model_fingerprint(forward_func)
    # ``steps`` may change between runs: training longer from a checkpoint equals training longer from the start.
    run_key = {
        **{k: v for k, v in settings.items() if k != "steps"}, "objective": objective, "head": head, "threshold": threshold, "seed": seed, "world": world,
        "model_fingerprint": fingerprint, "config": net.config, "estimator": estimator.name, "data": data_description or type(data).__name__,
    }
    start_step, elapsed = 0, 0.0
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        saved_key = json.loads(state["run_key"])
        if saved_key != json.loads(json.dumps(run_key)):
            changed = sorted(k for k in run_key if saved_key.get(k) != json.loads(json.dumps(run_key)).get(k))
            raise ValueError(f"checkpoint: {str(checkpoint)!r} is from a run with other settings ({changed}); delete it or change the path")
        net.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, elapsed = int(state["step"]), float(state["seconds"])
        if start_step > settings["steps"]:
            raise ValueError(f"steps: the checkpoint {str(checkpoint)!r} is already at step {start_step}; ask for at least that many")
    model = nn.parallel.DistributedDataParallel(net) if distributed else net

    def save_checkpoint(step: int, seconds: float) -> None:
        if checkpoint is not None and rank == 0:
            save_torch({"run_key": json.dumps(run_key), "state_dict": net.state_dict(), "optimizer": optimizer.state_dict(),
                        "step": step, "seconds": seconds}, checkpoint)

    step, started, last_saved = start_step, time.perf_counter(), time.perf_counter()
    running: dict[str, float] = {}
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[stats]}"),
               TimeRemainingColumn()]
    with model_guard(forward_func), DeferredInterrupt() as stop, Progress(*columns, disable=not (show_progress and rank == 0), transient=True) as progress:
        if isinstance(forward_func, nn.Module):
            forward_func.requires_grad_(False)  # gradients reach the simplifier only; the guard restores the flags
        task = progress.add_task("training simplifier", total=settings["steps"], completed=start_step, stats="")
        try:
            while step < settings["steps"]:
                if stop.requested:  # Ctrl-C lands between steps: the checkpoint never holds half a step
                    raise KeyboardInterrupt
                images, labels = batches(step)
                generator = torch.Generator().manual_seed(hash((seed, step, rank, 1)) % (2**63))
                loss, stats = simplifier_loss(
                    model, classifier, estimator, images.to(device), lam=settings["lam"], margin=settings["margin"], objective=objective,
                    labels=labels, generator=generator, head=head, threshold=threshold,
                )
                optimizer.zero_grad(set_to_none=True)
                # Gradients for the simplifier only: nothing accumulates in the classifier's parameters,
                # even when forward_func is a plain function wrapping a module.
                loss.backward(inputs=list(net.parameters()))
                optimizer.step()
                step += 1
                running = {k: 0.95 * running.get(k, v) + 0.05 * v for k, v in stats.items()}
                progress.update(task, advance=1, stats=f"bits kept {running['bits_kept']:.2f}  top-1 kept {running['top1_kept']:.0%}")
                if time.perf_counter() - last_saved > checkpoint_every:
                    save_checkpoint(step, elapsed + time.perf_counter() - started)
                    last_saved = time.perf_counter()
        except KeyboardInterrupt:
            # Ctrl-C: the checkpoint holds every finished step; running again resumes there.
            save_checkpoint(step, elapsed + time.perf_counter() - started)
            raise
    seconds = elapsed + time.perf_counter() - started
    save_checkpoint(step, seconds)

    net.eval().requires_grad_(False)
    scored = held_out if held_out is not None else batches.sample(256)
    scores = evaluate_simplifier(net, forward_func, scored.to(device), estimator=estimator, normalization=normalization, transforms=transforms,
                                 head=head, threshold=threshold)
    net.card = {
        "model_fingerprint": fingerprint, "n_classes": n_classes, "data": data_description or type(data).__name__,
        "objective": objective, "head": head, "threshold": threshold, **settings, "seed": seed, "processes": world, "estimator": estimator.name,
        "training_seconds": round(seconds, 1), "torch_threads": torch.get_num_threads(),
        "held_out": {**scores, "split": "held_out" if held_out is not None else "training images (no held-out data given)"},
        "parameters": net.num_parameters, "final_running": {k: round(v, 4) for k, v in running.items()},
    }
    if scores["top1_kept"] < LOW_KEPT:
        warnings.warn(
            f"train_simplifier: the trained simplifier keeps the prediction on only {scores['top1_kept']:.0%} of the scored images "
            f"(bits kept {scores['bits_kept']:.2f}); simplify() falls back towards the original for the others. A smaller lam, "
            "a larger margin or refine_steps keep more",
            stacklevel=2,
        )
    return net


__all__ = ["MASK_OFFSETS", "TRAINING_DEFAULTS", "Simplifier", "as_simplifier", "evaluate_simplifier", "learned_engine", "load_simplifier", "model_fingerprint", "simplifier_loss", "train_simplifier"]
