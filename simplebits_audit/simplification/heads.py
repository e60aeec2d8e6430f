"""Output heads: what "the same answer" means for a classifier's logits.

A classifier ends either in a softmax over K classes (``head="softmax"``, multi-class: one answer
per image) or in K independent sigmoids (``head="sigmoid"``: one logit per label, binary with
K = 1 or multi-label). The head decides three things every engine needs, and :class:`Decision`
holds them for one batch:

- the probabilities, (B, K): ``softmax(logits)`` or ``sigmoid(logits)`` per label;
- the task term D_task: KL between the predicted distributions (``objective="kl"``; per-label
  Bernoulli KL summed over labels for a sigmoid head) or cross-entropy (``"ce"``: to the target
  class, or per-label binary cross-entropy towards each kept label's original side);
- the keep rule. Softmax: the target stays the top class (or keeps a share of its probability).
  Sigmoid: each kept label stays on the same side of ``threshold``; the kept labels are the
  ``target`` label when one is given, otherwise every label the model switched on, or, when it
  switched none on, every label (they all stay off: the decision "nothing found" is kept).

A softmax over one logit is always 1, so "keep" could never fail: a (B, 1) output under
``head="softmax"`` is refused (:func:`check_outputs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._helpers import DECLARED_HEAD, module_of

HEADS = ("softmax", "sigmoid")
#: ``"top1"`` (keep the decision) or a fraction in (0, 1] of the target's probability to keep.
Keep = str | float
#: With ``keep="top1"`` and a softmax head, a target that was not the original's top class must keep this share of its probability.
NON_TOP_TARGET_FRACTION = 0.9


def label_gap(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Log-probability (B, K) of ``target`` (B,) minus that of the strongest other class, (B,)."""
    return log_probs.gather(1, target[:, None])[:, 0] - log_probs.scatter(1, target[:, None], -math.inf).amax(1)


def check_head(head: str, threshold: float = 0.5) -> None:
    """``ValueError`` naming ``head`` or ``threshold`` unless they are valid."""
    if head not in HEADS:
        raise ValueError(f"head: expected one of {HEADS}, got {head!r}")
    if not (isinstance(threshold, (int, float)) and 0 < float(threshold) < 1):
        raise ValueError(f"threshold: expected a probability in (0, 1), got {threshold!r}")


def check_keep(keep: Keep) -> None:
    """``ValueError`` naming ``keep`` unless it is ``"top1"`` or a fraction in (0, 1]."""
    if isinstance(keep, str):
        if keep != "top1":
            raise ValueError(f"keep: expected 'top1' or a fraction in (0, 1], got {keep!r}")
    elif not (isinstance(keep, (int, float)) and 0 < float(keep) <= 1):
        raise ValueError(f"keep: expected 'top1' or a fraction in (0, 1], got {keep!r}")


def check_outputs(n_outputs: int, head: str, name: str = "forward_func", model: object = None) -> None:
    """Refuse a single-logit model under the softmax head (its softmax is always 1), and a ``model``
    that declares another head (``model.simplebits_head``, or its bound method's module's)."""
    if head == "softmax" and n_outputs == 1:
        raise ValueError(
            f"{name}: the model returns one logit per image, and a softmax over one logit is always 1; "
            "a single-logit (sigmoid) classifier needs head='sigmoid' (--head sigmoid)"
        )
    declared = getattr(module_of(model), DECLARED_HEAD, None)
    if declared is not None and declared != head:
        what = "one sigmoid per label" if declared == "sigmoid" else "a softmax over classes"
        raise ValueError(f"head: the model was trained with head={declared!r} ({what}), got head={head!r}; "
                         f"pass head={declared!r} (--head {declared})")


def probabilities(logits: torch.Tensor, head: str = "softmax") -> torch.Tensor:
    """Probabilities (B, K) of logits (B, K) under ``head``, in float32."""
    logits = logits.float()
    return torch.sigmoid(logits) if head == "sigmoid" else F.softmax(logits, 1)


