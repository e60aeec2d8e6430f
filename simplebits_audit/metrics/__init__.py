"""Metrics that judge attribution maps: pure functions on batched tensors, one value per image (B,).

Localisation against a ground-truth mask (:func:`auroc`, :func:`pointing_game`,
:func:`relevance_mass`, :func:`relevance_rank`), faithfulness (:func:`deletion_auc`,
:func:`insertion_auc`, Captum's :func:`infidelity` and :func:`sensitivity`), bits-efficiency
(:func:`bits_efficiency_curve`, :func:`simplebits_curve`, :func:`curve_auc`, :func:`bits_needed`) and simplicity
(:func:`bits_removed`, :func:`codec_check`), which information a factorised simplification kept
(:func:`information_profile`), and the model-parameter randomisation sanity check
(:func:`model_randomisation`: Spearman correlation of the trained and a randomised model's maps).
Callers average (``nanmean`` where a value can be NaN).
"""

from .bits import FRACTIONS, BitsCurve, bits_efficiency_curve, bits_needed, curve_auc, simplebits_curve
from .faithfulness import (
    deletion_auc,
    infidelity,
    insertion_auc,
    make_reference,
    perturbation_curve,
    pixel_order,
    sensitivity,
    target_probability,
)
from .information import axis_removed_images, information_profile
from .localisation import auroc, average_ranks, pointing_game, relevance_mass, relevance_rank, top_share_hit
from .sanity import model_randomisation, randomised_copy, rank_correlation
from .simplicity import CODECS, bits_removed, codec_check

__all__ = [
    "CODECS",
    "FRACTIONS",
    "BitsCurve",
    "auroc",
    "average_ranks",
    "axis_removed_images",
    "bits_efficiency_curve",
    "bits_needed",
    "bits_removed",
    "codec_check",
    "curve_auc",
    "deletion_auc",
    "infidelity",
    "information_profile",
    "insertion_auc",
    "model_randomisation",
    "make_reference",
    "perturbation_curve",
    "pixel_order",
    "pointing_game",
    "randomised_copy",
    "rank_correlation",
    "relevance_mass",
    "relevance_rank",
    "sensitivity",
    "target_probability",
    "top_share_hit",
    "simplebits_curve",
]
