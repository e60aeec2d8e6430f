"""The one explanation pipeline: a batch of images -> explainers -> maps -> records.

``explain``, ``audit`` and ``compare`` differ only in where their images come from and where
their records go; each batch goes through :func:`explain_batch` (every explainer on the batch, the
primary one first) and, for the jobs that write per-image records, :func:`write_batch` (records
from the primary explainer's simplification, PNGs, the path's snapshots and arrays through
:mod:`simplebits_audit.results`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..explainers import Context, Explanation, explain
from ..results import image_folder, path_order, save_artifacts, simplification_records
from ..simplification import SimplificationResult
from .answers import sigmoid_fields

#: the key of the bit-reduction map among a batch's maps
BITS_REMOVED = "bits_removed"


@dataclass
class BatchExplanation:
    """Every explainer's answer for one batch, in the order run (the primary explainer first).

    Attributes
    ----------
    explanations : dict str -> Explanation
    target : LongTensor (B,)
        The class explained per image (the same for every explainer).
    estimator : BitEstimator, str or None
        The context's estimator (rates a factorised run's information profile in :func:`write_batch`).
    """

    explanations: dict[str, Explanation]
    target: torch.Tensor | None
    estimator: Any = None

    @property
    def primary(self) -> Explanation:
        return next(iter(self.explanations.values()))

    @property
    def result(self) -> SimplificationResult | None:
        """The primary explainer's simplification (None if it does not simplify)."""
        return self.primary.result

    def maps(self) -> dict[str, torch.Tensor]:
        """The maps (B, 1, H, W) a job shows: the primary's, the bits removed (when it simplified), then the others'."""
        maps = {self.primary.name: self.primary.map}
        if self.result is not None:
            maps[BITS_REMOVED] = self.result.bit_reduction_map
        maps.update({name: e.map for name, e in self.explanations.items() if name != self.primary.name})
        return maps

    def seconds(self) -> dict[str, float]:
        """Wall time per explainer for the whole batch."""
        return {name: e.seconds for name, e in self.explanations.items()}


def explain_batch(
    model: Any,
    inputs: torch.Tensor,
    target: torch.Tensor | None,
    methods: Sequence[str],
    *,
    context: Context,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    n_classes: int | None = None,
    additional_forward_args: Any = None,
    on_explained: Callable[[Explanation], None] | None = None,
) -> BatchExplanation:
    """Run every explainer in ``methods`` on one batch.

    Parameters
    ----------
    model : callable
        Model-space images (B, C, H, W) -> logits (B, K).
    inputs : Tensor (B, C, H, W)
        Model-space images on the job's device.
    target : LongTensor (B,) or None
        The class to explain; None: the prediction, as the first explainer resolves it (every
        later explainer explains that same class).
    methods : sequence of str
        Registry names, the primary explainer first.
    context : Context
        Spaces, estimator and the batch's seed.
    method_options : mapping name -> options, optional
    n_classes : int, optional
        Known from the preflight: given targets are then checked without a forward pass.
    additional_forward_args : any, optional
        Extra arguments for ``model`` after the inputs.
    on_explained : callable, optional
        Called with each :class:`~simplebits_audit.explainers.Explanation` as it is done (progress).

    Returns
    -------
    BatchExplanation
    """
    explanations: dict[str, Explanation] = {}
    for name in methods:
        e = explain(
            name, model, inputs, target, additional_forward_args=additional_forward_args, context=context, n_classes=n_classes,
            **(method_options or {}).get(name, {}),
        )
        explanations[name] = e
        target = e.target if target is None else target
        if on_explained is not None:
            on_explained(e)
    return BatchExplanation(explanations, target, context.estimator)


def write_batch(
    out_dir: str | Path,
    batch: BatchExplanation,
    *,
    folders: Sequence[str],
    ids: Sequence[str],
    names: Sequence[str],
    class_names: Sequence[str] | None = None,
    labels: Sequence[int | None] | None = None,
    paths: Sequence[str | None] | None = None,
    top_k: int = 5,
    extra: Sequence[Mapping[str, Any]] | None = None,
    head: str = "softmax",
    threshold: float = 0.5,
    regions: Sequence[torch.Tensor | None] | None = None,
) -> list[dict[str, Any]]:
    """Records of a batch (one per image, from the primary simplification) with their PNGs and arrays written.

    ``folders`` names each image's folder under ``out_dir/images``; ``extra`` adds job-specific
    fields to each record (before the file names). Under ``head="sigmoid"`` each record also lists
    every label's probability before and after and which labels were on
    (:func:`~simplebits_audit.jobs.answers.sigmoid_fields`); softmax records are as they always were.
    A factorised simplification (``result.axis_masks`` set) adds each record's information profile
    (:func:`~simplebits_audit.jobs.information.information_fields`, read inside ``regions``, one
    ground-truth mask (1, H, W) per image, when every image has one) and its axis masks.
    """
    result = batch.result
    if result is None:
        raise ValueError(f"explainer: {batch.primary.name!r} does not simplify; records need a simplification")
    records = simplification_records(result, ids=ids, names=names, class_names=class_names, top_k=top_k, labels=labels, paths=paths)
    maps = batch.maps()
    if result.axis_masks is not None:
        from .information import information_fields

        for record, fields in zip(records, information_fields(result, batch.estimator, regions)):
            record["information"] = fields
    for j, record in enumerate(records):
        if head == "sigmoid":
            record.update(sigmoid_fields(result, j, class_names, threshold, top_k, record["label"]))
        record.update(extra[j] if extra is not None else {})
        folder = image_folder(out_dir, folders[j])
        record["files"] = save_artifacts(
            folder, result.original[j], result.simplified[j], {k: m[j] for k, m in maps.items()},
            path=result.path_images[:, j], order=path_order(record),
            axes=None if result.axis_masks is None else {k: m[j] for k, m in result.axis_masks.items()},
        )
    return records


def mask_shares(result: SimplificationResult, j: int, attr_map: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Where image ``j``'s bits and attribution (map (1, H, W)) sit relative to a ground-truth mask (1, H, W), e.g. a shortcut marker."""
    m = mask.to(result.bits_map_before.device).float()
    share = lambda values: float((values * m).sum() / values.sum().clamp_min(1e-12))  # noqa: E731
    return {
        "mask_area_share": float(m.mean()),
        "mask_bits_share_before": share(result.bits_map_before[j].clamp_min(0)),
        "mask_bits_share_after": share(result.bits_map_after[j].clamp_min(0)),
        "mask_attribution_share": share(attr_map.abs()),
    }