def _bernoulli_kl(p: torch.Tensor, log_q: torch.Tensor, log_1mq: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(p) || Bernoulli(q)) per element, with q given by its log and log(1 - q)."""
    log_p, log_1mp = torch.log(p.clamp_min(1e-30)), torch.log((1 - p).clamp_min(1e-30))
    return p * (log_p - log_q) + (1 - p) * (log_1mp - log_1mq)


@dataclass
class Decision:
    """The original answer of a batch and the rules that say whether a new answer keeps it.

    Build it with :meth:`of`. ``target`` (B,) is the class (softmax) or label (sigmoid) reported
    per image; ``labels`` (B, K) bool, sigmoid only, marks the labels whose side must be kept;
    ``on_before`` (B, K) bool, sigmoid only, which labels were on.
    """

    head: str
    threshold: float
    keep: Keep
    logits_before: torch.Tensor
    probs_before: torch.Tensor
    target: torch.Tensor
    labels: torch.Tensor | None = None
    on_before: torch.Tensor | None = None

    @classmethod
    def of(cls, logits_before: torch.Tensor, target: torch.Tensor | None, *, head: str = "softmax", threshold: float = 0.5,
           keep: Keep = "top1") -> Decision:
        """The decision of ``logits_before`` (B, K); ``target`` (B,) given by the caller, or None (the model's own answer)."""
        logits_before = logits_before.float()
        probs = probabilities(logits_before, head)
        if head == "softmax":
            return cls(head, threshold, keep, logits_before, probs, logits_before.argmax(1) if target is None else target)
        on = probs >= threshold
        if target is not None:
            labels = F.one_hot(target, probs.shape[1]).bool()
        else:
            # Every switched-on label stays on; an image with none on keeps all of them off.
            labels = torch.where(on.any(1, keepdim=True), on, torch.ones_like(on))
            # Report the most confident kept label.
            target = torch.where(labels, logits_before, torch.full_like(logits_before, -math.inf)).argmax(1)
        return cls(head, threshold, keep, logits_before, probs, target, labels, on)

    def rows(self, index: torch.Tensor) -> Decision:
        """The decision of a subset of the batch (``index`` a LongTensor or bool mask)."""
        pick = (lambda t: None if t is None else t[index])  # noqa: E731
        return Decision(self.head, self.threshold, self.keep, self.logits_before[index], self.probs_before[index], self.target[index],
                        pick(self.labels), pick(self.on_before))

    @property
    def prob_before(self) -> torch.Tensor:
        """The target's original probability, (B,)."""
        return self.probs_before.gather(1, self.target[:, None])[:, 0]

    def kept(self, probs: torch.Tensor, keep: Keep | None = None) -> torch.Tensor:
        """Whether each image's probabilities ``probs`` (B, K) keep the decision: bool (B,).

        ``keep`` overrides the decision's rule (the mask engine gates its bits term on ``"top1"``).
        """
        keep = self.keep if keep is None else keep
        if self.head == "sigmoid":
            on_now = probs >= self.threshold
            ok = on_now == self.on_before
            if keep != "top1":
                side_before = torch.where(self.on_before, self.probs_before, 1 - self.probs_before)
                side_now = torch.where(self.on_before, probs, 1 - probs)
                ok = ok & (side_now >= float(keep) * side_before)
            return (ok | ~self.labels).all(1)
        prob_before = self.prob_before
        target_prob = probs.gather(1, self.target[:, None])[:, 0]
        if keep == "top1":
            # A class the model did not predict cannot "stay top-1": keep most of its probability instead.
            relative = target_prob >= NON_TOP_TARGET_FRACTION * prob_before
            return torch.where(self.probs_before.argmax(1) == self.target, probs.argmax(1) == self.target, relative)
        return target_prob >= float(keep) * prob_before

    def task_loss(self, logits: torch.Tensor, objective: str, temperature: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
        """D_task per image (B,) under a softened classifier (logits divided by a random temperature).

        The temperature is drawn uniformly from ``temperature`` (the paper's softening), so
        saturated outputs still give gradients.
        """
        t_lo, t_hi = temperature
        temp = t_lo + (t_hi - t_lo) * float(torch.rand((), generator=generator))
        logits = logits.float() / temp
        before = self.logits_before / temp
        if self.head == "sigmoid":
            log_q, log_1mq = F.logsigmoid(logits), F.logsigmoid(-logits)
            if objective == "kl":
                return _bernoulli_kl(torch.sigmoid(before), log_q, log_1mq).sum(1)
            bce = -torch.where(self.on_before, log_q, log_1mq)
            return (bce * self.labels).sum(1)
        log_q = F.log_softmax(logits, 1)
        if objective == "kl":
            log_p = F.log_softmax(before, 1)
            return (log_p.exp() * (log_p - log_q)).sum(1)
        return -log_q.gather(1, self.target[:, None])[:, 0]

    def margin(self, logits: torch.Tensor) -> torch.Tensor:
        """By how much each image's answer holds, in log-odds (B,); negative once the decision is lost.

        Softmax: log-probability of the target minus that of the strongest other class. Sigmoid:
        the smallest signed distance of a kept label's logit from the threshold's logit.
        """
        logits = logits.float()
        if self.head == "sigmoid":
            signed = (logits - math.log(self.threshold / (1 - self.threshold))) * torch.where(self.on_before, 1.0, -1.0)
            return torch.where(self.labels, signed, torch.full_like(signed, math.inf)).amin(1)
        return label_gap(F.log_softmax(logits, 1), self.target)

    def kl(self, probs_after: torch.Tensor) -> torch.Tensor:
        """KL(before || after) per image (B,): of the distributions (softmax) or summed per-label Bernoulli KL (sigmoid)."""
        p = self.probs_before
        if self.head == "sigmoid":
            q = probs_after.clamp(1e-30, 1 - 1e-7)
            return _bernoulli_kl(p, torch.log(q), torch.log1p(-q)).sum(1)
        return (p * (torch.log(p.clamp_min(1e-30)) - torch.log(probs_after.clamp_min(1e-30)))).sum(1)

    def predictions(self, probs: torch.Tensor) -> torch.Tensor:
        """The predicted class (B,) for softmax; for sigmoid the most probable label (see ``labels_on``)."""
        return probs.argmax(1)


# Ground-truth labels, for the training settings (a classifier learns them; nothing is kept from an earlier answer).


def head_of_labels(labels: torch.Tensor, n_outputs: int) -> str:
    """The head a classifier with ``n_outputs`` logits learns ``labels`` under.

    Label rows (N, K) of 0/1 (multi-label, K = ``n_outputs``) or one logit with 0/1 labels (N,)
    (binary): ``"sigmoid"``. Class indices (N,) for K >= 2 logits: ``"softmax"``.
    """
    return "sigmoid" if labels.dim() == 2 or n_outputs == 1 else "softmax"


def _label_rows(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return labels.reshape(logits.shape).to(logits.dtype)


def label_loss(logits: torch.Tensor, labels: torch.Tensor, head: str) -> torch.Tensor:
    """Negative log-likelihood (B,) of ``labels`` under ``logits`` (B, K), in nats, float32.

    Softmax: cross-entropy to the class. Sigmoid: binary cross-entropy summed over the labels (the
    likelihood of the image's whole label row, on the scale of a softmax's cross-entropy).
    """
    logits = logits.float()
    if head == "sigmoid":
        return F.binary_cross_entropy_with_logits(logits, _label_rows(logits, labels), reduction="none").sum(1)
    return F.cross_entropy(logits, labels, reduction="none")


def label_margin(logits: torch.Tensor, labels: torch.Tensor, head: str) -> torch.Tensor:
    """By how much each image (B,) is answered correctly, in log-odds (negative: answered wrongly).

    Softmax: :func:`label_gap`. Sigmoid: the weakest label's log p(its label) - log p(the other
    side), which is its logit signed by the label: ``min_k (2 y_k - 1) z_k``.
    """
    logits = logits.float()
    if head == "sigmoid":
        return ((2 * _label_rows(logits, labels) - 1) * logits).amin(1)
    return label_gap(F.log_softmax(logits, 1), labels)


def label_accuracy(logits: torch.Tensor, labels: torch.Tensor, head: str) -> torch.Tensor:
    """The share of each image's labels answered correctly (B,) in [0, 1], float32.

    Softmax: 1 or 0 (the top class is the label). Sigmoid: the share of labels on the right side of
    probability 0.5; its mean over images is the mean per-label accuracy.
    """
    if head == "sigmoid":
        return ((logits > 0).float() == _label_rows(logits, labels).float()).float().mean(1)
    return (logits.argmax(1) == labels).float()
