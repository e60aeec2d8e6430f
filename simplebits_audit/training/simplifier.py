"""Training the learned simplifier: :func:`train_simplifier` fits a
:class:`~simplebits_audit.simplification.learned.Simplifier` to a frozen classifier.

Per image the objective is the mask engine's,

    KL(f(x) || f(x'))  +  lambda * gate * bpd(x')

where the frozen classifier f is softened by a random temperature and ``gate`` charges the bits
term only while x' keeps f's top class by a log-probability ``margin`` (:func:`simplifier_loss`);
with ``deletion`` > 0 also the deletion game on the mask's order (:func:`deletion_images`). With
``order_steps`` > 0 an order head is then trained, the mask frozen, by the deletion game on the
cells the mask does not keep (:func:`order_loss`): the map's order below the kept pixels. The
network and its one-pass inference engine live in :mod:`~simplebits_audit.simplification.learned`;
this module only trains and scores it, in the shared resumable-run loop
(:mod:`~simplebits_audit.training.loop`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from .._helpers import ForwardFunc, Transform, guarded, model_guard, module_of, run_device
from .._validation import check_pixel_images
from ..estimators import BitEstimator, resolve_estimator
from ..simplification.common import Classifier, Decision, round_8bit
from ..simplification.heads import check_head, check_outputs, probabilities
from ..simplification.learned import Simplifier, grid_mask, model_fingerprint
from ..simplification.result import HALF_LEVEL
from ..spaces import make_spaces
from .data import Batches, content_fingerprint, labelled_tensors
from .loop import ResumableRun, check_checkpoint_every, rank_and_world, step_seed

#: Below this held-out top-1 kept, :func:`train_simplifier` warns.
LOW_KEPT = 0.8


class LowKeptWarning(UserWarning):
    """A trained simplifier keeps the prediction on fewer than :data:`LOW_KEPT` of the scored images."""
#: Defaults of :func:`train_simplifier` (measured choices: README, "Learned simplifier").
TRAINING_DEFAULTS: dict[str, Any] = {
    "lam": 1.0, "margin": 2.0, "steps": 4000, "batch_size": 32, "lr": 2e-3, "deletion": 0.0, "order_steps": None,
}
#: ``order_steps=None`` trains the order head for this share of the mask's ``steps`` (1000 after the default 4000:
#: chosen on the design testbeds, docs/design-log.md).
ORDER_SHARE = 0.25
#: The deletion term's share of the mask grid's cells, drawn per image uniformly from this range.
DELETION_SHARES = (0.0, 0.5)
#: Sharpness of the deletion term's soft rank, in mask-logit units (a cell one unit above the
#: boundary is 73 % removed).
DELETION_TEMPERATURE = 1.0


def deletion_shares(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` shares (n,) drawn uniformly from :data:`DELETION_SHARES` on ``generator`` (CPU)."""
    lo, hi = DELETION_SHARES
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def deletion_images(net: Simplifier, x: torch.Tensor, logits: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """8-bit images ``x`` (B, C, H, W) with their highest-ranked mask cells removed: the deletion game's images.

    The deletion game of Fong & Vedaldi 2017 ("Interpretable explanations of black boxes by
    meaningful perturbation"), on the mask's order. Per image, with n = floor(``shares`` * cells)
    for ``shares`` (B,) in [0, 1) and cells the grid's h * w, the boundary is the (n+1)-th largest
    of the mask ``logits`` (B, 1, h, w); each cell is blended towards the simplifier's reference by
    sigmoid((logit - boundary) / :data:`DELETION_TEMPERATURE`): the n cells above the boundary mostly,
    the boundary's own cell by half, closely spaced logits around it partly (a soft rank, so that the
    gradient reaches the logits near the boundary). Always soft, also for a ``binary`` simplifier.
    Rounded straight-through. The boundary moves with the logits, so a shift of every logit leaves
    the images unchanged; a spread of them does not.

    Raises ValueError if ``logits`` and ``shares`` do not hold one row per image of ``x``.
    """
    b, cells = logits.shape[0], logits[0].numel()
    if not (b == len(x) == len(shares)):
        raise ValueError(f"logits, shares: expected {len(x)} rows (one per image), got {b} and {len(shares)}")
    return _remove_top(net, x, logits, (shares.to(logits.device) * cells).long())


def _remove_top(net: Simplifier, x: torch.Tensor, logits: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """``x`` with the ``n`` (B,) highest ``logits`` cells removed through the soft rank of :func:`deletion_images`."""
    b, cells = logits.shape[0], logits[0].numel()
    # The boundary moves with the logits (not detached): detached, the term pushed every logit up (all bits kept).
    ranked = logits.flatten(1).sort(1, descending=True).values
    boundary = ranked.gather(1, n.clamp(0, cells - 1)[:, None]).view(b, 1, 1, 1)
    removed = grid_mask((logits - boundary) / DELETION_TEMPERATURE, x.shape[-2:])
    return round_8bit((1 - removed) * x + removed * net.reference(x), True)


#: How far above every other cell :func:`order_images` ranks the kept cells, in logit units (removed to 1 - 1e-13).
_KEPT_ABOVE = 30.0


def order_images(net: Simplifier, x: torch.Tensor, mask_logits: torch.Tensor, order_logits: torch.Tensor,
                 shares: torch.Tensor, level: float = HALF_LEVEL) -> tuple[torch.Tensor, torch.Tensor]:
    """The deletion game on the map's order: 8-bit images ``x`` (B, C, H, W) with the mask's kept cells removed, then
    the order head's top share of the others; and which images have cells left to order, (B,) bool.

    The map ranks every kept cell (sigmoid(``mask_logits``) >= ``level``, (B, 1, h, w): :data:`HALF_LEVEL`
    for a soft mask, 0.5 for a binary one, whose returned image keeps only the cells above it)
    first and the others by ``order_logits`` (the same shape, or finer: the mask is then upsampled
    to it as the returned image's is, a binary mask's cells as they are in evaluation), so removing its top ranks removes the
    kept cells and then n = kept + floor(``shares`` * unkept) cells in all, ``shares`` (B,) in [0, 1);
    the cells below the kept ones go through :func:`deletion_images`' soft rank. Rounded straight-through.
    """
    # kept where the returned image keeps the pixel, at the order's resolution (the mask's grid for today's head):
    # the mask the returned image is made with (a binary simplifier's evaluation cells, even while training)
    kept = net.grid_to_mask(mask_logits.detach(), order_logits.shape[-2:], evaluation=True) >= level
    n_kept = kept.flatten(1).sum(1)
    unkept = kept[0].numel() - n_kept
    top = order_logits.detach().flatten(1).amax(1).view(-1, 1, 1, 1)
    ranked = torch.where(kept, top + _KEPT_ABOVE, order_logits)
    n = n_kept + (shares.to(order_logits.device) * unkept).long()
    return _remove_top(net, x, ranked, n), unkept > 0


def order_loss(
    net: Simplifier, classifier: Classifier, pixels: torch.Tensor, *, generator: torch.Generator, head: str = "softmax",
    threshold: float = 0.5,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The order head's objective on one batch of pixel images (B, C, H, W): mean softplus(margin) of :func:`order_images`.

    The answer should fall once the map's top ranks are removed (the deletion game of Fong &
    Vedaldi 2017 on the cells the mask does not keep); the mask, the trunk and so the returned
    images are fixed (no gradient reaches them). Images whose mask keeps every cell count 0. Stats:
    ``order_loss`` and ``order_kept``, the share of those images whose answer survives the removal.
    """
    x = round_8bit(pixels, False)
    with torch.no_grad():
        feats = net.features(x)  # frozen: only the order head learns
        decision = Decision.of(classifier.logits(x), None, head=head, threshold=threshold)
    mask_logits, order_logits = net.heads(feats, x.shape[-2:])  # order_images detaches the mask's
    level = 0.5 if net.config.get("binary") else HALF_LEVEL  # what the returned image keeps
    images, has_cells = order_images(net, x, mask_logits, order_logits, deletion_shares(len(x), generator), level)
    margin = decision.margin(classifier.logits(images))
    weight = has_cells.to(margin.dtype)
    loss = (weight * F.softplus(margin)).sum() / weight.sum().clamp_min(1)
    kept = float(((margin.detach() >= 0) & has_cells).float().sum() / has_cells.float().sum().clamp_min(1))
    return loss, {"order_loss": float(loss.detach()), "order_kept": kept}


def simplifier_loss(
    simplifier: nn.Module, classifier: Classifier, estimator: BitEstimator, pixels: torch.Tensor, *,
    lam: float, margin: float, objective: str = "kl", labels: torch.Tensor | None = None,
    temperature: tuple[float, float] = (1.0, 1.5), generator: torch.Generator | None = None, head: str = "softmax", threshold: float = 0.5,
    deletion: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training objective on one batch of pixel images (B, C, H, W): mean loss (in bits per dimension) and stats.

    ``objective="kl"`` keeps the classifier's own distribution (no labels needed); ``"ce"`` keeps
    ``labels``. The bits term of an image counts only while its simplified version keeps the top
    class (the label for ``"ce"``) by a log-probability ``margin`` (sigmoid ``head``: every kept
    label stays on its side of ``threshold`` by ``margin`` in log-odds; see
    :class:`~simplebits_audit.simplification.heads.Decision`). With ``deletion`` > 0 the loss adds
    ``deletion * softplus(margin)`` of :func:`deletion_images` (the answer should fall once the
    highest-ranked cells are removed: the deletion game of Fong & Vedaldi 2017, the destroyer term
    of Dabkowski & Gal 2017), which orders the cells below the kept ones by what else the answer rests on;
    ``simplifier`` must then take ``with_logits=True`` and return the images and their mask logits
    (B, 1, h, w) (:class:`~simplebits_audit.simplification.learned.Simplifier` does), and the stats
    add ``deletion_kept``, the share of deletion images that still keep the decision.
    """
    generator = generator or torch.Generator().manual_seed(0)
    with torch.no_grad():
        logits_before = classifier.logits(pixels)
    target = None if labels is None or objective == "kl" else labels.to(pixels.device)
    decision = Decision.of(logits_before, target, head=head, threshold=threshold)
    simplified, mask_logits = simplifier(pixels, with_logits=True) if deletion > 0 else (simplifier(pixels), None)
    logits = classifier.logits(simplified)
    task = decision.task_loss(logits, objective, temperature, generator)
    bpd = estimator.bpd(simplified)
    gap = decision.margin(logits)
    # An image the classifier was less sure of than ``margin`` must keep its own original gap.
    required = torch.minimum(decision.margin(logits_before), torch.full_like(gap, margin))
    holds = (gap >= required).detach()
    original_8bit = round_8bit(pixels, False)
    with torch.no_grad():
        bpd_before = estimator.bpd(original_8bit)
    per_image = task + lam * holds.to(bpd.dtype) * bpd
    stats: dict[str, float] = {}
    if deletion > 0:
        net = getattr(simplifier, "module", simplifier)  # under DistributedDataParallel
        deleted = deletion_images(net, original_8bit, mask_logits, deletion_shares(len(pixels), generator))
        deleted_margin = decision.margin(classifier.logits(deleted))
        per_image = per_image + deletion * F.softplus(deleted_margin)
        stats["deletion_kept"] = float((deleted_margin.detach() >= 0).float().mean())
    loss = per_image.mean()
    stats = {
        "loss": float(loss.detach()), "task": float(task.detach().mean()), "bpd": float(bpd.detach().mean()),
        "bits_kept": float((bpd.detach() / bpd_before).mean()),
        "top1_kept": float(decision.kept(probabilities(logits.detach(), head), "top1").float().mean()),
        "margin_held": float(holds.float().mean()), **stats,
    }
    return loss, stats


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
    estimator = resolve_estimator(estimator, device=device)
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


@guarded
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
    deletion: float | None = None,
    order_steps: int | None = None,
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
    data : Tensor (N, C, H, W), Dataset of (image, label), (images, labels) pair, or iterable of batches
        Training images in pixel space [0, 1] (a batch is a tensor or an ``(images, labels)`` pair).
        Labels (class indices (N,)) are only used by ``objective="ce"``; label rows are refused.
    estimator : BitEstimator or str, optional
        The bit estimator charged (default: the package default).
    lam : float, optional
        Weight of the bits term (bits per dimension) against the task term. Default 1.
    margin : float, optional
        The bits term of an image is charged only while its simplified version keeps the top class
        by this log-probability margin (nats). Larger keeps more predictions, removes fewer bits.
        Default 2 (an image the classifier was less sure of keeps its own original margin).
    deletion : float, optional
        Weight of the deletion term (:func:`simplifier_loss`): the answer should fall once the
        mask's highest-ranked cells are removed, so that the cells below the kept ones are ordered by
        what else the answer rests on (the map's order; the returned image is the mask's). Default 0;
        on the report testbeds 1 raised the map's AUROC at 1.3-1.8x the bits kept (docs/design-log.md).
    order_steps : int, optional
        After the mask's ``steps``, this many Adam steps train an order head with everything else
        frozen (:func:`order_loss`, the deletion game on the cells the mask does not keep): the map
        then ranks the pixels the returned image takes from the reference by it, and the returned
        images, bits and kept answers are exactly those without it. Default: :data:`ORDER_SHARE`
        of ``steps`` (1000 after 4000); 0 trains no order head (the map below the kept pixels is
        then the mask's own values, mostly tied at 0). With a trained ``simplifier`` and
        ``steps=0``, only its order head is trained (give ``order_steps``).
    steps, batch_size, lr : optional
        Adam steps, images per step (per process under ``torchrun``), learning rate. Defaults:
        :data:`TRAINING_DEFAULTS`. ``steps`` may be 0 only with a ``simplifier`` and ``order_steps`` > 0.
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

    Raises
    ------
    ValueError
        Before training, naming the argument: ``lam``, ``margin`` or ``deletion`` negative or not
        finite, ``steps`` or ``batch_size`` not a positive integer (``steps`` 0 see above),
        ``order_steps`` not an integer >= 0, ``lr`` not positive, an unknown
        ``objective`` or ``head``, images outside [0, 1], a classifier with no gradient path.
    RuntimeError
        Before training: called where autograd is off, or autograd failing through the classifier.
    """
    options = {"lam": lam, "margin": margin, "steps": steps, "batch_size": batch_size, "lr": lr, "deletion": deletion,
               "order_steps": order_steps}
    settings = {k: TRAINING_DEFAULTS[k] if v is None else v for k, v in options.items()}
    if objective not in ("kl", "ce"):
        raise ValueError(f"objective: expected 'kl' or 'ce', got {objective!r}")
    check_head(head, threshold)
    if not callable(forward_func):
        raise TypeError("forward_func: must be callable (a model or a function returning logits)")
    for name in ("lam", "margin", "deletion"):  # ValueError naming the option
        if not (isinstance(settings[name], (int, float)) and math.isfinite(settings[name]) and settings[name] >= 0):
            raise ValueError(f"{name}: expected a finite number >= 0, got {settings[name]!r}")
    def is_count(value: Any, least: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    # steps first: order_steps' default is read from it
    if not is_count(settings["steps"], 0):
        raise ValueError(f"steps: expected a positive integer, got {settings['steps']!r}")
    if settings["order_steps"] is None:
        settings["order_steps"] = int(ORDER_SHARE * settings["steps"])
    if not is_count(settings["order_steps"], 0):
        raise ValueError(f"order_steps: expected an integer >= 0, got {settings['order_steps']!r}")
    if settings["steps"] == 0 and not (simplifier is not None and settings["order_steps"] > 0):
        raise ValueError("steps: expected a positive integer, got 0 (0 only trains the order head of a given simplifier: "
                         "pass simplifier= and order_steps > 0)")
    if not is_count(settings["batch_size"], 1):
        raise ValueError(f"batch_size: expected a positive integer, got {settings['batch_size']!r}")
    if not (settings["lr"] > 0):
        raise ValueError(f"lr: expected a positive learning rate, got {settings['lr']!r}")
    check_checkpoint_every(checkpoint_every)
    rank, world = rank_and_world()
    device = run_device(forward_func, device, must_agree=False)
    spaces = make_spaces(normalization, transforms)
    if (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)
            and data[0].dim() == 4 and data[1].dim() <= 2):  # an (images, labels) pair, as the other settings take, not two batches
        data = TensorDataset(*labelled_tensors(data, "data", multilabel=True)[:2])
    batches = Batches(data, settings["batch_size"], seed, rank)
    first, first_labels = batches.peek()
    first = check_pixel_images(first.to(device), "data (a batch)")
    if held_out is not None:
        check_pixel_images(held_out, "held_out")
        if held_out.shape[1:] != first.shape[1:]:
            raise ValueError(f"held_out: images of shape {tuple(held_out.shape[1:])}, the training images are {tuple(first.shape[1:])}")
    if simplifier is not None and simplifier.config["in_channels"] != first.shape[1]:
        raise ValueError(f"simplifier: made for {simplifier.config['in_channels']}-channel images, the data has {first.shape[1]}")
    estimator = resolve_estimator(estimator, device=device)
    classifier = Classifier(forward_func, spaces, ())
    with model_guard(forward_func):
        with torch.no_grad():
            logits_first = classifier.logits(first[:2])
        n_classes = logits_first.shape[1]
        check_outputs(n_classes, head, model=forward_func)
        # The simplifier learns through the classifier's gradient: refuse a blocked path before training.
        classifier.check_gradient_path(first[:2], Decision.of(logits_first, None, head=head, threshold=threshold))
    if first_labels is not None and first_labels.dim() != 1:
        raise ValueError(f"data: label rows (shape {tuple(first_labels.shape)}) are not taken here; the simplifier keeps the model's "
                         "own answer (objective='kl', no labels) or one class index per image ('ce')")
    if objective == "ce" and first_labels is None:
        raise ValueError("objective: 'ce' needs labels, and data gives images only "
                         "(use a Dataset of (image, label) or (images, labels) batches)")

    # Every generator: the run below draws on the device too (a binary mask's coin flips, the classifier's
    # Dropout), and those draws have followed ``seed`` since the simplifier was added.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = simplifier if simplifier is not None else Simplifier(in_channels=first.shape[1])
    mask_steps, order_steps = settings["steps"], settings["order_steps"]
    if mask_steps == 0:
        net.check_classifier(forward_func)  # warns if the mask was trained against another classifier
    if order_steps > 0:
        net.add_order_head()  # zeros: the mask's training below draws exactly what it drew without it
    net = net.to(device).train().requires_grad_(True)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings["lr"])
    fingerprint = model_fingerprint(forward_func)
    # ``steps`` may change between runs (training longer from a checkpoint equals training longer from the start),
    # unless an order phase follows it: where the mask's steps end is then part of the run.
    run_key = {
        # deletion and order_steps only when on: a checkpoint written before the options existed still resumes
        **{k: v for k, v in settings.items() if not (k in ("deletion", "order_steps") and v == 0) and (k != "steps" or order_steps > 0)},
        "objective": objective, "head": head, "threshold": threshold, "seed": seed,
        "world": world, "model_fingerprint": fingerprint, "config": net.config, "estimator": estimator.name,
        "data": data_description or type(data).__name__, "data_fingerprint": content_fingerprint(data),
        # an order-only run resumes onto the network it started from, not another of the same configuration
        # (its frozen parts: training in place leaves them as they were, so a rerun with the same object resumes)
        **({"start": model_fingerprint(nn.ModuleList([net.local, net.context, net.head]))} if mask_steps == 0 else {}),
    }
    run = ResumableRun(checkpoint, run_key, total=mask_steps + order_steps, checkpoint_every=checkpoint_every, device=device)
    state = run.resume()
    if state is not None:
        net.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
    # The order head has no gradient in the mask's steps: DistributedDataParallel must expect that.
    model = nn.parallel.DistributedDataParallel(net, find_unused_parameters=net.order_head is not None) if world > 1 else net
    running: dict[str, float] = {}

    def take_step(step: int) -> str:
        return take_mask_step(step) if step < mask_steps else take_order_step(step - mask_steps)

    def take_order_step(step: int) -> str:
        nonlocal running
        images, _ = batches(step)  # numbered from 0 in this phase: the same draws after any number of mask steps
        generator = torch.Generator().manual_seed(step_seed(seed, step, rank, 2))
        loss, stats = order_loss(net, classifier, images.to(device), generator=generator, head=head, threshold=threshold)
        optimizer.zero_grad(set_to_none=True)
        params = list(net.order_head.parameters())
        loss.backward(inputs=params)
        if world > 1:  # outside the DistributedDataParallel wrapper: average the head's gradients by hand
            for p in params:
                torch.distributed.all_reduce(p.grad)
                p.grad /= world
        optimizer.step()  # the frozen parts have no gradient, so Adam leaves them as they are
        running = {**running, **{k: 0.95 * running.get(k, v) + 0.05 * v for k, v in stats.items()}}  # each phase its own keys
        return f"order: answers kept after removal {running['order_kept']:.0%}"

    def take_mask_step(step: int) -> str:
        nonlocal running
        images, labels = batches(step)
        generator = torch.Generator().manual_seed(step_seed(seed, step, rank, 1))
        loss, stats = simplifier_loss(
            model, classifier, estimator, images.to(device), lam=settings["lam"], margin=settings["margin"], objective=objective,
            labels=labels, generator=generator, head=head, threshold=threshold, deletion=settings["deletion"],
        )
        optimizer.zero_grad(set_to_none=True)
        # Gradients for the simplifier only: nothing accumulates in the classifier's parameters,
        # even when forward_func is a plain function wrapping a module.
        loss.backward(inputs=list(net.parameters()))
        optimizer.step()
        running = {**running, **{k: 0.95 * running.get(k, v) + 0.05 * v for k, v in stats.items()}}  # each phase its own keys
        return f"bits kept {running['bits_kept']:.2f}  top-1 kept {running['top1_kept']:.0%}"

    with model_guard(forward_func):
        if (module := module_of(forward_func)) is not None:
            for p in module.parameters():  # per parameter: a TorchScript module has no requires_grad_()
                p.requires_grad_(False)  # gradients reach the simplifier only; the guard restores the flags
        run.run(take_step, lambda: {"state_dict": net.state_dict(), "optimizer": optimizer.state_dict()},
                description="training simplifier", show_progress=show_progress)
    seconds = run.seconds

    net.eval().requires_grad_(False)
    if mask_steps == 0 and net.card:
        # Only the order head was trained: the card's mask, training and held-out scores are still the network's.
        net.card = {**net.card, "order_steps": order_steps, "order_training_seconds": round(seconds, 1), "processes": world,
                    "order_final_running": {k: round(v, 4) for k, v in running.items()}}
        return net
    scored = held_out if held_out is not None else batches.sample(256)
    scores = evaluate_simplifier(net, forward_func, scored.to(device), estimator=estimator, normalization=normalization,
                                 transforms=transforms, head=head, threshold=threshold)
    net.card = {
        "model_fingerprint": fingerprint, "n_classes": n_classes, "data": data_description or type(data).__name__,
        "objective": objective, "head": head, "threshold": threshold, **settings, "seed": seed, "processes": world,
        "estimator": estimator.name,
        "training_seconds": round(seconds, 1), "torch_threads": torch.get_num_threads(),
        "held_out": {**scores, "split": "held_out" if held_out is not None else "training images (no held-out data given)"},
        "parameters": net.num_parameters, "final_running": {k: round(v, 4) for k, v in running.items()},
    }
    if scores["top1_kept"] < LOW_KEPT:
        warnings.warn(LowKeptWarning(
            f"train_simplifier: the trained simplifier keeps the prediction on only {scores['top1_kept']:.0%} of the scored images "
            f"(bits kept {scores['bits_kept']:.2f}); simplify() falls back towards the original for the others. A smaller lam, "
            "a larger margin or refine_steps keep more"),
            stacklevel=3,  # the caller of the @guarded wrapper
        )
    return net


__all__ = [
    "DELETION_SHARES", "DELETION_TEMPERATURE", "LOW_KEPT", "ORDER_SHARE", "LowKeptWarning", "TRAINING_DEFAULTS", "deletion_images",
    "deletion_shares", "evaluate_simplifier", "order_images", "order_loss", "simplifier_loss", "train_simplifier",
]
