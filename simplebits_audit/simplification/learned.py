"""The learned simplifier: one forward pass per image, trained once against a frozen classifier.

The per-image mask engine (:mod:`~simplebits_audit.simplification.mask`) optimises a coarse mask
between each image and its flat mean colour. :class:`Simplifier` is a small convolutional network
that predicts that mask directly from the image, so simplifying costs one forward pass:

    x' = m * x + (1 - m) * r,    m = upsample(sigmoid(net(x))),  r = the image's mean colour

:func:`~simplebits_audit.training.train_simplifier` fits it over a dataset with the mask engine's objective, per image

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

import copy
import dataclasses
import hashlib
import json
import math
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._helpers import ForwardFunc, module_of
from .._io import load_saved, save_torch
from .common import PathRecorder, RunContext, round_8bit
from .config import SimplifyConfig
from .heads import probabilities
from .mask import REFERENCES, blend, mask_engine, reference_image
from .result import SimplificationResult

#: The formats :meth:`Simplifier.load` reads. :meth:`Simplifier.save` writes 1 for a simplifier without an
#: order head (older versions read it) and 2 with one, so that a version without order heads refuses the
#: file by its format rather than failing on the unknown ``order`` option.
FORMAT, FORMATS = 2, (1, 2)


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
    reference : {"mean", "blur", "grey", "mosaic", "auto"}
        The simple image the mask blends towards (:func:`~simplebits_audit.simplification.mask.reference_image`;
        ``"auto"``: the mosaic on images of at least 128 px a side, else the mean).
    mask_init : float
        The mask's value everywhere before training, in (0, 1). Near 1 (the default, 0.9) training
        starts close to the identity, as the paper's simplifier does, and removes bits from there;
        from 0.5 it fell into the flat reference on ``shortcut`` and ``stripes`` (README).
    order : bool
        Add the order head (:meth:`order_logits`), which ranks the cells the mask does not keep in
        the map (trained after the mask by :func:`~simplebits_audit.training.train_simplifier`'s
        ``order_steps``). Off, the map below the kept pixels is the mask's own values, most of them 0.
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
        What it was trained on and how well it held out (filled by :func:`~simplebits_audit.training.train_simplifier`).
    """

    def __init__(
        self,
        in_channels: int = 3,
        mask_size: int = 16,
        width: int = 16,
        reference: str = "mean",
        mask_init: float = 0.9,
        binary: bool = False,
        order: bool = False,
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
        self.order_head: nn.Conv2d | None = None
        if order:
            self.add_order_head()
        self.card: dict[str, Any] = {}
        #: A binary mask's sampling temperature in training mode (lowered towards 0 the samples become the threshold).
        self.temperature = 1.0
        # Caches of as_simplifier (not state): classifiers already checked, copies on other devices.
        self._checked: weakref.WeakSet[nn.Module] = weakref.WeakSet()
        self._copies: dict[str, tuple[Simplifier, tuple]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # as_simplifier's caches are not state, and weak references do not pickle (torch.save of the module, spawn)
        return {**super().__getstate__(), "_checked": None, "_copies": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._checked = weakref.WeakSet()

    def add_order_head(self) -> None:
        """Add the order head (zero-initialised: every cell ranks level until it is trained); no-op if present.

        Zeros, not a random draw: adding it leaves the global random stream, and so a training
        run's draws, as they were.
        """
        if self.order_head is None:
            width = self.head.in_channels
            with torch.random.fork_rng(devices=[]):  # Conv2d draws its own init before the zeros replace it
                self.order_head = nn.Conv2d(width, 1, 1).to(self.head.weight.device)
            nn.init.zeros_(self.order_head.weight)
            nn.init.zeros_(self.order_head.bias)
            self.config["order"] = True

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The trunk's features (B, 2 * width, H / 2, W / 2) that the heads read."""
        mean = pixels.mean((2, 3), keepdim=True)
        feats = self.local(torch.cat([pixels, pixels - mean], 1))
        return F.relu(feats + self.context(feats.mean((2, 3)))[..., None, None])

    def _to_grid(self, logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        grid = (min(self.config["mask_size"], size[0]), min(self.config["mask_size"], size[1]))
        return F.adaptive_avg_pool2d(logits, grid) if logits.shape[-2:] != grid else logits

    def mask_logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Mask logits (B, 1, h, w) on the coarse grid (``mask_size``, at most the image size)."""
        return self._to_grid(self.head(self.features(pixels)), pixels.shape[-2:])

    def heads(self, feats: torch.Tensor, size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The mask logits and the order head's scores (None without it), (B, 1, h, w) each, from :meth:`features` of images of ``size``."""
        mask = self._to_grid(self.head(feats), size)
        return mask, None if self.order_head is None else self._to_grid(self.order_head(feats), size)

    def mask_and_order_logits(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`mask_logits` and :meth:`order_logits` (None without the order head) from one trunk pass."""
        return self.heads(self.features(pixels), pixels.shape[-2:])

    def order_logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """The order head's scores (B, 1, h, w) on the mask's grid: higher = removing the cell lowers the answer more.

        They rank only the cells the mask does not keep (the map's order below the kept pixels,
        :func:`removed_order`); the returned image never depends on them. Raises ValueError
        without the order head (``order=True`` or :meth:`add_order_head`).
        """
        if self.order_head is None:
            raise ValueError("order: this simplifier has no order head (train it with train_simplifier(order_steps=...))")
        return self.heads(self.features(pixels), pixels.shape[-2:])[1]

    def mask(self, pixels: torch.Tensor) -> torch.Tensor:
        """The mask (B, 1, H, W) in [0, 1]: 1 keeps the original's pixel, 0 takes the reference's."""
        return self.grid_to_mask(self.mask_logits(pixels), pixels.shape[-2:])

    def grid_to_mask(self, logits: torch.Tensor, size: Sequence[int], offset: float | torch.Tensor = 0.0, *,
                     evaluation: bool | None = None) -> torch.Tensor:
        """Mask logits (B, 1, h, w) (shifted by ``offset``: a number or one per image, (B, 1, 1, 1)) -> the mask (B, 1, H, W),
        binarised if the simplifier is ``binary``: cells drawn in training, above 0.5 in evaluation
        (``evaluation``; default: ``not self.training``)."""
        if not self.config.get("binary"):
            return grid_mask(logits, size, offset)
        evaluation = not self.training if evaluation is None else evaluation
        soft = torch.sigmoid((logits + offset) / (1.0 if evaluation else self.temperature))
        # Training: each cell kept with probability ``soft`` (a deterministic threshold flipped every cell of
        # a uniform image such as stripes at once, and the classifier never saw a partial one); evaluation: soft > 0.5.
        binary = (soft > 0.5).to(soft.dtype) if evaluation else torch.bernoulli(soft.detach())
        hard = soft + (binary - soft).detach()  # straight-through
        return (
            hard if tuple(hard.shape[-2:]) == tuple(size) else F.interpolate(hard, size=tuple(size), mode="bilinear", align_corners=False)
        )

    def reference(self, pixels: torch.Tensor) -> torch.Tensor:
        """The simple end (B, C, H, W), 8-bit: each image's mean colour by default."""
        return reference_image(pixels, self.config["reference"])

    def forward(self, pixels: torch.Tensor, with_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Simplified pixel images (B, C, H, W), rounded to 8 bits (straight-through: differentiable).

        ``pixels`` (B, C, H, W) in [0, 1], C = ``in_channels``. With ``with_logits`` also the mask
        logits (B, 1, h, w) (:meth:`simplify_with_logits`, through ``forward`` so that a
        DistributedDataParallel wrapper sees the call).
        """
        simplified, logits = self.simplify_with_logits(pixels)
        return (simplified, logits) if with_logits else simplified

    def simplify_with_logits(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward`'s simplified images and the mask logits (B, 1, h, w) they came from (one pass)."""
        if pixels.dim() != 4 or pixels.shape[1] != self.config["in_channels"]:
            raise ValueError(f"pixels: expected (B, {self.config['in_channels']}, H, W), got {tuple(pixels.shape)}")
        x = round_8bit(pixels, False)
        logits = self.mask_logits(x)
        return self.from_logits(x, logits), logits

    def from_logits(self, x: torch.Tensor, logits: torch.Tensor, offset: float | torch.Tensor = 0.0) -> torch.Tensor:
        """8-bit images ``x`` (B, C, H, W) simplified by their mask logits (B, 1, h, w), shifted by ``offset`` (:meth:`grid_to_mask`).

        Rounded straight-through (differentiable), unlike :func:`~simplebits_audit.simplification.mask.blend`.
        """
        m = self.grid_to_mask(logits, x.shape[-2:], offset)
        return round_8bit(m * x + (1 - m) * self.reference(x), True)

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write weights, configuration and card atomically (loads with ``weights_only=True``)."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        fmt = FORMAT if self.order_head is not None else 1
        return save_torch({"format": fmt, "config": dict(self.config), "state_dict": state, "card": json.dumps(self.card)}, path)

    @classmethod
    def load(cls, path: str | Path, *, forward_func: ForwardFunc | None = None, device: str | torch.device | None = None,
             name: str = "path") -> Simplifier:
        """Read a simplifier written by :meth:`save` (weights only: no pickled code runs); errors name ``name``.

        With ``forward_func`` (the classifier it will explain), warn if it is not the classifier it
        was trained against (the card's fingerprint). The simplifier is returned in eval mode with
        frozen parameters.
        """
        ckpt = load_saved(
            path, what="a simplifier written by Simplifier.save", missing="no simplifier file", version=FORMATS, key="state_dict",
            name=name,
        )
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
    module = module_of(forward_func)
    if module is None:
        return None
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def grid_mask(logits: torch.Tensor, size: Sequence[int], offset: float | torch.Tensor = 0.0) -> torch.Tensor:
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
    original (:data:`MASK_OFFSETS`) that keeps it (tried on those images only, all shifts in one
    classifier call where the batch holds them, so an image costs about two classifier passes);
    the simplest kept of these is returned. With refinement the mask
    engine starts from the learned mask's logits, with ``config`` (resolved) for its options and
    the simplifier's ``mask_size``, ``mask_init`` and ``reference``. The result's mask is always
    the returned image's (all ones where the original itself comes back).
    """
    classifier, estimator, pixels, decision = run.classifier, run.estimator, run.pixels, run.decision
    original_8bit = round_8bit(pixels, False)
    with torch.no_grad():
        grid, order = simplifier.mask_and_order_logits(original_8bit)
    if config.refine_steps > 0:
        refine = dataclasses.replace(
            config, steps=config.refine_steps, **{k: simplifier.config[k] for k in ("mask_size", "mask_init", "reference")},
        )
        return mask_engine(run, refine, init_logits=grid)
    with torch.no_grad():
        probs_before = decision.probs_before
        ref = simplifier.reference(original_8bit)

        def candidate(rows: torch.Tensor, offset: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            m = simplifier.grid_to_mask(grid[rows], pixels.shape[-2:], offset)
            image = blend(original_8bit[rows], ref[rows], m)
            probs = probabilities(classifier.logits(image), decision.head)
            return image, probs, decision.rows(rows).kept(probs), m

        every = torch.arange(len(pixels), device=pixels.device)
        learned_image, learned_probs, learned_kept, learned_mask = candidate(every, 0.0)
        # One estimator call for both (on a few CPU threads two small calls parallelise worse than one).
        original_map, learned_map = estimator.bits_map(torch.cat([original_8bit, learned_image])).split(len(pixels))
        original_map = original_map.clone()  # the result keeps it: its own storage, not half of both
        ones = torch.ones_like(learned_mask)
        learned = (learned_image, learned_probs, learned_mask, learned_map)
        fallback, fallback_probs, fallback_mask, fallback_map = learned
        if not bool(learned_kept.all()):  # copies only when some image needs a fallback (the usual batch needs none)
            fallback, fallback_probs, fallback_mask, fallback_map = (t.clone() for t in learned)
            pending = every[~learned_kept]
            # The shifts of the pending rows go to the classifier together, as many at once as the batch holds: one
            # call per shift on a few rows cost about a fifth of the time on digits-on-photos (18 % of its images).
            per_call = max(1, len(pixels) // len(pending))
            for start in range(0, len(MASK_OFFSETS), per_call):
                if len(pending) == 0:
                    break
                shifts = MASK_OFFSETS[start : start + per_call]
                offset = torch.tensor(shifts, device=pixels.device).repeat_interleave(len(pending)).view(-1, 1, 1, 1)
                image, probs, ok, m = candidate(pending.repeat(len(shifts)), offset)
                ok = ok.view(len(shifts), len(pending))
                found = ok.any(0)
                # per row, the smallest shift that keeps (argmax returns the first of equal maxima)
                pick = (ok.float().argmax(0) * len(pending) + torch.arange(len(pending), device=pixels.device))[found]
                fallback[pending[found]], fallback_probs[pending[found]], fallback_mask[pending[found]] = image[pick], probs[pick], m[pick]
                pending = pending[~found]
            # Nothing kept: the fallback is the original itself (already rated), and so is its mask (all ones).
            fallback[pending], fallback_probs[pending], fallback_mask[pending] = original_8bit[pending], probs_before[pending], 1.0
            fallback_map[pending] = original_map[pending]
            shifted = every[~learned_kept & ~torch.isin(every, pending)]  # rows whose fallback is a shifted mask
            if len(shifted):
                fallback_map[shifted] = estimator.bits_map(fallback[shifted])
        lam = float(simplifier.card.get("lam", 1.0))
        path = PathRecorder(original_8bit, original_map, probs_before, mask=ones, label="original")
        path.add(
            learned_image, learned_map.flatten(1).sum(1), learned_probs, lam, mask=learned_mask, label="learned mask", bits_map=learned_map
        )
        path.add(fallback, fallback_map.flatten(1).sum(1), fallback_probs, lam, mask=fallback_mask, label="learned mask shifted until kept",
                 bits_map=fallback_map)
    result = path.result(run, active=torch.ones(len(pixels), dtype=torch.bool, device=pixels.device), steps=0)
    if order is not None:
        result.removed_order = removed_order(order, pixels.shape[-2:])
    return result


def removed_order(order_logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The order head's scores (B, 1, h, w) -> the map's order (B, 1, H, W) in [0, 1] per image, upsampled bilinearly.

    Scaled to [0, 1] per image (not a sigmoid, which would tie the far ends again); an image whose
    scores are all equal (an untrained head) gets 0.5 everywhere: no order.
    """
    flat = order_logits.flatten(1)
    lo, hi = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
    span = hi - lo
    scaled = torch.where(span > 0, (order_logits - lo) / span.clamp_min(torch.finfo(span.dtype).tiny), torch.full_like(order_logits, 0.5))
    return scaled if tuple(scaled.shape[-2:]) == tuple(size) else F.interpolate(scaled, size=tuple(size), mode="bilinear",
                                                                                  align_corners=False)


def load_simplifier(
    simplifier: Simplifier | str | Path, forward_func: ForwardFunc | None = None, device: str | torch.device | None = None,
) -> Simplifier:
    """``simplifier`` as given, or read from its file (weights only, checked against ``forward_func``)."""
    if isinstance(simplifier, Simplifier):
        return simplifier
    if not isinstance(simplifier, (str, Path)):
        raise TypeError(f"simplifier: expected a Simplifier or the path of one, got {type(simplifier).__name__}")
    return Simplifier.load(simplifier, forward_func=forward_func, device=device, name="simplifier")


def as_simplifier(simplifier: Simplifier | str | Path, forward_func: ForwardFunc, channels: int, device: torch.device) -> Simplifier:
    """``simplifier`` (a :class:`Simplifier` or its file) ready for ``channels``-channel images on ``device``.

    The classifier check (a fingerprint of its weights) runs once per classifier, and a copy on
    another device is made once: jobs call this for every batch.
    """
    simplifier = load_simplifier(simplifier, device=device)
    if simplifier.config["in_channels"] != channels:
        raise ValueError(f"simplifier: made for {simplifier.config['in_channels']}-channel images, the inputs have {channels}")
    # Keyed by the classifier's module, held weakly: an id could be reused by another model once the first is freed,
    # which then went unchecked. A plain function has no weights to check.
    module = module_of(forward_func)
    if module is not None and module not in simplifier._checked:
        simplifier.check_classifier(forward_func)
        simplifier._checked.add(module)
    if next(simplifier.parameters()).device != device:
        # A copy on the inputs' device: the user's module stays where it is. Remade when the module has changed since
        # (a head added, the configuration, weights trained or loaded in place: in-place writes move a tensor's version
        # counter; writes through ``.data`` and to inference tensors do not, and go unnoticed).
        stamp = (json.dumps(simplifier.config, sort_keys=True), tuple(
            (name, t.data_ptr(), None if t.is_inference() else t._version)
            for name, t in (*simplifier.named_parameters(), *simplifier.named_buffers())
        ))
        twin, made_from = simplifier._copies.get(str(device), (None, None))
        if twin is None or made_from != stamp:
            # a deep copy, not a new network: the same class, and no draw from the global random stream
            twin = copy.deepcopy(simplifier).to(device).eval().requires_grad_(False)
            simplifier._copies[str(device)] = (twin, stamp)
        twin.card = simplifier.card
        simplifier = twin
    return simplifier


__all__ = ["MASK_OFFSETS", "Simplifier", "as_simplifier", "learned_engine", "load_simplifier", "model_fingerprint", "removed_order"]
