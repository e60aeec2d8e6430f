"""Training with simplification: a classifier learns on simplified inputs while a simplifier removes bits.

The paper's first setting. A :class:`~simplebits_audit.simplification.learned.Simplifier` and a
classifier f are trained together on labelled images. By default the knob is a **bits budget** b,
the share of each image's bits to keep at most; per image

    CE(f(s(x)), y)  +  lambda * gate * bits(s(x)) / bits(x)

where s(x) is rounded to 8 bits (straight-through), ``gate`` charges the bits term only while the
classifier already answers the simplified image correctly by a log-probability ``margin`` (the
paper charges bits only once the classifier's loss on the example is small), and lambda is not
chosen by the user: it is the dual variable of "mean bits kept <= b", raised while the batches keep
more and lowered while they keep less (:data:`BUDGET_RATE`). A budget means the same on any data;
a fixed lambda does not (on a task learned slowly, lambda = 1 removed nothing: docs/design-log.md).
With ``lam=`` instead of a budget the term is the older ``lam * gate * bpd(s(x))``. Label rows
(N, K) of 0/1, or 0/1 labels for a one-logit classifier, train a sigmoid head: CE is then binary
cross-entropy summed over the labels and the gate asks every label (:func:`check_labels`).

The simplifier waits for the first ``warmup`` share of the steps, so the classifier first learns
the task on the original images. After the ``epochs``, ``cooldown`` more epochs train the
classifier alone, at a small learning rate, on the simplifier's final thresholded images: exactly
what evaluation shows it (while the simplifier trains it sees sampled masks that keep changing). Sweeping
budgets (:func:`tradeoff`) gives the curve between input bits and accuracy: how much information
the task needs, and whether a distractor (a photo behind a digit, stripes under a photo) carries
any of it.

Unlike :func:`~simplebits_audit.training.train_simplifier` the classifier is not
frozen: a copy of the given module is trained (the module passed in is left as it was) and returned
in the :class:`TrainingResult`.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from .._helpers import Transform, run_device, seeded
from .._io import load_saved, save_json, save_torch
from .._validation import check_pixel_images
from ..estimators import BitEstimator, resolve_estimator
from ..results import (
    RUN_CLASSIFIER_FILE,
    RUN_HISTORY_FILE,
    RUN_SIMPLIFIER_FILE,
    removal_order,
    run_checkpoint,
    run_directory,
    strength_name,
)
from ..simplification.common import round_8bit
from ..simplification.heads import head_of_labels, label_accuracy, label_gap, label_loss, label_margin
from ..simplification.learned import Simplifier, model_fingerprint
from ..simplification.mask import resolve_reference
from ..spaces import Spaces, make_spaces
from .data import Batches, data_fingerprint, dataset_tensors, labelled_tensors
from .loop import ResumableRun, channels_last_fits, check_checkpoint_every, cosine_decay, rank_and_world, settings_key, step_seed

#: Defaults of :func:`train_with_simplification` (measured choices: README, "Training with simplification").
JOINT_DEFAULTS: dict[str, Any] = {"epochs": 12, "batch_size": 64, "lr": 2e-3, "margin": 0.0, "warmup": 0.25, "cooldown": 2}
#: The simplifier training with simplification builds, where it differs from :class:`Simplifier`'s own defaults:
#: a binary mask (each cell keeps the original or takes the reference: with a soft mask the classifier learned to
#: read faint copies of the whole image, README) and ``reference="auto"``: the mosaic on images of at least 128 px a
#: side, where a flat colour painted `radiograph`'s finding into its masks; chosen on the design testbed
#: ``faint-regions`` (docs/design-log.md), the mean below 128 px as before. "auto" is resolved for the data's image
#: size when the network is built, so each run's settings name the reference it ran.
JOINT_SIMPLIFIER: dict[str, Any] = {"binary": True, "reference": "auto"}
#: The cooldown's learning rate as a share of ``lr`` (then cosine decay to 0 over the cooldown). Chosen with
#: ``cooldown`` on the design testbeds (docs/design-log.md): 0.05 the best or tied on all three, 0.1 and 0.25 lost
#: up to 0.4 and 0.6 points on ``digits-on-photos``.
COOLDOWN_LR = 0.05
#: A binary simplifier samples its cells while training (a deterministic threshold flipped every cell of
#: ``stripes`` at once and collapsed to flat); the sampling temperature falls from 1 to this value over the
#: simplifier's steps, so that by the end the samples are the threshold the evaluation uses (without it the
#: classifier learned on random cells and lost 39 points on thresholded ``stripes`` images, README).
ANNEAL_TO: float | None = 0.05
#: A bits budget (``budget=b``: keep at most b of each image's bits, on average) is met by
#: dual ascent on lambda: after every simplifier step, ``log lambda += BUDGET_RATE * log(kept / b)``,
#: with ``kept`` the batch's mean share of the bits kept by the thresholded mask. Lambda starts at ``BUDGET_LAMBDA_START`` and
#: stays within ``BUDGET_LAMBDA_RANGE``; in budget mode the bits term is the share kept (scale-free: the same
#: knob on photos and on radiographs), not bits per dimension. Measured: docs/design-log.md.
DEFAULT_BUDGET = 0.3
BUDGET_RATE = 0.01
BUDGET_LAMBDA_START = 1.0
BUDGET_LAMBDA_RANGE = (1e-3, 1e3)
#: Weight of a penalty on the squared mask logits while the simplifier trains. Without it the binary
#: mask's logits ran far to one side (to the identity while lambda was small, or to flat after an
#: overshoot), where the sigmoid's slope, divided by the falling temperature, left Adam no step to
#: take: the mask stayed there whatever lambda did (docs/design-log.md).
MASK_LOGIT_DECAY = 0.003
#: The gate asks whether the classifier answers the *thresholded* image, as evaluation will see it, not the
#: training sample (which keeps more: a cell below the threshold is sometimes sampled). Asked of the sample, the
#: gate charged the bits of images whose thresholded version was already answered wrongly, on ``shape-cue``
#: up to a third of them; measured on the design testbeds, docs/design-log.md. False: the sample (before 2026-12-01).
GATE_ON_THRESHOLD = True
#: Weight of the classifier's loss on the *original* images, added to its loss on the simplified ones while the
#: simplifier trains (0: off, as before 2026-12-02), the originals in a forward of their own. Without it a classifier
#: that had learned a shortcut first (``shortcut``'s weak-marker variant, like ``radiograph``'s marker) never saw the
#: digit again once the mask removed it, and could not ask for it back: 26.6 % against the reference's 43.4 %; with it
#: 42.6 %, and within 2 points of the references on the other design testbeds. In one batch with the simplified images
#: (BatchNorm statistics mixed) one report draw's mask collapsed (docs/design-log.md).
ORIGINALS_WEIGHT = 1.0
#: Budget mode charges only the share kept above the budget, per image (False: all of it; a design trial that
#: did not help, kept for ``benchmarks/training_design.py``'s ``hinge`` flag).
BUDGET_HINGE = False
#: A budget run's masks are checked against the budget when the joint epochs end (before the cooldown): if the
#: thresholded masks of ``BUDGET_CHECK_IMAGES`` training images (evenly spaced) keep more than the budget on average,
#: every mask logit is lowered by one offset, found by bisection, until they keep at most the budget. Dual ascent
#: meets the budget only on average over the steps and ended above it (``stripes``, 0.313 of the bits at budget 0.3,
#: docs/design-log.md); the cooldown then trains the classifier on the lowered masks. False: no check (before 2026-12-02).
BUDGET_PROJECTION = True
BUDGET_CHECK_IMAGES = 1024
#: The simplifier's gradients are dropped outside its steps (the warm-up and the cooldown), so that AdamW's moments
#: start from its first step. False: as before 2026-12-02, late (``benchmarks/training_design.py``'s ``idlemoments``): the
#: warm-up's pull towards the identity then drove the simplifier's first steps, and on one report draw every feature
#: behind the mask died, the mask stayed whole while lambda rose to its ceiling, and the run ended at chance.
FREEZE_IDLE_SIMPLIFIER = True
#: The simplifier's learning rate is scaled by a linear ramp from its first step over this share of the joint steps (as
#: the classifier's is from the run's first step; with a warm-up shorter than that the two ramps multiply): its AdamW
#: starts from empty moments, and its first updates are then the largest it takes. Chosen with
#: :data:`FREEZE_IDLE_SIMPLIFIER` on the design testbeds, docs/design-log.md (0: none).
SIMPLIFIER_LR_RAMP = 0.05
#: What :meth:`TrainingResult.load` reads.
FORMAT = 1


@dataclass
class TrainingResult:
    """A classifier trained on simplified images, the simplifier trained with it, and how training went.

    Attributes
    ----------
    classifier : nn.Module
        The trained copy of the classifier (eval mode). It expects *simplified* images: pass
        inputs through ``simplifier`` first (:meth:`predict` does).
    simplifier : Simplifier
        Pixel images (B, C, H, W) in [0, 1] -> simplified 8-bit pixel images (eval mode, frozen).
    lam : float
        The weight of the bits term it was trained with (with a ``budget``: the weight the budget
        settled on at the last step).
    history : list of dict
        One entry per epoch: ``epoch``, ``steps``, ``seconds`` (cumulative), ``loss``,
        ``train_accuracy``, ``train_bpd`` (means over the epoch's simplified batches), ``train_charged``
        (the share of images whose bits were charged: the gate held), ``train_lam`` (the mean weight
        of the bits term: constant unless a budget sets it; both 0 in the ``cooldown`` epochs, which
        follow the ``epochs`` and give :attr:`final`) and, with
        validation data, ``val_accuracy_simplified`` / ``val_accuracy_original`` (the classifier on
        simplified / original validation images), ``val_bpd_simplified`` / ``val_bpd_original`` and
        ``val_bits_kept`` (mean per-image ratio of the simplified image's bits to the original's).
    settings : dict
        Everything the run was trained with (lam or budget, margin, epochs, batch size, lr, seed, estimator, data),
        and with a budget below 1 (and :data:`BUDGET_PROJECTION` on) ``budget_offset``: the shift of every mask
        logit (<= 0; 0: none needed) that brought the masks within the budget when the joint epochs ended.
    budget : float or None
        The share of the bits it was asked to keep at most (None: trained with a fixed ``lam``).
    """

    classifier: nn.Module
    simplifier: Simplifier
    lam: float
    history: list[dict[str, float]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    budget: float | None = None

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's history entry."""
        return self.history[-1] if self.history else {}

    @torch.no_grad()
    def simplify(self, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Simplified 8-bit pixel images (N, C, H, W) of pixel images (N, C, H, W) in [0, 1]."""
        check_pixel_images(pixels, "pixels")
        device = next(self.simplifier.parameters()).device
        return torch.cat([self.simplifier(chunk.to(device)) for chunk in pixels.split(batch_size)]) if len(pixels) else pixels

    @torch.no_grad()
    def predict(self, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted classes (N,) of pixel images (N, C, H, W): the classifier on their simplified versions.

        A classifier trained with a sigmoid head: label rows (N, K) of 0/1 if it learned rows, (N,) of 0/1
        if it learned one logit from labels (N,).

        Pixels map to the classifier's input with the normalisation it was trained with (custom
        ``transforms`` are not stored: call the classifier on :meth:`simplify`'s output yourself).
        """
        if self.settings.get("transforms") is not None:
            raise ValueError("predict: the classifier was trained with custom transforms; apply them to simplify()'s output yourself")
        spaces = make_spaces(self.settings.get("normalization"), None)
        simplified = self.simplify(pixels, batch_size)
        logits = torch.cat([self.classifier(spaces.to_model(chunk)) for chunk in simplified.split(batch_size)])
        if self.settings.get("head") != "sigmoid":
            return logits.argmax(1)
        on = (logits > 0).long()
        return on if self.settings.get("label_rows", True) else on[:, 0]  # one logit trained on labels (N,): (N,)

    def score(self, pixels: torch.Tensor, labels: torch.Tensor, estimator: BitEstimator | str | None = None,
              batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Per-image scores on held-out images (:func:`score_joint`): accuracy on simplified and original images, bits kept.

        ``pixels`` (N, C, H, W) in [0, 1]; ``labels`` (N,) class indices or (N, K) label rows, as
        trained; ``estimator`` a bit estimator or its name (default: the package default). Every
        value is an (N,) float tensor, so two runs scored on the same images compare pairwise.
        Raises ValueError for custom ``transforms`` (not stored) or a label count that is not N.
        """
        if self.settings.get("transforms") is not None:
            raise ValueError("score: the classifier was trained with custom transforms; score simplify()'s output yourself")
        check_pixel_images(pixels, "pixels")
        if len(labels) != len(pixels):
            raise ValueError(f"labels: expected {len(pixels)} labels, one per image, got {len(labels)}")
        est = resolve_estimator(estimator, device=next(self.simplifier.parameters()).device)
        return score_joint(self.classifier, self.simplifier, pixels, labels, est, batch_size=batch_size,
                           spaces=make_spaces(self.settings.get("normalization"), None), head=self.settings.get("head"))

    def save(self, directory: str | Path) -> Path:
        """Write ``classifier.pt`` (state dict + settings), ``simplifier.pt`` and ``history.json`` (atomically, weights only)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.classifier.state_dict().items()}
        config = getattr(self.classifier, "config", None)
        save_torch({"format": FORMAT, "state_dict": state, "config": json.dumps(config) if isinstance(config, dict) else None,
                    "lam": self.lam, "budget": self.budget, "settings": json.dumps(self.settings)}, directory / RUN_CLASSIFIER_FILE)
        self.simplifier.save(directory / RUN_SIMPLIFIER_FILE)
        save_json({"lam": self.lam, "budget": self.budget, "settings": self.settings, "history": self.history},
                  directory / RUN_HISTORY_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path, classifier: nn.Module, *, device: str | torch.device | None = None) -> TrainingResult:
        """Read a result written by :meth:`save`; ``classifier`` is a module of the same architecture (its weights are replaced)."""
        directory = Path(directory)
        if not (directory / RUN_CLASSIFIER_FILE).is_file():
            raise ValueError(f"directory: no {RUN_CLASSIFIER_FILE} in {str(directory)!r} (written by TrainingResult.save)")
        ckpt = load_saved(directory / RUN_CLASSIFIER_FILE, what="a classifier written by TrainingResult.save",
                          missing=f"no {RUN_CLASSIFIER_FILE}", version=FORMAT, key="state_dict", name="directory")
        loaded = copy.deepcopy(classifier)  # a mismatch must not leave the caller's module half overwritten
        try:
            loaded.load_state_dict(ckpt["state_dict"])
        except RuntimeError as err:
            raise ValueError(f"classifier: does not match the saved weights ({str(err).splitlines()[0]})") from None
        simplifier = Simplifier.load(directory / RUN_SIMPLIFIER_FILE, device=device)
        record = json.loads((directory / RUN_HISTORY_FILE).read_text()) if (directory / RUN_HISTORY_FILE).is_file() else {}
        # JSON wrote NaN as null: read it back as NaN, as the trained result had it.
        history = [{k: float("nan") if v is None else v for k, v in entry.items()} for entry in record.get("history", [])]
        classifier = loaded.to(device or "cpu").eval().requires_grad_(False)
        budget = ckpt.get("budget")
        return cls(classifier, simplifier, float(ckpt["lam"]), history, json.loads(ckpt["settings"]),
                   budget=None if budget is None else float(budget))


class _Joint(nn.Module):
    """Simplifier then classifier, as one module (one DistributedDataParallel wrapper for both)."""

    def __init__(self, simplifier: Simplifier, classifier: nn.Module, spaces: Spaces) -> None:
        super().__init__()
        self.simplifier, self.classifier, self.spaces = simplifier, classifier, spaces

    def forward(self, pixels: torch.Tensor, originals: bool = False) -> tuple[torch.Tensor, ...]:
        """Simplified images, the classifier's logits on them, the mask logits, and (``originals``) its logits on ``pixels``."""
        simplified, mask_logits = self.simplifier.simplify_with_logits(pixels)
        logits = self.classifier(self.spaces.to_model(simplified))
        # The originals in a forward of their own: in one batch with the simplified images the classifier's BatchNorm
        # batch statistics mixed the two, and a report run's mask collapsed (docs/design-log.md). (The running statistics,
        # which evaluation uses, are updated by both forwards.) Both forwards are inside this module's, so
        # DistributedDataParallel still sees one forward and one backward per step.
        return simplified, logits, mask_logits, self.classifier(self.spaces.to_model(pixels)) if originals else None


def _as_dataset(data: Any) -> Any:
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        images, labels, _ = labelled_tensors(data, "data", multilabel=True)
        return TensorDataset(images, labels)
    if isinstance(data, torch.Tensor):
        raise ValueError("data: training with simplification needs labels: give (images, labels) or a Dataset of (image, label)")
    return data


def _data_fingerprint(data: Any) -> str:
    """What a resume checks the data against: a SHA-256 of the images and labels when they are tensors, else type and size."""
    tensors = dataset_tensors(data)
    digest = f", sha256 {data_fingerprint(*tensors)[:16]}" if tensors is not None else ""
    return f"{type(data).__name__} of {len(data)}{digest}"


def _removes(lam: float | None, budget: float | None) -> bool:
    """Whether a run removes bits (a budget under 1 or a positive lambda); a reference run keeps its mask at the identity."""
    return (budget is not None and budget < 1) or bool(lam)


def budget_offset(simplifier: Simplifier, images: torch.Tensor, budget: float, estimator: BitEstimator, *, batch_size: int = 64,
                  steps: int = 20) -> float:
    """A mask-logit offset <= 0 with which ``simplifier``'s masks keep at most ``budget`` of the bits, found by bisection.

    ``images`` (N, C, H, W) in [0, 1] (on any device: moved a batch at a time); the share kept is the
    mean over the images of the simplified image's bits over the original's, under ``estimator``, as
    the budget's dual ascent measures it. 0 when they already keep at most ``budget``. Otherwise the
    bisection starts from an offset that keeps nothing (every binary cell below the threshold; a soft
    mask's offset is widened until it is within the budget, or 256 times the logits' range), takes
    ``steps`` halvings, and returns half a bracket below the last offset within the budget: a shift
    of the head's bias rounds differently in float32 than the shift tested here. The largest such
    offset when the share kept grows with the offset (the estimator does not promise it). Evaluation
    mode, no gradient; the simplifier is left as it was.
    """
    device = next(simplifier.parameters()).device
    was = simplifier.training
    simplifier.eval()
    try:
        with torch.no_grad():
            parts = [round_8bit(x, False) for x in images.split(batch_size)]
            originals = [estimator.bpd(x.to(device)).clamp_min(1e-3) for x in parts]
            logits = [simplifier.mask_logits(x.to(device)) for x in parts]

            def kept(offset: float) -> float:
                shares = [estimator.bpd(simplifier.from_logits(x.to(device), g, offset)) / o for x, g, o in zip(parts, logits, originals)]
                return float(torch.cat(shares).mean())

            if kept(0.0) <= budget:
                return 0.0
            low, high = -(max(float(g.abs().max()) for g in logits) + 1.0), 0.0
            for _ in range(8):  # a binary mask keeps no cell at ``low`` already; a soft one keeps sigmoid(low) of each
                if kept(low) <= budget:
                    break
                low *= 2
            for _ in range(steps):
                middle = (low + high) / 2
                low, high = (low, middle) if kept(middle) > budget else (middle, high)
            return low - (high - low) / 2  # kept(low) <= budget unless even keeping nothing is over it
    finally:
        simplifier.train(was)


def _run_key(
    settings: dict[str, Any], lam: float | None, budget: float | None, seed: int, world: int, classifier_fingerprint: str | None,
    simplifier_config: dict[str, Any],
    estimator: BitEstimator, data: Any, data_description: str | None, normalization: Any, transforms: Any, head: str = "softmax",
) -> dict[str, Any]:
    """Everything a checkpoint or a finished run must agree on to be resumed or reused (JSON-normalised)."""
    key = {
        **{k: settings[k] for k in JOINT_DEFAULTS}, "lam": None if lam is None else float(lam),
        "budget": None if budget is None else float(budget), "seed": seed, "world": world, "classifier": classifier_fingerprint,
        "simplifier": simplifier_config, "estimator": estimator.name, "data": data_description or _data_fingerprint(data),
        "normalization": [list(map(float, v)) for v in normalization] if normalization is not None else None,
        "transforms": None if transforms is None else "custom",
    }
    if head != "softmax":  # only then: the keys of runs written before sigmoid heads stay as they were
        key["head"] = head
    if FREEZE_IDLE_SIMPLIFIER:  # the simplifier's first steps changed (reference runs too: their mask trains on the loss)
        key["idle_simplifier"] = "frozen"
    if SIMPLIFIER_LR_RAMP:
        key["simplifier_lr_ramp"] = SIMPLIFIER_LR_RAMP
    if _removes(lam, budget):  # what the gate asks changed how a removing run trains (reference runs: nothing)
        key["gate"] = "threshold" if GATE_ON_THRESHOLD else "sample"
        if ORIGINALS_WEIGHT:
            key["originals_weight"] = ORIGINALS_WEIGHT
        if BUDGET_HINGE and budget is not None:
            key["budget_hinge"] = True
        if BUDGET_PROJECTION and budget is not None:
            key["budget_projection"] = BUDGET_CHECK_IMAGES
    return settings_key(key)


@torch.no_grad()
def score_joint(
    classifier: nn.Module, simplifier: Simplifier, images: torch.Tensor, labels: torch.Tensor, estimator: BitEstimator, *,
    spaces: Spaces | None = None, batch_size: int = 256, head: str | None = None,
) -> dict[str, torch.Tensor]:
    """Per-image scores of a classifier trained on simplified images (what :func:`evaluate_joint` averages).

    ``images`` (N, C, H, W) pixel images in [0, 1], ``labels`` (N,) class indices or (N, K) label
    rows of 0/1 (``head``: :func:`~simplebits_audit.simplification.heads.head_of_labels` when not
    given). Returns (N,) float tensors: ``accuracy_simplified`` / ``accuracy_original`` (1 or 0;
    multi-label: the share of the image's labels answered right), ``bpd_simplified`` /
    ``bpd_original`` (estimator bits per dimension of the 8-bit images) and ``bits_kept`` (the
    simplified image's bits over the original's). Per image, so that two runs scored on the same
    images can be compared pairwise (a difference and its standard error).
    """
    spaces = spaces or make_spaces(None, None)
    device = next(simplifier.parameters()).device
    was, was_simplifier = classifier.training, simplifier.training
    classifier.eval(), simplifier.eval()  # a binary simplifier flips coins in training mode only
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in SCORES}
    try:
        for x, y in zip(images.split(batch_size), labels.split(batch_size)):
            x, y = round_8bit(x.to(device), False), y.to(device)
            s = simplifier(x)
            logits_s, logits_o = classifier(spaces.to_model(s)), classifier(spaces.to_model(x))
            head = head or head_of_labels(y, logits_s.shape[1])
            bits_s, bits_o = estimator.bits(s), estimator.bits(x)
            dims = x[0].numel()
            for key, value in zip(SCORES, (label_accuracy(logits_s, y, head), label_accuracy(logits_o, y, head),
                                           bits_s / dims, bits_o / dims, bits_s / bits_o)):
                parts[key].append(value.float().cpu())
    finally:
        classifier.train(was), simplifier.train(was_simplifier)
    return {k: torch.cat(v) for k, v in parts.items()}


def paired_difference(run: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """The mean of ``run - reference`` over the same images ((N,) per-image scores, N >= 2), and its standard error.

    The standard error is the differences' standard deviation over sqrt(N): it shrinks with how
    rarely the two runs disagree, not with their accuracy (units: those of the scores).

    Raises:
        ValueError: if the shapes differ or N < 2 (no standard error from one image).
    """
    if run.shape != reference.shape or run.dim() != 1 or len(run) < 2:
        raise ValueError(
            f"run and reference must be (N,) scores of the same images with N >= 2, got {tuple(run.shape)} and {tuple(reference.shape)}"
        )
    d = run.float() - reference.float()
    return float(d.mean()), float(d.std() / len(d) ** 0.5)


#: :func:`score_joint`'s per-image scores; :func:`evaluate_joint` reports their means as ``val_<name>``.
SCORES = ("accuracy_simplified", "accuracy_original", "bpd_simplified", "bpd_original", "bits_kept")


def evaluate_joint(
    classifier: nn.Module, simplifier: Simplifier, images: torch.Tensor, labels: torch.Tensor, estimator: BitEstimator, *,
    spaces: Spaces | None = None, batch_size: int = 256, head: str | None = None,
) -> dict[str, float]:
    """Validation scores of a classifier trained on simplified images (see :attr:`TrainingResult.history`).

    The means of :func:`score_joint`'s per-image scores, as ``val_accuracy_simplified``,
    ``val_accuracy_original`` (multi-label: the mean per-label accuracy), ``val_bpd_simplified``,
    ``val_bpd_original`` and ``val_bits_kept`` (mean per-image bits kept).
    """
    scores = score_joint(classifier, simplifier, images, labels, estimator, spaces=spaces, batch_size=batch_size, head=head)
    return {f"val_{k}": float(v.mean()) for k, v in scores.items()}


def check_labels(labels: torch.Tensor, n_outputs: int, name: str = "data") -> str:
    """The head a classifier with ``n_outputs`` logits learns ``labels`` under (``heads.head_of_labels``).

    ``ValueError`` naming ``name`` unless the labels fit it: class indices in [0, K) for K >= 2
    logits; 0/1 per image for one logit; label rows (N, K) of 0/1 for K logits.
    """
    head = head_of_labels(labels, n_outputs)
    if torch.is_floating_point(labels) and bool((labels != labels.round()).any()):  # soft labels would be cut to integers
        raise ValueError(f"{name}: labels must be whole numbers (class indices, or 0/1 per label), got fractional values")
    if head == "sigmoid":
        width = labels.shape[1] if labels.dim() == 2 else 1
        if width != n_outputs:
            raise ValueError(f"{name}: label rows of {width} labels for a classifier with {n_outputs} outputs (one logit per label)")
        if bool(((labels != 0) & (labels != 1)).any()):
            raise ValueError(f"{name}: a sigmoid head's labels must be 0 or 1, got values {sorted(set(labels.unique().tolist()))[:5]}")
    elif int(labels.max()) >= n_outputs or int(labels.min()) < 0:
        raise ValueError(f"{name}: labels must be in [0, {n_outputs}) for a classifier with {n_outputs} outputs, got "
                         f"{int(labels.min())}..{int(labels.max())}")
    return head


def check_strength(lam: float | None = None, budget: float | None = None) -> tuple[float | None, float | None]:
    """``(lam, budget)`` checked: at most one given, ``lam`` >= 0, ``budget`` in (0, 1]; neither: ``budget=DEFAULT_BUDGET``.

    ``ValueError`` naming the bad argument.
    """
    if lam is not None and budget is not None:
        raise ValueError(f"budget: give lam or budget, not both (got lam={lam!r}, budget={budget!r})")
    if lam is None and budget is None:
        budget = DEFAULT_BUDGET
    if lam is not None and not (isinstance(lam, (int, float)) and not isinstance(lam, bool) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam: expected a finite number >= 0, got {lam!r}")
    if budget is not None and not (isinstance(budget, (int, float)) and not isinstance(budget, bool) and 0 < budget <= 1):
        raise ValueError(f"budget: expected the share of the bits to keep, in (0, 1], got {budget!r}")
    return (None if lam is None else float(lam)), (None if budget is None else float(budget))


def check_training_settings(**options: Any) -> dict[str, Any]:
    """The settings of :func:`train_with_simplification` with defaults filled in (:data:`JOINT_DEFAULTS`), checked.

    ``ValueError`` naming the first bad one; jobs call this before reading any data. The bits
    budget or lambda is checked by :func:`check_strength`.
    """
    unknown = set(options) - set(JOINT_DEFAULTS)
    if unknown:
        raise TypeError(f"check_training_settings: unknown settings {sorted(unknown)}")
    settings = {k: JOINT_DEFAULTS[k] if options.get(k) is None else options[k] for k in JOINT_DEFAULTS}
    if not (isinstance(settings["margin"], (int, float)) and math.isfinite(settings["margin"]) and settings["margin"] >= 0):
        raise ValueError(f"margin: expected a finite number >= 0, got {settings['margin']!r}")
    for name in ("epochs", "batch_size"):
        if not (isinstance(settings[name], int) and not isinstance(settings[name], bool) and settings[name] >= 1):
            raise ValueError(f"{name}: expected a positive integer, got {settings[name]!r}")
    if not (isinstance(settings["warmup"], (int, float)) and not isinstance(settings["warmup"], bool) and 0 <= settings["warmup"] < 1):
        raise ValueError(f"warmup: expected a share of the steps in [0, 1), got {settings['warmup']!r}")
    if not (isinstance(settings["cooldown"], int) and not isinstance(settings["cooldown"], bool) and settings["cooldown"] >= 0):
        raise ValueError(f"cooldown: expected a number of epochs >= 0, got {settings['cooldown']!r}")
    if not (isinstance(settings["lr"], (int, float)) and settings["lr"] > 0):
        raise ValueError(f"lr: expected a positive learning rate, got {settings['lr']!r}")
    return settings


def joint_simplifier(images: torch.Tensor, **config: Any) -> Simplifier:
    """A new :class:`Simplifier` for images shaped like ``images`` (B, C, H, W): :data:`JOINT_SIMPLIFIER`, ``config`` over it,
    with ``reference="auto"`` resolved for the images' size (:func:`~simplebits_audit.simplification.mask.resolve_reference`)."""
    config = {**JOINT_SIMPLIFIER, **config}
    config["reference"] = resolve_reference(config["reference"], images.shape)
    return Simplifier(in_channels=images.shape[1], **config)


def train_with_simplification(
    classifier: nn.Module,
    data: Any,
    *,
    lam: float | None = None,
    budget: float | None = None,
    estimator: BitEstimator | str | None = None,
    simplifier: Simplifier | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    margin: float | None = None,
    warmup: float | None = None,
    cooldown: int | None = None,
    val_data: Any = None,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    transforms: tuple[Transform, Transform] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: float = 60.0,
    data_description: str | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> TrainingResult:
    """Train a copy of ``classifier`` on simplified images while a :class:`Simplifier` learns to remove bits.

    Parameters
    ----------
    classifier : nn.Module
        Model-space images (B, C, H, W) -> logits (B, K), untrained or pretrained. A copy is trained;
        the module passed in is left as it was.
    data : Dataset of (image, label), or (images, labels)
        Training images in pixel space [0, 1], (N, C, H, W), with class indices (N,) for a softmax
        over K >= 2 logits, or with labels of 0/1 for a sigmoid head: rows (N, K) for K logits
        (multi-label), or (N,) for one logit (binary). The head follows from the labels and the
        classifier's outputs (:func:`check_labels`): binary cross-entropy summed over the labels
        instead of cross-entropy, the gate asks that every label be answered by ``margin``, and
        accuracy is the mean per-label accuracy.
    budget : float, optional
        The share of each image's bits (under ``estimator``) to keep at most, on average, in (0, 1];
        lambda follows from it (dual ascent, module docstring). 1 removes nothing: the reference
        point of a curve. Default (neither ``budget`` nor ``lam``): :data:`DEFAULT_BUDGET` (0.3).
        When the joint epochs end, masks that keep more than the budget on training images are
        lowered until they keep at most it (:data:`BUDGET_PROJECTION`; the offset is
        ``settings["budget_offset"]``), before the cooldown.
    lam : float, optional
        Instead of a budget, a fixed weight of the bits term (bits per dimension of the simplified
        image) against the cross-entropy; 0 is the reference. Its effect depends on the data.
    estimator : BitEstimator or str, optional
        The bit estimator charged (default: the package default).
    simplifier : Simplifier, optional
        Start from this network (trained in place); default :func:`joint_simplifier` of the data's
        images (:data:`JOINT_SIMPLIFIER`: a binary mask, and the reference ``"auto"``: each removed
        cell takes the image's mean colour below 128 px, its own cell's mean from 128 px).
    epochs, batch_size, lr, margin : optional
        Passes over ``data`` (an epoch is ``ceil(N / (batch_size * processes))`` steps of batches
        drawn at random), images per step and process, AdamW learning rate of both networks (cosine
        decay), and the log-probability margin by which the classifier must answer the simplified
        image correctly before its bits are charged (0: answered correctly). Defaults: :data:`JOINT_DEFAULTS`.
    warmup : float, optional
        Share of the joint steps (the ``epochs``, not the cooldown), in [0, 1), during which only the
        classifier trains (on the simplifier's initial, nearly original output) before the
        simplifier starts removing bits; its optimiser starts then, with a learning rate ramped up
        over :data:`SIMPLIFIER_LR_RAMP` of the joint steps. Default 0.25.
    cooldown : int, optional
        Epochs after ``epochs`` in which the simplifier is frozen at its thresholded mask (the one
        evaluation uses) and the classifier alone trains on its output, at ``lr`` x
        :data:`COOLDOWN_LR` with cosine decay; no bits term. While the simplifier trains the
        classifier sees sampled masks that keep changing, and at the end it has not caught up with
        the final ones (``shape-cue``: 4.8 points of accuracy, docs/design-log.md). Default 2; 0 ends
        with the simplifier (before 2026-12-01, ``cooldown`` was a share of the last steps instead).
    val_data : Dataset of (image, label), or (images, labels), optional
        Scored after every epoch (accuracy on simplified and original images, bpd, bits kept).
    normalization, transforms : optional
        How pixels map to the classifier's input space (default: the classifier takes pixels).
    checkpoint : path, optional
        Written atomically every ``checkpoint_every`` seconds, after every epoch and on Ctrl-C; if it
        exists training resumes from it and ends exactly where the uninterrupted run would have.
    data_description : str, optional
        What ``data`` is, for the settings and the resume check.
    device : optional
        Where to train (default: where the classifier's parameters are, else CPU).
    seed : int
        The simplifier's initialisation and the batches follow from it (the classifier's
        initialisation is the caller's).
    show_progress : bool
        A rich progress bar with the running accuracy and bpd.

    Returns
    -------
    TrainingResult
        The trained classifier and simplifier (eval mode), the per-epoch history and the settings.
        Under ``torchrun`` every process trains on its share of each step's batches
        (DistributedDataParallel) and returns the same networks.
    """
    if not isinstance(classifier, nn.Module):
        raise TypeError(f"classifier: expected an nn.Module to train, got {type(classifier).__name__}")
    lam, budget = check_strength(lam, budget)
    settings = check_training_settings(epochs=epochs, batch_size=batch_size, lr=lr, margin=margin, warmup=warmup, cooldown=cooldown)
    check_checkpoint_every(checkpoint_every)
    data = _as_dataset(data)
    if not (isinstance(data, Dataset) and hasattr(data, "__len__")):
        raise TypeError(f"data: expected a Dataset of (image, label) or an (images, labels) pair, got {type(data).__name__}")
    val = labelled_tensors(val_data, "val_data", multilabel=True)[:2] if val_data is not None else None
    rank, world = rank_and_world()
    device = run_device(classifier, device, must_agree=False)
    spaces = make_spaces(normalization, transforms)
    batches = Batches(data, settings["batch_size"], seed, rank)
    first, first_labels = batches.peek()
    first = check_pixel_images(first.to(device), "data (a batch)")
    if first_labels is None:
        raise ValueError("data: training with simplification needs labels: give (images, labels) or a Dataset of (image, label)")
    if val is not None and val[0].shape[1:] != first.shape[1:]:
        raise ValueError(f"val_data: images of shape {tuple(val[0].shape[1:])}, the training images are {tuple(first.shape[1:])}")
    if simplifier is not None and simplifier.config["in_channels"] != first.shape[1]:
        raise ValueError(f"simplifier: made for {simplifier.config['in_channels']}-channel images, the data has {first.shape[1]}")
    estimator = resolve_estimator(estimator, device=device)
    initial_fingerprint = model_fingerprint(classifier)
    model = copy.deepcopy(classifier).to(device).train().requires_grad_(True)
    with torch.no_grad():
        n_classes = model.eval()(spaces.to_model(first[:2])).shape[1]  # eval: the probe must not move BatchNorm statistics
    model.train()
    tensors = dataset_tensors(data)
    labels_seen = first_labels if tensors is None else tensors[1]
    if labels_seen.dim() == 2 and labels_seen.shape[1] == 1:  # (N, 1): one label per image, as the batches give it
        labels_seen = labels_seen[:, 0]
    head = check_labels(labels_seen, n_classes, "data")
    if val is not None:
        check_labels(val[1], n_classes, "val_data")
    with seeded(seed):
        net = simplifier if simplifier is not None else joint_simplifier(first)
    # a simplifier passed in with "auto" runs the resolved reference, and its settings and saved file name it
    net.config["reference"] = resolve_reference(net.config["reference"], first.shape)
    net = net.to(device).train().requires_grad_(True)
    fast = channels_last_fits(model, first[:2], spaces.to_model)  # CHANNELS_LAST: faster convolutions where the classifier allows
    if world > 1:  # every process must train in one layout (DistributedDataParallel compares the parameters' strides)
        agreed = torch.tensor(int(fast), device=device)
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
        fast = bool(agreed)
    layout = torch.channels_last if fast else torch.contiguous_format
    model, net = model.to(memory_format=layout), net.to(memory_format=layout)
    joint = _Joint(net, model, spaces)
    optimizer = torch.optim.AdamW([{"params": model.parameters()}, {"params": net.parameters()}], lr=settings["lr"])
    steps_per_epoch = math.ceil(len(data) / (settings["batch_size"] * world))
    # The joint schedule (warm-up, simplifier, lambda, learning rate) spans ``epochs``; the cooldown's epochs follow it.
    cool_from = settings["epochs"] * steps_per_epoch
    total = cool_from + settings["cooldown"] * steps_per_epoch
    # The simplifier waits while the classifier learns the task: the gradient of a still-random
    # classifier only pushes the mask towards the identity, where its sigmoid saturates for good.
    frozen_until = round(settings["warmup"] * cool_from)
    simplifier_ramp_steps = round(SIMPLIFIER_LR_RAMP * cool_from)
    run_key = _run_key(settings, lam, budget, seed, world, initial_fingerprint, net.config, estimator, data, data_description,
                       normalization, transforms, head)
    run = ResumableRun(checkpoint, run_key, total=total, total_name="epochs", checkpoint_every=checkpoint_every, device=device)
    history: list[dict[str, float]] = []
    sums: dict[str, float] = {}  # the current epoch's running sums (checkpointed: a resumed epoch averages the same steps)
    removes = _removes(lam, budget)
    # Budget mode: lambda is the dual variable of "kept <= budget" (a budget of 1 removes nothing: lambda 0).
    log_lam = math.log(BUDGET_LAMBDA_START) if budget is not None and budget < 1 else None
    offset: float | None = None  # the budget check's mask-logit offset, once made (BUDGET_PROJECTION)
    state = run.resume()
    if state is not None:
        joint.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        history, sums = json.loads(state["history"]), json.loads(state["sums"])
        log_lam = state.get("log_lam", log_lam)
        offset = state.get("budget_offset")
    wrapped = nn.parallel.DistributedDataParallel(joint) if world > 1 else joint

    def learning_rate(at: int) -> float:
        # Short warm-up, then cosine decay: a function of the step alone, so a resumed run needs no scheduler state.
        if at >= cool_from:  # the cooldown: a small rate decaying again (the joint schedule already ended at 0)
            return cosine_decay(settings["lr"] * COOLDOWN_LR, at - cool_from, total - cool_from)
        ramp = max(1, cool_from // 20)
        if at < ramp:
            return settings["lr"] * (at + 1) / ramp
        return cosine_decay(settings["lr"], at - ramp, cool_from - ramp)

    def simplifier_ramp(at: int) -> float:  # SIMPLIFIER_LR_RAMP: a share of the rate, from the simplifier's first step
        return min(1.0, (at - frozen_until + 1) / simplifier_ramp_steps) if simplifier_ramp_steps > 0 else 1.0

    def close_epoch(step: int) -> bool:
        """History entry of the epoch ``step`` just finished, if not written yet (a resume may have stopped before); True if written."""
        nonlocal sums
        if not (step > 0 and step % steps_per_epoch == 0 and len(history) < step // steps_per_epoch):
            return False
        entry = {"epoch": step // steps_per_epoch, "steps": step, **{k: v / steps_per_epoch for k, v in sums.items()}}
        if val is not None:
            if world > 1:  # DDP syncs BatchNorm statistics only at the next forward: score rank 0's everywhere
                for buffer in model.buffers():
                    dist.broadcast(buffer, 0)
            entry.update(evaluate_joint(model, net, *val, estimator, spaces=spaces, head=head))
            joint.train()
        entry["seconds"] = round(run.seconds, 1)
        history.append(entry)
        sums = {}
        return True

    def settle_layout(step: int) -> None:
        """From the joint epochs' end on, the layout the networks are returned in.

        The budget check, the cooldown and the last scores then see exactly the masks and logits returned (a layout
        changes float rounding, and the check leaves cells within about 1e-6 of the threshold).
        """
        nonlocal layout
        if step >= cool_from and layout != torch.contiguous_format:
            layout = torch.contiguous_format
            model.to(memory_format=layout), net.to(memory_format=layout)

    def boundary(step: int) -> bool:
        """At the joint epochs' end the budget check (once: its offset is checkpointed), then :func:`close_epoch`.

        The check comes first, so that the epoch's scores (the last ones with ``cooldown=0``) are those of the masks returned.
        """
        nonlocal offset
        settle_layout(step)
        checked = False
        if BUDGET_PROJECTION and log_lam is not None and step == cool_from and offset is None:
            offset = budget_offset(net, batches.spread(BUDGET_CHECK_IMAGES), budget, estimator, batch_size=settings["batch_size"])
            if world > 1:  # every process checked the same images; rank 0's offset, in case the float sums differ
                shared = torch.tensor(offset, dtype=torch.float64, device=device)
                dist.broadcast(shared, 0)
                offset = float(shared)
            with torch.no_grad():
                net.head.bias.add_(offset)  # the mask logits are the head's output pooled: a shift of its bias shifts them all
            checked = True
        return close_epoch(step) or checked

    def take_step(step: int) -> str:
        nonlocal sums, log_lam
        settle_layout(step)  # a run resumed in the cooldown
        images, labels = batches(step)
        if tensors is None:  # a map-style Dataset: its labels are seen one batch at a time (tensors were checked whole)
            check_labels(labels, n_classes, "data")
        images, labels = round_8bit(images.to(device), False).contiguous(memory_format=layout), labels.to(device).long()
        # The binary mask's coin flips follow from (seed, step, rank): seeded, and a resumed run repeats them.
        torch.manual_seed(step_seed(seed, step, rank, 2))
        if ANNEAL_TO is not None and step >= frozen_until:  # a function of the step: a resumed run samples alike
            # (the cooldown keeps the joint schedule's last temperature, so a run resumed there returns the same simplifier)
            progress = max(0, min(step, cool_from - 1) - frozen_until) / max(1, cool_from - 1 - frozen_until)
            net.temperature = ANNEAL_TO**progress
        cooling = step >= cool_from
        simplifying = frozen_until <= step < cool_from  # the simplifier's steps: after the warm-up, before the cooldown
        if cooling:
            net.eval()
        simplified, logits, mask_logits, logits_o = wrapped(images, bool(ORIGINALS_WEIGHT) and removes and simplifying)
        if cooling:
            net.train()
        ce = label_loss(logits, labels, head)
        loss = ce
        if logits_o is not None:  # the classifier keeps learning what the mask removed, so its gradient can ask for it back
            loss = loss + ORIGINALS_WEIGHT * label_loss(logits_o, labels, head)
        bpd, charged, kept = None, 0.0, None
        weight = 0.0 if cooling else (lam or 0.0) if log_lam is None else math.exp(log_lam)
        # Through the warm-up the bits term reaches only the simplifier, whose gradients are dropped: not computed.
        if weight > 0 and (simplifying or not FREEZE_IDLE_SIMPLIFIER):
            bpd = estimator.bpd(simplified)
            # Bits are charged only where the classifier already answers the simplified image by ``margin``.
            gate_logits = logits.detach()
            if GATE_ON_THRESHOLD:  # the thresholded image, as evaluation sees it (eval mode: no batch statistics updated)
                with torch.no_grad():
                    net.eval()  # the same mask logits, thresholded: the simplifier's forward is not repeated
                    model.eval()
                    gate_logits = model(spaces.to_model(net.from_logits(images, mask_logits.detach())))
                    net.train()
                    model.train()
            holds = (label_margin(gate_logits, labels, head) >= settings["margin"]).to(bpd.dtype)
            if log_lam is None:
                loss = loss + lam * holds * bpd
            else:  # the share kept: bpd over the original's bpd (the original is never charged)
                with torch.no_grad():
                    original_bpd = estimator.bpd(images).clamp_min(1e-3)
                kept = bpd / original_bpd
                charge = (kept - budget).clamp_min(0) if BUDGET_HINGE else kept
                loss = loss + weight * holds * charge
            charged = float(holds.mean())
        loss = loss.mean()
        if MASK_LOGIT_DECAY and removes and simplifying:  # keeps the logits where the sigmoid has a slope
            loss = loss + MASK_LOGIT_DECAY * mask_logits.float().square().mean()
        optimizer.param_groups[0]["lr"] = learning_rate(step)
        optimizer.param_groups[1]["lr"] = learning_rate(step) * simplifier_ramp(step) if simplifying else 0.0
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            if bpd is None:
                bpd = estimator.bpd(simplified.detach())
            stats = {"loss": float(loss), "train_accuracy": float(label_accuracy(logits, labels, head).mean()),
                     "train_bpd": float(bpd.mean()), "train_charged": charged, "train_lam": weight}
        if FREEZE_IDLE_SIMPLIFIER and not simplifying:
            # A learning rate of 0 stops AdamW's step, not its moments: through the warm-up they averaged the classifier's
            # pull towards the identity, and the simplifier's first steps followed it (docs/design-log.md).
            for p in net.parameters():
                p.grad = None
        optimizer.step()
        if kept is not None and simplifying:  # dual ascent on lambda, once the simplifier trains
            # Measured on the thresholded mask evaluation uses: the training samples keep more than it
            # (a cell at probability 0.3 is sometimes kept, never by the threshold), and lambda rose while nothing was left.
            with torch.no_grad():
                net.eval()
                mean_kept = (estimator.bpd(net(images)) / original_bpd).mean()
                net.train()
            if world > 1:  # every process must hold the same lambda
                dist.all_reduce(mean_kept)
                mean_kept /= world
            low, high = (math.log(v) for v in BUDGET_LAMBDA_RANGE)
            log_lam = min(high, max(low, log_lam + BUDGET_RATE * math.log(max(float(mean_kept), 1e-3) / budget)))
        sums = {k: sums.get(k, 0.0) + v for k, v in stats.items()}
        return f"accuracy {stats['train_accuracy']:.0%}  bpd {stats['train_bpd']:.2f}"

    def saved() -> dict[str, Any]:
        return {"state_dict": joint.state_dict(), "optimizer": optimizer.state_dict(), "history": json.dumps(history),
                "sums": json.dumps(sums), "log_lam": log_lam, "budget_offset": offset}

    # An interrupt raised inside a step leaves the last finished step's state, and an epoch whose
    # history entry is missing (interrupted while scoring it) is closed on resume.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        run.run(take_step, saved, description=strength_name(lam, budget).replace("-", " "), show_progress=show_progress,
                boundary=boundary)
    if world > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)
    settle_layout(total)  # a run that was already finished, or ended without a boundary there
    model.eval().requires_grad_(False)
    net.eval().requires_grad_(False)
    settings = {**run_key, "processes": world, "training_seconds": round(run.seconds, 1), "torch_threads": torch.get_num_threads(),
                "n_classes": n_classes, "head": head, "label_rows": labels_seen.dim() == 2, "channels_last": fast}
    if offset is not None:  # the budget check's shift of the mask logits (0: the masks already kept at most the budget)
        settings["budget_offset"] = offset
    if budget is not None:  # the lambda the budget settled on
        lam = math.exp(log_lam) if log_lam is not None else 0.0
    net.card = {"trained_with_classifier": "train_with_simplification", "lam": float(lam), "budget": budget, "data": run_key["data"],
                "estimator": estimator.name, "final": history[-1] if history else {}}
    return TrainingResult(model, net, float(lam), history, settings, budget=budget)


#: The budgets of a curve when none are given: 1 (nothing to remove: the reference) and three shares.
DEFAULT_BUDGETS = (1.0, 0.5, DEFAULT_BUDGET, 0.15)


@dataclass
class Tradeoff:
    """One :func:`train_with_simplification` run per budget (or lambda): the curve between input bits and accuracy.

    Attributes
    ----------
    results : dict
        Run name (:func:`~simplebits_audit.results.strength_name`: ``"budget-0.3"``, ``"lam-1"``) ->
        :class:`TrainingResult`, in the order given.
    points : list of dict
        One per run: ``lam`` (with a budget: the lambda it settled on), ``budget`` (None with a
        fixed lambda) and the final epoch's validation scores (``val_accuracy_simplified``,
        ``val_accuracy_original``, ``val_bpd_simplified``, ``val_bpd_original``, ``val_bits_kept``)
        plus ``training_seconds``.
    """

    results: dict[str, TrainingResult]
    points: list[dict[str, float]]

    def reference(self) -> dict[str, float] | None:
        """The point asked to remove least (budget 1 or lambda 0 when run): what the others are compared against."""
        return min(self.points, key=removal_order) if self.points else None

    def simplest_within(self, accuracy_drop: float = 0.02) -> dict[str, float] | None:
        """The point with the fewest bits kept whose simplified-validation accuracy is within ``accuracy_drop`` of the reference's."""
        ref = self.reference()
        if ref is None or "val_accuracy_simplified" not in ref:
            return None
        ok = [p for p in self.points if p.get("val_accuracy_simplified", math.nan) >= ref["val_accuracy_simplified"] - accuracy_drop]
        return min(ok, key=lambda p: p["val_bits_kept"]) if ok else None


def check_strengths(lams: Sequence[float] | None, budgets: Sequence[float] | None) -> list[tuple[float | None, float | None]]:
    """The runs of a curve as ``(lam, budget)`` pairs: ``lams`` or ``budgets`` (not both; neither: :data:`DEFAULT_BUDGETS`).

    ``ValueError`` naming ``lam`` or ``budget``: a bad value, a repeat (to 6 significant digits), an empty list.
    """
    if lams is not None and budgets is not None:
        raise ValueError("budget: give lambdas or budgets, not both")
    kind, values = ("lam", lams) if lams is not None else ("budget", DEFAULT_BUDGETS if budgets is None else budgets)
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{kind}: expected numbers, got {values!r}") from None
    if not values:
        raise ValueError(f"{kind}: give at least one value")
    pairs = [check_strength(**{kind: v}) for v in values]
    if len({strength_name(*pair) for pair in pairs}) != len(pairs):
        raise ValueError(f"{kind}: each value once (to 6 significant digits), got {values}")
    return pairs


def tradeoff(
    classifier_factory: Callable[[], nn.Module],
    data: Any,
    lams: Sequence[float] | None = None,
    *,
    budgets: Sequence[float] | None = None,
    val_data: Any,
    directory: str | Path | None = None,
    seed: int = 0,
    show_progress: bool = False,
    **options: Any,
) -> Tradeoff:
    """Train one classifier and simplifier per budget (or per lambda) and collect the bits-accuracy curve.

    Parameters
    ----------
    classifier_factory : callable
        Returns a fresh classifier; it is called with the random state seeded by ``seed``, so every
        run starts from the same initial weights.
    data, val_data :
        Training and validation images with labels, as for :func:`train_with_simplification`
        (validation data is required: the curve is measured on it).
    lams : sequence of float, optional
        Fixed bits weights, each >= 0 (include 0 for the reference point).
    budgets : sequence of float, optional
        Shares of the bits to keep, each in (0, 1] (1 is the reference: nothing removed). Default
        (neither given): :data:`DEFAULT_BUDGETS`. A budget means the same on any data; a fixed lambda
        does not (docs/design-log.md).
    directory : path, optional
        Each finished run is saved to ``budget-<b>/`` or ``lam-<lambda>/`` (:meth:`TrainingResult.save`)
        and reloaded instead of retrained; an unfinished one resumes from ``<name>.ckpt``.
    options :
        Passed to :func:`train_with_simplification` (``epochs``, ``batch_size``, ``lr``, ``margin``,
        ``estimator``, ``normalization``, ``device``, ``data_description``, ...), and
        ``simplifier_config``: keyword arguments of each run's new :class:`Simplifier` over
        :data:`JOINT_SIMPLIFIER` (:func:`joint_simplifier`). Under ``torchrun`` every run is data-parallel over the processes.

    Raises
    ------
    ValueError
        Bad lambdas or budgets (naming ``lam`` / ``budget``), missing ``val_data``, a directory
        holding a finished run with other settings.
    """
    if not callable(classifier_factory):
        raise TypeError("classifier_factory: expected a callable returning a fresh nn.Module")
    strengths = check_strengths(lams, budgets)
    if val_data is None:
        raise ValueError("val_data: the curve is measured on validation data; give (images, labels) or a Dataset")
    unknown = set(options) - {*JOINT_DEFAULTS, "estimator", "normalization", "transforms", "device",
                              "data_description", "checkpoint_every", "simplifier_config"}
    if unknown:
        raise TypeError(f"tradeoff: unknown options {sorted(unknown)}")
    simplifier_config = options.pop("simplifier_config", None) or {}
    settings = check_training_settings(**{k: options.get(k) for k in JOINT_DEFAULTS})
    val_images = labelled_tensors(val_data, "val_data", multilabel=True)[0]
    options["data_description"] = options.get("data_description") or _data_fingerprint(_as_dataset(data))
    rank, world = rank_and_world()
    results: dict[str, TrainingResult] = {}
    for lam, budget in strengths:
        name = strength_name(lam, budget)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # every generator: the factory may build its network on any device
            classifier = classifier_factory()
            simplifier = joint_simplifier(val_images, **simplifier_config)
        if not isinstance(classifier, nn.Module):
            raise TypeError(f"classifier_factory: returned a {type(classifier).__name__}, not an nn.Module")
        options["device"] = run_device(
            classifier, options.get("device"), must_agree=False
        )  # one device for every run: the first classifier's
        options["estimator"] = resolve_estimator(options.get("estimator"), device=options["device"])
        done = run_directory(directory, name) if directory is not None else None
        if done is not None and (done / RUN_HISTORY_FILE).is_file():
            result = TrainingResult.load(done, classifier, device=options["device"])
            expected = _run_key(settings, lam, budget, seed, world, model_fingerprint(classifier), simplifier.config, options["estimator"],
                                data, options["data_description"], options.get("normalization"), options.get("transforms"))
            changed = sorted(k for k in expected if result.settings.get(k) != expected[k])
            if changed:
                raise ValueError(f"directory: {str(done)!r} holds a finished run with other settings ({changed}); use another directory")
            results[name] = result
            continue
        result = train_with_simplification(
            classifier, data, lam=lam, budget=budget, val_data=val_data, simplifier=simplifier, seed=seed, show_progress=show_progress,
            checkpoint=run_checkpoint(directory, name) if directory is not None else None, **options,
        )
        if done is not None and rank == 0:
            result.save(done)  # history.json last: its presence marks the run finished
        if world > 1:
            dist.barrier()
        results[name] = result
    points = [{"lam": r.lam, "budget": r.budget, **{k: v for k, v in r.final.items() if k.startswith("val_")},
               "training_seconds": r.settings.get("training_seconds", float("nan"))} for r in results.values()]
    return Tradeoff(results, points)


__all__ = [
    "DEFAULT_BUDGET", "DEFAULT_BUDGETS", "JOINT_DEFAULTS", "JOINT_SIMPLIFIER", "Tradeoff", "TrainingResult", "check_strength",
    "check_strengths", "check_labels", "check_training_settings", "evaluate_joint", "joint_simplifier", "label_gap",
    "paired_difference", "score_joint",
    "tradeoff", "train_with_simplification",
]
