"""What a model answered, read under its output head: the audit's predictions and the records' per-label fields.

A softmax model (``head="softmax"``) answers one class per image: the most probable one, with
its softmax probability as the confidence. A sigmoid model (``head="sigmoid"``, one logit per
label; :mod:`simplebits_audit.simplification.heads`) answers one yes/no per label: label ``k`` is
*on* when its probability ``sigmoid(logit_k)`` is at least ``threshold``. For the jobs:

- **Binary** (one logit, K = 1): the answer is the decision, class 1 when ``p >= threshold``
  and class 0 otherwise, with confidence ``p`` or ``1 - p``, the probability of the decided
  side. Labels and class names describe those two decisions (e.g. ``["negative", "positive"]``;
  one name ``[NAME]`` reads as ``["not NAME", NAME]``, none as ``["0", "1"]``), so accuracy,
  the confusion matrix and "misclassified" compare the decision with the label.
- **Multi-label** (K > 1): the prediction is the most probable label (the one the simplification
  reports when no target is given) and the confidence its probability; the records list every
  label's probability before and after, and which labels are on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..results import class_name
from ..simplification import SimplificationResult
from ..simplification.heads import probabilities


def n_decisions(n_outputs: int, head: str) -> int:
    """How many answers labels and predictions take: ``n_outputs``, or 2 for a single-logit sigmoid model."""
    return 2 if head == "sigmoid" and n_outputs == 1 else n_outputs


def decide(logits: torch.Tensor, head: str = "softmax", threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction LongTensor (B,), confidence (B,)) of logits (B, K) under ``head`` (see the module docstring)."""
    logits = logits.float()
    if head == "softmax":
        confidence, pred = torch.softmax(logits, 1).max(1)
        return pred, confidence
    probs = probabilities(logits, head)
    if probs.shape[1] == 1:
        p = probs[:, 0]
        pred = (p >= threshold).long()
        return pred, torch.where(pred == 1, p, 1 - p)
    confidence, pred = probs.max(1)
    return pred, confidence


def decision_names(class_names: Sequence[str] | None) -> list[str]:
    """Names of a single-logit model's two decisions (below, at or above the threshold)."""
    if class_names is not None and len(class_names) == 2:
        return [str(n) for n in class_names]
    if class_names is not None and len(class_names) == 1:
        return [f"not {class_names[0]}", str(class_names[0])]
    return ["0", "1"]


def label_names(class_names: Sequence[str] | None, n_outputs: int) -> list[str]:
    """One name per logit: the class names, or for a single-logit model the name of its "on" decision."""
    if n_outputs == 1:
        return [decision_names(class_names)[1]]
    return [class_name(k, class_names) for k in range(n_outputs)]


def sigmoid_fields(
    result: SimplificationResult, i: int, class_names: Sequence[str] | None, threshold: float, top_k: int = 5, label: int | None = None,
) -> dict[str, Any]:
    """Record fields of image ``i`` of a sigmoid-head simplification: every label before and after, and the decision.

    ``labels`` lists per label its index, name, probability before and after, and whether it was
    on (probability >= ``threshold``) before and after; ``on_before`` / ``on_after`` name the labels
    that were on. A multi-label record also names what was explained: ``kept_labels``, the labels
    whose side the simplified image had to keep (the target, or with no target every label that was
    on), and ``explained``, the same as text (``"digit (on), stripes (on)"``); its ``target`` is
    then only the label whose probability ``prob_target_*`` and the path follow. A single-logit
    model's record also reads as a two-class one: ``pred_*``,
    ``target*`` (the decision explained), ``confidence``, ``prob_target_*``, ``top_*``, the
    path's target probabilities and the name of its ``label`` (0 or 1) are those of the decided
    class (see the module docstring).
    """
    before = result.probs_before[i].detach().float().cpu()
    after = result.probs_after[i].detach().float().cpu()
    names = label_names(class_names, len(before))
    labels = [
        {"index": k, "name": names[k], "prob_before": round(float(p), 6), "prob_after": round(float(q), 6),
         "on_before": bool(p >= threshold), "on_after": bool(q >= threshold)}
        for k, (p, q) in enumerate(zip(before.tolist(), after.tolist()))
    ]
    fields: dict[str, Any] = {
        "head": "sigmoid",
        "threshold": float(threshold),
        "labels": labels,
        "on_before": [d["name"] for d in labels if d["on_before"]],
        "on_after": [d["name"] for d in labels if d["on_after"]],
    }
    if len(before) > 1 and result.kept_labels is not None:
        # what was explained: several labels when no target was given, not the one ``target`` names
        kept = result.kept_labels[i].tolist()
        fields["kept_labels"] = [d["name"] for d, k in zip(labels, kept) if k]
        fields["explained"] = ", ".join(f"{d['name']} ({'on' if d['on_before'] else 'off'})" for d, k in zip(labels, kept) if k)
    if len(before) == 1:
        decisions = decision_names(class_names)
        p, q = float(before[0]), float(after[0])
        d_before, d_after = int(p >= threshold), int(q >= threshold)
        side = (lambda prob, d: prob if d == 1 else 1 - prob)  # noqa: E731 -- the probability of decision d
        top = (lambda prob: sorted(([c, decisions[c], round(side(prob, c), 6)] for c in (0, 1)), key=lambda r: -r[2]))  # noqa: E731
        fields.update({
            "target": d_before, "target_name": decisions[d_before],
            "pred_before": d_before, "pred_before_name": decisions[d_before],
            "pred_after": d_after, "pred_after_name": decisions[d_after],
            "prob_target_before": side(p, d_before), "prob_target_after": side(q, d_before),
            "confidence": side(p, d_before),
            "top_before": top(p)[:top_k], "top_after": top(q)[:top_k],
            "path_target_prob": [side(float(v), d_before) for v in result.path_target_prob[:, i]],
        })
        if label is not None:
            fields["label_name"] = decisions[int(label)]
    return fields


__all__ = ["decide", "decision_names", "label_names", "n_decisions", "sigmoid_fields"]
