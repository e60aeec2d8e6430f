"""Dataset condensation with simplification: a few synthetic images per class that teach what the data teaches.

:func:`condense` learns ``images_per_class`` synthetic images per class by gradient matching
(Zhao, Mopuri & Bilen 2021, "Dataset Condensation with Gradient Matching"): for a freshly
initialised network, the gradient of the classification loss on a real batch of class c and on
the synthetic images of class c should point the same way, layer by layer and output unit by
output unit. SimpleBits (Schirrmeister et al. 2022) adds the bits of the synthetic images as a
penalty, so that what survives is what the data set teaches, without the detail it does not need:

    L(z) = mean_c match(grad_theta CE(f_theta(real_c), c), grad_theta CE(f_theta(sigmoid(z_c)), c))
           + lam * mean bpd(round_8bit(sigmoid(z)))

``match`` is 1 - cosine similarity per output row of each weight, averaged over rows and layers
(biases and normalisation weights are not matched, as in the DC paper), so it lies in [0, 2] and
``lam`` is in units of "matching distance per bit per dimension". The images are pixel logits z
initialised near grey (0.2 N(0, 1)), rounded to 8 bits straight-through when the bits are measured.
The paper's weights of 1e5-1e6 were relative to a summed matching loss; with this mean distance
the useful lam is of order 1 (:data:`CONDENSE_DEFAULTS`: lam 0.5 kept the accuracy of plain
gradient matching on ``stripes`` at 5.7x fewer bits; lam >= 1 without a warm-up lost the stripes).

One outer step = one fresh network (seeded by ``seed`` and the step), ``match_steps`` updates of
the images, with ``inner_steps`` SGD steps of the network on the current synthetic set between
them (the network follows the images, as in DC). Every random draw follows from ``seed`` and the
step, so a run resumed from its checkpoint ends with the same images as an uninterrupted one.

:func:`evaluate_condensed` trains fresh classifiers on a condensed set and scores them on test
data, beside the same number of random real images and (optionally) the condensation without the
bits term.
"""

from __future__ import annotations

import json
import math
import numbers
import reprlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .._helpers import run_device, seeded
from .._io import load_saved, save_torch
from .._progress import JobProgress
from ..codecs import codec_bits
from ..estimators import BitEstimator, resolve_estimator
from ..estimators.analytic import snap_to_prediction
from ..simplification.common import round_8bit
from .data import data_fingerprint, labelled_tensors
from .loop import ResumableRun, check_checkpoint_every, cosine_decay, step_seed
from .networks import ARCHS, EVALUATE_DEFAULTS, accuracy, make_network, train_network

#: What :meth:`CondensedSet.load` reads: the format version written by :meth:`CondensedSet.save`.
FORMAT = 1
#: Defaults of :func:`condense` (measured choices: README, "Dataset condensation").
CONDENSE_DEFAULTS: dict[str, Any] = {
    "lam": 0.5, "outer_steps": 120, "match_steps": 5, "inner_steps": 5, "real_batch": 32, "lr": 0.1, "net_lr": 0.01,
    "init_scale": 0.2, "schedule": "cosine", "warmup": 0.0, "init": "noise", "resolution": None, "basis": "luma-chroma",
    "near": 2,
}
#: How the synthetic images start: "noise" (grey plus ``init_scale`` * N(0, 1) logits, the DC paper's
#: start) or "real" (a random real image of the class per synthetic image, as DC's real initialisation).
INITS = ("noise", "real")
#: What the optimised logits of a colour image are: "rgb" (one per channel) or "luma-chroma" (channels
#: (R - G, G, B - G) of the logits: the green logit and the red and blue logits' differences from it,
#: after the estimator's planes G, R - G, B - G; zero differences are a grey pixel, so colour the
#: matching does not need can go grey). Grey images always run in "rgb" (:func:`basis_for`).
BASES = ("rgb", "luma-chroma")


# --------------------------------------------------------------------------------------------
# gradient matching (the networks: :mod:`~simplebits_audit.training.networks`)


