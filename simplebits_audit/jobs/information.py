"""What the jobs add for the factorised engine (issue #22): the checks before any work, and each record's information profile.

The engine (``parameterization="factorised"``) simplifies colour, fine detail and region
separately (:mod:`simplebits_audit.simplification.factorised`); its records carry the profile of
:func:`~simplebits_audit.metrics.information_profile` (:func:`information_fields`) and its axis
masks (:func:`~simplebits_audit.results.save_artifacts`). The audit summarises the profiles per
class and per error type (:func:`~simplebits_audit.report.information.summarise_information`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..estimators import resolve_estimator
from ..metrics import information_profile
from ..results import information_record
from ..simplification import SimplificationResult

#: The engine whose records carry axis maps and an information profile.
FACTORISED = "factorised"
#: The SimpleBits maps only the factorised engine has (``"region"`` is the mask engine's mask too).
AXIS_ATTRIBUTIONS = ("colour", "detail")
#: The lossless codec the profile checks the estimator's bits with.
PROFILE_CODEC = "webp"


def check_engine_attribution(attribution: str, simplify_options: Mapping[str, Any] | None, simplifier: Any = None) -> None:
    """``ValueError`` naming ``attribution`` if it asks for a colour or detail map the engine does not make.

    Called by the jobs before any work: ``"colour"`` and ``"detail"`` need
    ``simplify_options["parameterization"] == "factorised"`` (``simplebits ... --engine factorised``)
    and no learned simplifier (its masks are region masks only).
    """
    if attribution not in AXIS_ATTRIBUTIONS:
        return
    engine = (simplify_options or {}).get("parameterization")
    if simplifier is not None:
        raise ValueError(f"attribution: {attribution!r} needs the factorised engine; a learned simplifier makes region masks only")
    if engine != FACTORISED:
        raise ValueError(f"attribution: {attribution!r} needs the factorised engine (--engine factorised, "
                         f"parameterization='factorised'), got {engine or 'the default engine'!r}")


def information_fields(
    result: SimplificationResult, estimator: Any = None, regions: Sequence[torch.Tensor | None] | None = None,
) -> list[dict[str, Any]]:
    """Each image's information profile as a JSON-able dict (:func:`~simplebits_audit.results.information_record`).

    Parameters
    ----------
    result : SimplificationResult
        A factorised simplification (``result.axis_masks`` set).
    estimator : BitEstimator, str or None
        Rates the bits each axis removed (None: the package default, as the engine's).
    regions : sequence of Tensor (1, H, W) or None, optional
        Ground-truth masks, one per image (e.g. a testbed's object): the shares are read inside
        them when every image has one, over the whole image otherwise (the record says which).
    """
    rated = resolve_estimator(estimator, device=result.original.device)
    masks = None
    if regions is not None and len(regions) == len(result) and all(r is not None for r in regions):
        masks = torch.stack([r.reshape(result.mask.shape[1:]) for r in regions]).to(result.mask.device)
    profile = information_profile(result, rated, region=masks, codec=PROFILE_CODEC)
    where = "ground-truth mask" if masks is not None else "whole image"
    return [information_record(profile, i, region=where, codec=PROFILE_CODEC) for i in range(len(result))]


__all__ = ["AXIS_ATTRIBUTIONS", "FACTORISED", "PROFILE_CODEC", "check_engine_attribution", "information_fields"]