def matching_distance(real: Sequence[torch.Tensor], synthetic: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over the output rows of every weight of 1 - cosine(real gradient row, synthetic gradient row), in [0, 2].

    Parameters with one dimension (biases, normalisation weights) are left out, as in the DC paper.
    """
    total, rows = 0.0, 0
    for gr, gs in zip(real, synthetic):
        if gr.dim() < 2:
            continue
        cos = F.cosine_similarity(gr.flatten(1), gs.flatten(1), dim=1, eps=1e-8)
        total = total + (1 - cos).sum()
        rows += gr.shape[0]
    return total / max(rows, 1)


# --------------------------------------------------------------------------------------------
# the condensed set


@dataclass
class CondensedSet:
    """A condensed training set: ``images`` (N, C, H, W) 8-bit values in [0, 1], ``labels`` (N,), ``bits`` (N,).

    Images come class by class (``images_per_class`` of class 0 first). ``bits`` are the
    estimator's bits of each 8-bit image; ``settings`` say how it was made (``lam``, steps,
    estimator, seconds, ...); ``history`` holds, per outer step, the mean matching distance and bpd.
    """

    images: torch.Tensor
    labels: torch.Tensor
    bits: torch.Tensor
    classes: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:  # the dataclass's would print every image
        shape = "x".join(map(str, self.images.shape[1:]))
        return (f"CondensedSet({len(self)} images of {shape}, {len(self.classes)} classes, "
                f"{float(self.bits.sum()):.0f} bits, lam {self.settings.get('lam')})")

    @property
    def bpd(self) -> torch.Tensor:
        """Bits per dimension of each image (N,)."""
        return self.bits / math.prod(self.images.shape[1:])

    def webp_bits(self) -> torch.Tensor:
        """Size of each image as lossless WebP, in bits (N,): the outside check on the estimator."""
        return codec_bits(self.images, "webp")

    def jxl_bits(self) -> torch.Tensor:
        """Size of each image as lossless JPEG-XL, in bits (N,): the second outside check."""
        return codec_bits(self.images, "jxl")

    def save(self, path: str | Path) -> Path:
        """Write atomically (loads with ``weights_only=True``: tensors, numbers and JSON text only)."""
        images = (self.images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
        return save_torch({
            "format": FORMAT, "images": images, "labels": self.labels.detach().cpu().long(), "bits": self.bits.detach().cpu().double(),
            "classes": json.dumps(list(self.classes)), "settings": json.dumps(self.settings), "history": json.dumps(self.history),
        }, path)

    @classmethod
    def load(cls, path: str | Path) -> CondensedSet:
        """Read a set written by :meth:`save` (weights only: no pickled code runs)."""
        data = load_saved(path, what="a condensed set written by CondensedSet.save", missing="no condensed set", version=FORMAT,
                          key="images")
        return cls(data["images"].float() / 255, data["labels"], data["bits"].float(), json.loads(data["classes"]),
                   json.loads(data["settings"]), json.loads(data["history"]))


# --------------------------------------------------------------------------------------------
# reading data


def _check_number(name: str, value: Any, *, integer: bool = False, positive: bool = True) -> None:
    if integer:
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if positive else 0):
            raise ValueError(f"{name}: expected an integer >= {1 if positive else 0}, got {value!r}")
    elif (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
          or (positive and value == 0)):
        raise ValueError(f"{name}: expected a finite number {'> 0' if positive else '>= 0'}, got {value!r}")


# --------------------------------------------------------------------------------------------
# condensation


def condense_settings(
    *, images_per_class: int = 10, lam: float | None = None, arch: str = "convnet", outer_steps: int | None = None,
    match_steps: int | None = None, inner_steps: int | None = None, real_batch: int | None = None, lr: float | None = None,
    init_scale: float | None = None, schedule: str | None = None, warmup: float | None = None, init: str | None = None,
    resolution: int | None = None, basis: str | None = None, near: int | None = None, seed: int = 0,
) -> dict[str, Any]:
    """The settings :func:`condense` runs with (defaults filled in), checked: ``ValueError`` naming a bad argument.

    Cheap: jobs call it before loading any data.
    """
    options = {"lam": lam, "outer_steps": outer_steps, "match_steps": match_steps, "inner_steps": inner_steps, "real_batch": real_batch,
               "lr": lr, "init_scale": init_scale}
    settings = {k: CONDENSE_DEFAULTS[k] if v is None else v for k, v in options.items()}
    settings["net_lr"] = CONDENSE_DEFAULTS["net_lr"]
    settings["schedule"] = CONDENSE_DEFAULTS["schedule"] if schedule is None else schedule
    settings["warmup"] = CONDENSE_DEFAULTS["warmup"] if warmup is None else warmup
    settings["init"] = CONDENSE_DEFAULTS["init"] if init is None else init
    settings["resolution"] = CONDENSE_DEFAULTS["resolution"] if resolution is None else resolution
    settings["basis"] = CONDENSE_DEFAULTS["basis"] if basis is None else basis
    settings["near"] = _grey_levels(CONDENSE_DEFAULTS["near"] if near is None else near)
    if settings["basis"] not in BASES:
        raise ValueError(f"basis: expected one of {BASES}, got {settings['basis']!r}")
    if settings["resolution"] is not None:
        _check_number("resolution", settings["resolution"], integer=True)
    if settings["init"] not in INITS:
        raise ValueError(f"init: expected one of {INITS}, got {settings['init']!r}")
    if not (isinstance(settings["warmup"], (int, float)) and 0 <= settings["warmup"] <= 1):
        raise ValueError(f"warmup: expected a share of the outer steps in [0, 1], got {settings['warmup']!r}")
    if settings["schedule"] not in ("constant", "cosine"):
        raise ValueError(f"schedule: expected 'constant' or 'cosine', got {settings['schedule']!r}")
    _check_number("images_per_class", images_per_class, integer=True)
    _check_number("lam", settings["lam"], positive=False)
    for name in ("outer_steps", "match_steps", "real_batch"):
        _check_number(name, settings[name], integer=True)
    _check_number("inner_steps", settings["inner_steps"], integer=True, positive=False)
    _check_number("lr", settings["lr"])
    _check_number("init_scale", settings["init_scale"], positive=False)
    if arch not in ARCHS:
        raise ValueError(f"arch: expected one of {sorted(ARCHS)}, got {arch!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an integer, got {seed!r}")
    return {**settings, "images_per_class": images_per_class, "arch": arch, "seed": seed}


def condense(
    data: Any,
    *,
    images_per_class: int = 10,
    lam: float | None = None,
    estimator: BitEstimator | str | None = None,
    arch: str = "convnet",
    outer_steps: int | None = None,
    match_steps: int | None = None,
    inner_steps: int | None = None,
    real_batch: int | None = None,
    lr: float | None = None,
    init_scale: float | None = None,
    schedule: str | None = None,
    warmup: float | None = None,
    init: str | None = None,
    resolution: int | None = None,
    basis: str | None = None,
    near: int | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: float = 30.0,
    device: str | torch.device | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> CondensedSet:
    """Condense ``data`` to ``images_per_class`` synthetic images per class, charging their bits.

    Parameters
    ----------
    data : Dataset of (image, label), testbed, or (images, labels) pair
        Real training images (N, C, H, W) in [0, 1], square, with integer labels (N,). Every class
        ``0 .. K-1`` must have at least one image (K = ``len(data.classes)`` if given, else the
        largest label + 1). Held in memory (on CPU; batches go to ``device``).
    images_per_class : int
        Synthetic images per class.
    lam : float, optional
        Weight of the bits term (mean bits per dimension of the 8-bit synthetic images) against the
        matching distance (in [0, 2]); 0 is plain gradient matching. Default
        :data:`CONDENSE_DEFAULTS`.
    estimator : BitEstimator or str, optional
        The bit estimator charged and reported (default: the package default).
    arch : {"convnet", "smallcnn"}
        The network whose gradients are matched (:data:`ARCHS`); a fresh one every outer step.
    outer_steps : int, optional
        Fresh networks, one after the other (the length of the run; may grow when resuming).
    match_steps, inner_steps : int, optional
        Image updates per network, and network SGD steps on the synthetic set between them.
    real_batch : int, optional
        Real images of each class per matching step.
    lr : float, optional
        Adam learning rate on the pixel logits (betas 0.5, 0.99, as the paper).
    init_scale : float, optional
        The logits start as ``init_scale`` * N(0, 1): noisy grey images.
    schedule : {"cosine", "constant"}, optional
        The learning rate over the outer steps. Cosine (the default) decays it to 0: with a
        constant rate Adam keeps dithering every pixel by about ``lr`` and the images cannot get
        simple (stripes: 5.9 bits / dim at lam 1 against 1.4 with cosine decay, README).
    warmup : float, optional
        Share of the outer steps over which lam ramps up linearly from 0 (default 0: none).
    init : {"noise", "real"}, optional
        How the images start (:data:`INITS`): noisy grey (default) or a random real image of the
        class each (its logits, pixels clamped to [1/255, 254/255]).
    resolution : int, optional
        Draw each image from ``resolution`` x ``resolution`` pixel logits upsampled bilinearly to
        the data's size (at most that size; default: the full size). Coarser images cost fewer
        bits; on ``stripes`` they also taught less (docs/design-log.md, "Dataset condensation").
    basis : {"rgb", "luma-chroma"}, optional
        What is optimised for a colour image (:data:`BASES`): a logit per channel, or the green
        logit and the red and blue logits' differences from it (after the estimator's planes G,
        R - G, B - G), so that colour the matching does not need can flatten out. The ``init_scale``
        noise is drawn in the basis's own parameters. Single-channel data run in "rgb". Default
        :data:`CONDENSE_DEFAULTS` ("luma-chroma", since 2026-12-03).
    near : int, optional
        After the last step, each image's coded residuals of at most ``near`` grey levels are set
        to 0 (:func:`~simplebits_audit.estimators.analytic.snap_to_prediction`: a near-lossless
        pass; each of the coder's planes G, R - G, B - G moves by at most ``near`` levels, R and B by at
        most 2 * ``near``), and an image keeps the pass only
        where ``estimator`` rates it cheaper (:func:`finish_images`). Gradient descent through the
        8-bit rounding leaves flat regions dithered by a level or two, which the pass removes; 0
        turns it off. Not part of the checkpoint's key: the steps before it are the same. Default
        :data:`CONDENSE_DEFAULTS` (2, since 2026-12-03, chosen on ``stripes``).
    checkpoint : path, optional
        Resumable state, written atomically every ``checkpoint_every`` seconds (between outer
        steps), on Ctrl-C and at the end; if it exists, the run continues from it (with the same
        settings and data; ``outer_steps`` may be larger only with a constant schedule and no warmup)
        and ends with the images an uninterrupted run would have made.
    device : optional
        Where to compute (default CPU).
    seed : int
        Initial images, networks and real batches follow from it.
    show_progress : bool
        A rich progress bar with the running matching distance and bits per dimension.

    Returns
    -------
    CondensedSet
        Images (K * images_per_class, C, H, W), 8-bit, in [0, 1]; labels; bits per image under
        ``estimator``; the settings and the per-step history.
    """
    settings = condense_settings(images_per_class=images_per_class, lam=lam, arch=arch, outer_steps=outer_steps, match_steps=match_steps,
                                 inner_steps=inner_steps, real_batch=real_batch, lr=lr, init_scale=init_scale, schedule=schedule,
                                 warmup=warmup, init=init, resolution=resolution, basis=basis, near=near, seed=seed)
    check_checkpoint_every(checkpoint_every)
    images, labels, classes = labelled_tensors(data)
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"data: expected square images, got {tuple(images.shape[-2:])}")
    n_classes = len(classes) if classes else int(labels.max()) + 1
    if int(labels.max()) >= n_classes:
        raise ValueError(f"data: labels go up to {int(labels.max())} but there are {n_classes} classes")
    by_class = [torch.nonzero(labels == c)[:, 0] for c in range(n_classes)]
    empty = [c for c, idx in enumerate(by_class) if len(idx) == 0]
    if empty:
        raise ValueError(f"data: no images of class(es) {empty}; every class needs real images to match")
    classes = classes or [str(c) for c in range(n_classes)]
    device = run_device(None, device, must_agree=False)
    estimator = resolve_estimator(estimator, device=device)
    channels, size = images.shape[1], images.shape[-1]
    grid = size if settings["resolution"] is None else settings["resolution"]
    if grid > size:
        raise ValueError(f"resolution: expected at most the image size {size}, got {grid}")
    if grid == size:  # the full size, however it was asked for: one run key, so either checkpoint resumes the other
        settings["resolution"] = None
    basis = settings["basis"] = basis_for(settings["basis"], channels)
    ipc = images_per_class

    with seeded(step_seed(seed, 0, 0)):  # seeded, without touching the caller's random state
        if settings["init"] == "real":
            picks = torch.cat([idx[torch.randint(len(idx), (ipc,))] for idx in by_class])
            logits = to_basis(torch.logit(F.interpolate(images[picks].float(), size=(grid, grid), mode="area").clamp(1 / 255, 254 / 255)),
                              basis).to(device)
        else:
            logits = (settings["init_scale"] * torch.randn(n_classes * ipc, channels, grid, grid)).to(device)
    logits.requires_grad_(True)
    syn_labels = torch.arange(n_classes).repeat_interleave(ipc)
    optimizer = torch.optim.Adam([logits], lr=settings["lr"], betas=(0.5, 0.99))
    fingerprint = data_fingerprint(images, labels)
    # A constant learning rate: running longer from a checkpoint equals running longer from the start,
    # so outer_steps may grow; a cosine schedule depends on it.
    grows = settings["schedule"] == "constant" and settings["warmup"] == 0
    # "seeds": checkpoints written before the draws followed training.loop.step_seed are refused, not resumed with mixed draws.
    # (a full-resolution RGB run's key has no "resolution" and "basis", as before the options existed: its checkpoints still resume;
    # "near" acts after the last step, so a checkpoint resumes under any)
    run_key = {**{k: v for k, v in settings.items()
                  if (k != "outer_steps" or not grows) and k != "near" and (k, v) not in (("resolution", None), ("basis", "rgb"))},
               "estimator": estimator.name, "data": fingerprint,
               "n_classes": n_classes, "seeds": "step_seed"}
    run = ResumableRun(checkpoint, run_key, total=settings["outer_steps"], total_name="outer_steps", checkpoint_every=checkpoint_every,
                       device=device)
    history: dict[str, list[float]] = {"match": [], "bpd": []}
    skipped = 0
    state = run.resume()
    if state is not None:
        skipped = int(state["skipped"])
        with torch.no_grad():
            logits.copy_(state["logits"].to(device))
        optimizer.load_state_dict(state["optimizer"])
        history = json.loads(state["history"])

    def take_step(step: int) -> str:
        nonlocal skipped
        if settings["schedule"] == "cosine":
            for group in optimizer.param_groups:
                group["lr"] = cosine_decay(settings["lr"], step, settings["outer_steps"])
        match, bpd, ok = _outer_step(
            logits, optimizer, images, by_class, syn_labels, estimator, arch=arch, n_classes=n_classes, ipc=ipc, settings=settings,
            seed=seed, step=step, device=device,
        )
        skipped += settings["match_steps"] - ok
        history["match"].append(round(match, 5))
        history["bpd"].append(round(bpd, 5))
        return f"matching {match:.3f}  bpd {bpd:.2f}"

    def saved() -> dict[str, Any]:
        return {"logits": logits.detach().cpu(), "optimizer": optimizer.state_dict(), "skipped": skipped, "history": json.dumps(history)}

    run.run(take_step, saved, description=f"condensing (lam {settings['lam']:g})", show_progress=show_progress)
    seconds = run.seconds
    if skipped:
        warnings.warn(f"condense: {skipped} image updates were skipped (non-finite loss or gradient)", stacklevel=2)

    with torch.no_grad():
        rounded = round_8bit(synthetic_pixels(logits.detach(), size, basis), False)
        final, bits, near_pass = finish_images(rounded, settings["near"], estimator)
    card = {**settings, "estimator": estimator.name, "n_classes": n_classes, "data": fingerprint, "real_images": len(labels),
            "seconds": round(seconds, 2), "skipped_updates": skipped, "torch_threads": torch.get_num_threads(), "device": str(device),
            **near_pass}
    return CondensedSet(final.cpu(), syn_labels, bits.cpu().float(), classes, card, history)


@torch.no_grad()
def finish_images(images: torch.Tensor, near: int, estimator: BitEstimator) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """:func:`condense`'s last step on its 8-bit images (N, C, H, W): the near-lossless pass of ``near`` levels
    (:func:`~simplebits_audit.estimators.analytic.snap_to_prediction`) kept on the images that ``estimator`` rates
    cheaper after it.

    Returns the images, their bits (N,) and what the pass did, for the set's card: ``near_snapped`` (how many
    images took it) and, when ``near`` > 0, ``near_bits_before`` / ``near_bits_after`` (the mean bits per image
    before and after).
    ``ValueError`` naming ``near`` unless it is a whole number in [0, 510].
    """
    near = _grey_levels(near)
    bits = estimator.bits(images)
    if near == 0:
        return images, bits, {"near_snapped": 0}
    snapped = snap_to_prediction(images, near).to(images.device)
    snapped_bits = estimator.bits(snapped)
    take = snapped_bits < bits
    kept_bits = torch.where(take, snapped_bits, bits)
    return torch.where(take.view(-1, 1, 1, 1), snapped, images), kept_bits, {
        "near_snapped": int(take.sum()), "near_bits_before": round(float(bits.double().mean()), 2),
        "near_bits_after": round(float(kept_bits.double().mean()), 2)}


def near_pass_summary(settings: dict[str, Any]) -> str | None:
    """One line on what a condensed set's near-lossless pass did, from its card (``settings``); None for a set
    made without the pass, or before its card recorded the bits (2026-12-03)."""
    if not settings.get("near") or "near_bits_before" not in settings:
        return None
    before, after = settings["near_bits_before"], settings["near_bits_after"]
    return (f"near-lossless last step (near {settings['near']}): {settings['near_snapped']} image(s) took it, "
            f"{before:.0f} -> {after:.0f} bits per image on average ({after / max(before, 1e-9):.2f}x)")


def _grey_levels(near: Any) -> int:
    """``near`` as an int in [0, 510] (a difference plane's largest residual: more changes nothing): any whole number
    (2, 2.0, a NumPy integer); ``ValueError`` naming it otherwise."""
    whole = not isinstance(near, bool) and (
        isinstance(near, numbers.Integral) or (isinstance(near, numbers.Real) and float(near).is_integer()))
    if not whole or not 0 <= int(near) <= 510:
        raise ValueError(f"near: expected a whole number of grey levels in [0, 510], got {reprlib.repr(near)}")
    return int(near)


def _check_basis(logits: torch.Tensor, basis: str) -> None:
    if basis not in BASES:
        raise ValueError(f"basis: expected one of {BASES}, got {basis!r}")
    if basis == "luma-chroma" and logits.shape[1] != 3:
        raise ValueError(f"basis: 'luma-chroma' needs 3 channels, got logits of shape {tuple(logits.shape)}")


def synthetic_pixels(logits: torch.Tensor, size: int, basis: str) -> torch.Tensor:
    """The synthetic images (N, C, size, size) in [0, 1] of pixel ``logits`` (N, C, r, r) in ``basis`` (:data:`BASES`;
    "luma-chroma": channels (R - G, G, B - G), C = 3), upsampled bilinearly when r < size. ``ValueError`` naming
    ``basis`` for an unknown basis or a channel count it does not fit."""
    _check_basis(logits, basis)
    if basis == "luma-chroma":  # (R - G, G, B - G) logits -> (R, G, B) logits
        green = logits[:, 1:2]
        logits = torch.cat([logits[:, 0:1] + green, green, logits[:, 2:3] + green], 1)
    if logits.shape[-1] != size:
        logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
    return torch.sigmoid(logits)


def basis_for(basis: str, channels: int) -> str:
    """The basis a condensation of ``channels``-channel images runs in: ``basis``, or "rgb" for grey images
    (one plane: nothing to decorrelate, and one run key and set for either)."""
    return basis if channels == 3 else "rgb"


def to_basis(logits: torch.Tensor, basis: str) -> torch.Tensor:
    """RGB pixel logits (N, C, r, r) in ``basis`` (see :func:`synthetic_pixels`, whose change of basis it inverts)."""
    _check_basis(logits, basis)
    if basis != "luma-chroma":
        return logits
    green = logits[:, 1:2]
    return torch.cat([logits[:, 0:1] - green, green, logits[:, 2:3] - green], 1)


def _ramp(step: int, steps: float) -> float:
    """The share of lam charged at outer step ``step`` when it ramps up linearly over ``steps`` steps."""
    return 1.0 if step >= steps else (step + 1) / (steps + 1)


def _outer_step(
    logits: torch.Tensor, optimizer: torch.optim.Optimizer, images: torch.Tensor, by_class: list[torch.Tensor], syn_labels: torch.Tensor,
    estimator: BitEstimator, *, arch: str, n_classes: int, ipc: int, settings: dict[str, Any], seed: int, step: int, device: torch.device,
) -> tuple[float, float, int]:
    """One fresh network, ``match_steps`` image updates: returns the mean matching distance, mean bpd and the updates made."""
    with seeded(step_seed(seed, step, 1)):
        net = make_network(arch, n_classes, images.shape[1], images.shape[-1])
    net = net.to(device).train()
    params = [p for p in net.parameters() if p.requires_grad]
    net_opt = torch.optim.SGD(params, lr=settings["net_lr"], momentum=0.5)
    generator = torch.Generator().manual_seed(step_seed(seed, step, 2))
    syn_labels_d = syn_labels.to(device)
    matches, bpds, ok = [], [], 0
    for m in range(settings["match_steps"]):
        syn = round_8bit(synthetic_pixels(logits, images.shape[-1], settings["basis"]), True)
        match = torch.zeros((), device=device)
        for c in range(n_classes):
            idx = by_class[c][torch.randint(len(by_class[c]), (settings["real_batch"],), generator=generator)]
            real = images[idx].to(device)
            target = torch.full((len(idx),), c, device=device)
            g_real = torch.autograd.grad(F.cross_entropy(net(real), target), params)
            g_real = [g.detach() for g in g_real]
            rows = slice(c * ipc, (c + 1) * ipc)
            g_syn = torch.autograd.grad(F.cross_entropy(net(syn[rows]), syn_labels_d[rows]), params, create_graph=True)
            match = match + matching_distance(g_real, g_syn)
        match = match / n_classes
        lam = settings["lam"] * _ramp(step, settings["warmup"] * settings["outer_steps"])
        bpd = estimator.bpd(syn).mean() if lam > 0 else estimator.bpd(syn.detach()).mean()
        loss = match + lam * bpd
        optimizer.zero_grad(set_to_none=True)
        (grad,) = torch.autograd.grad(loss, [logits])
        if bool(torch.isfinite(loss.detach())) and bool(torch.isfinite(grad).all()):
            logits.grad = grad
            optimizer.step()
            ok += 1
        matches.append(float(match.detach()))
        bpds.append(float(bpd.detach()))
        if m == settings["match_steps"] - 1:
            break
        # The network follows the synthetic set, so the next update matches gradients further along training.
        syn_fixed = round_8bit(synthetic_pixels(logits.detach(), images.shape[-1], settings["basis"]), False)
        for _ in range(settings["inner_steps"]):
            loss_net = F.cross_entropy(net(syn_fixed), syn_labels_d)
            net_opt.zero_grad(set_to_none=True)
            loss_net.backward()
            net_opt.step()
    return sum(matches) / len(matches), sum(bpds) / len(bpds), ok


# --------------------------------------------------------------------------------------------
# evaluation


def random_subset(labels: torch.Tensor, images_per_class: int, n_classes: int, seed: int) -> torch.Tensor:
    """Indices of ``images_per_class`` random images of every class (fewer where a class has fewer), class by class."""
    generator = torch.Generator().manual_seed(step_seed(seed, 0, 5))
    picks = []
    for c in range(n_classes):
        idx = torch.nonzero(labels == c)[:, 0]
        picks.append(idx[torch.randperm(len(idx), generator=generator)[:images_per_class]])
    return torch.cat(picks)


def random_real_set(images: torch.Tensor, labels: torch.Tensor, images_per_class: int, n_classes: int,
                    seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The "random real" row's training set for one seed: :func:`random_subset`'s images (N, C, H, W) rounded to 8 bits, labels (N,)."""
    idx = random_subset(labels, images_per_class, n_classes, seed)
    return round_8bit(images[idx], False), labels[idx]


def evaluate_condensed(
    condensed: CondensedSet,
    test_data: Any,
    *,
    train_data: Any = None,
    without_bits: CondensedSet | None = None,
    arch: str | None = None,
    n_models: int | None = None,
    epochs: int | None = None,
    estimator: BitEstimator | str | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Train ``n_models`` fresh classifiers on each training set and report their test accuracy.

    Parameters
    ----------
    condensed : CondensedSet
        The set to evaluate (row ``"condensed"``).
    test_data : Dataset of (image, label) or (images, labels) pair
        Held-out real images (M, C, H, W) in [0, 1] with labels.
    train_data : optional
        Real training images: adds the row ``"random real"``, a random real subset of the same size
        per class (a different subset for every model).
    without_bits : CondensedSet, optional
        The same condensation with ``lam=0``: adds the row ``"without bits term"``.
    arch : {"convnet", "smallcnn"}, optional
        The classifiers trained (default: the architecture the set was condensed with).
    n_models, epochs : int, optional
        Classifiers per row (seeds ``seed .. seed + n_models - 1``) and passes over each training
        set. Defaults :data:`EVALUATE_DEFAULTS`.
    estimator : optional
        Rates the images of each row (default: the one named in ``condensed.settings``).

    Returns
    -------
    dict
        Row name -> ``accuracy_mean``, ``accuracy_std`` (over models), ``accuracies``, ``images``,
        ``bits_per_image`` and ``bpd`` (estimator, mean over images), ``webp_bits_per_image``,
        ``webp_bpd``, ``jxl_bits_per_image``, ``jxl_bpd`` (lossless WebP / JPEG-XL, mean over images).
    """
    n_models = EVALUATE_DEFAULTS["n_models"] if n_models is None else n_models
    epochs = EVALUATE_DEFAULTS["epochs"] if epochs is None else epochs
    arch = arch or condensed.settings.get("arch", "convnet")
    _check_number("n_models", n_models, integer=True)
    _check_number("epochs", epochs, integer=True)
    if arch not in ARCHS:
        raise ValueError(f"arch: expected one of {sorted(ARCHS)}, got {arch!r}")
    if not isinstance(condensed, CondensedSet):
        raise TypeError(f"condensed: expected a CondensedSet, got {type(condensed).__name__}")
    if without_bits is not None and not isinstance(without_bits, CondensedSet):
        raise TypeError(f"without_bits: expected a CondensedSet, got {type(without_bits).__name__}")
    test_images, test_labels, _ = labelled_tensors(test_data, "test_data")
    n_classes = len(condensed.classes)
    if test_images.shape[1:] != condensed.images.shape[1:]:
        raise ValueError(f"test_data: images of shape {tuple(test_images.shape[1:])}, "
                         f"the condensed ones are {tuple(condensed.images.shape[1:])}")
    if int(test_labels.max()) >= n_classes:
        raise ValueError(f"test_data: labels go up to {int(test_labels.max())}, the condensed set has {n_classes} classes")
    real = None
    if train_data is not None:
        real = labelled_tensors(train_data, "train_data")[:2]
        if real[0].shape[1:] != condensed.images.shape[1:]:
            raise ValueError(f"train_data: images of shape {tuple(real[0].shape[1:])}, "
                             f"the condensed ones are {tuple(condensed.images.shape[1:])}")
    estimator = resolve_estimator(estimator or condensed.settings.get("estimator"), device="cpu")
    ipc = int(condensed.settings.get("images_per_class", max(1, len(condensed) // n_classes)))
    rows: dict[str, tuple[Any, ...]] = {"condensed": (condensed.images, condensed.labels)}
    if without_bits is not None:
        rows["without bits term"] = (without_bits.images, without_bits.labels)
    if real is not None:
        rows["random real"] = real
    dims = math.prod(condensed.images.shape[1:])
    results: dict[str, dict[str, Any]] = {}
    with JobProgress(disable=not show_progress) as progress:
        task = progress.add_task("training evaluation classifiers", total=n_models * len(rows))
        for name, (x, y) in rows.items():
            accs, shown = [], None
            for k in range(n_models):
                xs, ys = random_real_set(x, y, ipc, n_classes, seed + k) if name == "random real" else (x, y)
                shown = xs if shown is None else shown
                net = train_network(xs, ys, n_classes, arch=arch, epochs=epochs, seed=seed + k, device=device)
                accs.append(accuracy(net, test_images, test_labels))
                progress.advance(task)
            with torch.no_grad():
                estimator_at = next(iter([*estimator.parameters(), *estimator.buffers()]), torch.empty(0)).device
                bits = estimator.bits(shown.to(estimator_at)).double().cpu()
            webp, jxl = codec_bits(shown), codec_bits(shown, "jxl")
            t = torch.tensor(accs, dtype=torch.float64)
            results[name] = {
                "accuracy_mean": float(t.mean()), "accuracy_std": float(t.std()) if len(t) > 1 else 0.0, "accuracies": accs,
                "images": len(shown), "bits_per_image": float(bits.mean()), "bpd": float(bits.mean() / dims),
                "webp_bits_per_image": float(webp.mean()), "webp_bpd": float(webp.mean() / dims),
                "jxl_bits_per_image": float(jxl.mean()), "jxl_bpd": float(jxl.mean() / dims),
            }
    return results


__all__ = [
    "CONDENSE_DEFAULTS", "EVALUATE_DEFAULTS", "CondensedSet", "condense", "condense_settings", "evaluate_condensed",
    "near_pass_summary", "finish_images",
    "matching_distance",
    "BASES", "basis_for", "random_real_set", "random_subset", "synthetic_pixels", "to_basis",
]
