"""Every explainer side by side -- SimpleBits, the Captum baselines, the trivial maps -- on the same images
and model, judged by the same metrics.

>>> from simplebits_audit.jobs import compare
>>> cmp = compare(model, inputs, labels, masks=masks)          # masks: (B, 1, H, W) ground truth
>>> cmp.to_rows()                                               # one dict per method, with a rank
>>> cmp.to_csv("compare.csv"); cmp.to_json("compare.json")

:func:`compare` runs the batch through the same pipeline as the explain and audit jobs
(:func:`~simplebits_audit.jobs.pipeline.explain_batch`) and scores every explainer alike; an
explainer that simplifies adds its lambda path as its bits curve and the simplicity columns.
:func:`compare_files` does the same on image files (what ``simplebits compare`` runs).

Every table carries the trivial reference maps (SPEC section 6) unless ``methods`` leaves them out;
:meth:`Comparison.reference_beats_real` says when one of them wins (the testbed is then flawed).

The model-parameter randomisation sanity check (Adebayo et al. 2018;
:func:`~simplebits_audit.metrics.model_randomisation`) is the column ``randomisation_spearman``:
the Spearman correlation between each method's absolute map and its map of the same image under
a copy of the model with every weight re-initialised; lower is better (near 1: the map describes
the image, not the model). It costs one more explanation per method, less than ``sensitivity``
(``sensitivity_samples`` = 3 more on up to 8 images), so it is on by default
(``randomisation=False`` leaves it out). ``randomisation_undefined`` is the share of images whose
correlation is undefined (a constant map, e.g. all zeros: NaN, ``null`` in JSON). It is a sanity
check, not a quality score: it does not enter the ``rank``.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import metrics as M
from .._helpers import TargetLike, as_tuple, check_inputs, check_logits, model_guard, resolve_target, slice_args
from .._io import atomic_write, save_json
from .._progress import JobProgress
from .._validation import check_pixel_images
from ..estimators import BitEstimator, resolve_estimator
from ..explainers import SIMPLEBITS, SIMPLEBITS_LEARNED, Context, attribute, check_methods, explain, get_spec, list_explainers
from ..results import COMPARISON_CSV_FILE, COMPARISON_JSON_FILE
from ..simplification import SimplificationResult, Simplifier
from ..simplification.heads import check_head, check_outputs
from ..simplification.learned import load_simplifier
from ..spaces import Transform, make_spaces
from .checks import check_out_dir, declared_class_names, head_options, preflight
from .options import ModelOptions, RunOptions, ScoringOptions, take_options
from .pipeline import explain_batch
from .sources import load_image_arguments

#: what :func:`compare` runs when not told otherwise
DEFAULT_METHODS: tuple[str, ...] = (SIMPLEBITS, "ig", "occlusion", "gradcam", *list_explainers(reference=True))

#: every metric column, in table order, with whether higher is better (None: no direction)
METRICS: dict[str, bool | None] = {
    "bits_auc": True,
    "bits_needed": False,
    "bits_auc_map": True,
    "auroc": True,
    "pointing_game": True,
    "relevance_mass": True,
    "relevance_rank": True,
    "deletion_auc": False,
    "insertion_auc": True,
    "infidelity": False,
    "sensitivity": False,
    "bits_removed": True,
    **{f"{codec}_bpd_{when}": None for codec in M.CODECS for when in ("before", "after")},
    "kept": True,
    "randomisation_spearman": False,
    "randomisation_undefined": None,
}

LOCALISATION = ("auroc", "pointing_game", "relevance_mass", "relevance_rank")

#: metric -> True if higher is better; the ``rank`` column averages the per-metric ranks of these
RANKED_METRICS: dict[str, bool] = {m: bool(METRICS[m]) for m in ("bits_auc", *LOCALISATION, "deletion_auc", "insertion_auc")}


def all_methods() -> list[str]:
    """Every name :func:`compare` accepts: the explainer registry."""
    return list_explainers()


@dataclass
class Comparison:
    """Maps, timings and metrics of several explanation methods on one batch.

    Attributes
    ----------
    methods : list of str
        In the order run.
    maps : dict str -> Tensor (B, 1, H, W)
        Each method's relevance map (the one every metric saw).
    seconds_per_image : dict str -> float
        Wall time of the method's attribution divided by the batch size.
    per_image : dict str -> dict str -> Tensor (B,)
        Every metric per image (NaN where it does not apply to an image).
    curves : dict str -> BitsCurve
        Bits-efficiency curves: an explainer that simplifies has its lambda path under its name
        and its map's curve under ``"<name> (map)"``; the others their map's curve.
    reference : dict str -> bool
        True for trivial reference maps.
    settings : dict
        Options the comparison ran with (JSON-able).
    results : dict str -> SimplificationResult
        The simplifications of the explainers that simplify.
    targets : Tensor (B,) or None
        The output every method explained and every metric scored, per image (the given target, else
        the prediction: under a sigmoid head the most probable label).
    """

    methods: list[str]
    maps: dict[str, torch.Tensor]
    seconds_per_image: dict[str, float]
    per_image: dict[str, dict[str, torch.Tensor]]
    curves: dict[str, M.BitsCurve] = field(default_factory=dict)
    reference: dict[str, bool] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    results: dict[str, SimplificationResult] = field(default_factory=dict)
    targets: torch.Tensor | None = None

    @property
    def result(self) -> SimplificationResult | None:
        """The first simplification (SimpleBits' by default), or None when no explainer simplified."""
        return next(iter(self.results.values()), None)

    def mean(self, method: str, metric: str) -> float | None:
        """Mean of a metric over images (NaNs ignored); ``None`` if it was not measured."""
        values = self.per_image.get(method, {}).get(metric)
        if values is None:
            return None
        v = values.double().nanmean()
        return None if math.isnan(float(v)) else float(v)

    def columns(self) -> list[str]:
        """The metric columns measured for at least one method, in :data:`METRICS` order."""
        present = {k for d in self.per_image.values() for k in d}
        return [m for m in METRICS if m in present]

    def ranks(self) -> dict[str, int]:
        """Position (1 = best) by the mean over :data:`RANKED_METRICS` of each method's rank on that metric."""
        mean_rank = {m: 0.0 for m in self.methods}
        count = {m: 0 for m in self.methods}
        for metric, higher in RANKED_METRICS.items():
            values = {m: self.mean(m, metric) for m in self.methods}
            values = {m: v for m, v in values.items() if v is not None}
            for m, v in values.items():
                better = sum(1 for w in values.values() if (w > v if higher else w < v))
                ties = sum(1 for w in values.values() if w == v) - 1
                mean_rank[m] += 1 + better + ties / 2
                count[m] += 1
        score = {m: mean_rank[m] / count[m] if count[m] else math.inf for m in self.methods}
        return {m: 1 + sum(1 for w in score.values() if w < score[m]) for m in self.methods}

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per method: method, reference, seconds_per_image, x_ig, every metric's mean, rank."""
        ranks = self.ranks()
        ig = self.seconds_per_image.get("ig")
        rows = []
        for m in self.methods:
            sec = self.seconds_per_image[m]
            row: dict[str, Any] = {
                "method": m,
                "reference": self.reference.get(m, False),
                "seconds_per_image": sec,
                "x_ig": sec / ig if ig else None,
            }
            for col in self.columns():
                row[col] = self.mean(m, col)
            row["rank"] = ranks[m]
            rows.append(row)
        return rows

    def best(self, metric: str, reference: bool | None = False) -> str | None:
        """The best method on ``metric`` among real methods (``reference=False``), references (True) or all (None)."""
        higher = METRICS.get(metric)
        if higher is None:
            raise ValueError(f"metric: {metric!r} has no direction; choose from {[k for k, v in METRICS.items() if v is not None]}")
        cands = [(m, self.mean(m, metric)) for m in self.methods if reference is None or self.reference.get(m, False) == reference]
        cands = [(m, v) for m, v in cands if v is not None]
        if not cands:
            return None
        return (max if higher else min)(cands, key=lambda mv: mv[1])[0]

    def reference_beats_real(self,
        metrics: Sequence[str] = ("auroc", "deletion_auc", "insertion_auc", "bits_auc")) -> list[tuple[str, str, str]]:
        """(metric, reference map, best real method) wherever a trivial map beats every real method."""
        out = []
        for metric in metrics:
            ref, real = self.best(metric, True), self.best(metric, False)
            if ref is None or real is None:
                continue
            r, b = self.mean(ref, metric), self.mean(real, metric)
            if (r > b) if METRICS[metric] else (r < b):
                out.append((metric, ref, real))
        return out

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`to_rows` as CSV, atomically (empty cell = not measured)."""
        rows = self.to_rows()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["method"], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue(), encoding="utf-8"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: settings, rows, the scored target per image, per-image metrics and the bits curves."""
        return {
            "settings": self.settings,
            "rows": self.to_rows(),
            "targets": None if self.targets is None else [int(v) for v in self.targets.tolist()],
            "per_image": {m: {k: [None if math.isnan(x) else x for x in v.double().tolist()] for k, v in d.items()}
                for m, d in self.per_image.items()},
            "curves": {m: c.to_dict() for m, c in self.curves.items()},
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON, atomically."""
        return save_json(self.to_dict(), path)


def compare(
    model: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    target: TargetLike = None,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    masks: torch.Tensor | None = None,
    estimator: BitEstimator | str | None = None,
    normalization: tuple | None = None,
    transforms: tuple[Transform, Transform] | None = None,
    additional_forward_args: Any = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    scoring: ScoringOptions | None = None,
    head: str = "softmax",
    threshold: float = 0.5,
    seed: int = 0,
    show_progress: bool = False,
    **options: Any,
) -> Comparison:
    """Run several explainers on one batch and score them all with the same metrics.

    Parameters
    ----------
    model : callable
        Model-space images (B, C, H, W) -> logits (B, K). Never modified.
    inputs : Tensor (B, C, H, W)
        Model-space images; ``to_pixels(inputs)`` must lie in [0, 1].
    target : None, int, list or Tensor (B,)
        Class explained per image; ``None`` = the model's prediction.
    methods : sequence of str
        Names from :func:`simplebits_audit.explainers.list_explainers`.
    masks : Tensor (B, 1, H, W) bool, optional
        Ground truth; enables the localisation metrics (AUROC, pointing game, relevance mass/rank).
    estimator : BitEstimator or str, optional
        Bit estimator for the explainers that simplify and for the bits-efficiency curves
        (default: the package default).
    normalization : (mean, std), optional / transforms : (to_pixels, to_model), optional
        Pixel <-> model space, as for :class:`~simplebits_audit.SimpleBits`.
    additional_forward_args : any, optional
        Extra arguments for ``model`` after the inputs.
    method_options : dict name -> dict, optional
        Options per explainer (e.g. ``{"lime": {"n_samples": 100}, "simplebits": {"steps": 30}}``).
    scoring : ScoringOptions, optional
        How the maps are scored: deletion/insertion steps and reference, bits-efficiency fractions,
        ``bits_keep``, infidelity and sensitivity samples, codec sizes, and the randomisation check
        (see the module docstring): one more explanation per method, with a re-initialised copy of
        ``model`` (seeded by ``seed``; ``model`` itself is never modified). The check needs
        ``model`` to be a ``torch.nn.Module``: for a plain function its columns are left out
        (``settings["randomisation"]`` says False) with a warning.
    head, threshold : optional
        The model's output head (``"sigmoid"``: one logit per label; a single logit is refused under
        ``"softmax"``) and the sigmoid head's "on" probability. Probabilities in every metric follow
        the head (the target label's sigmoid probability under ``"sigmoid"``); with ``target=None``
        the explained label is the most probable one.
    seed : int
        Seeds every random choice (tie-breaking, noise, LIME/SHAP samples, random map, simplification).
    show_progress : bool
        A rich progress bar over methods and one logged line per finished method.
    **options
        Fields of :class:`~simplebits_audit.jobs.options.ScoringOptions`, overriding ``scoring``'s
        (e.g. ``randomisation=False``, ``infidelity_samples=0``); another name is a ``TypeError``.

    Returns
    -------
    Comparison
    """
    # ---- every check before any long work
    (scoring,) = take_options("compare", options, (ScoringOptions, scoring))
    deletion_steps, fractions, reference, bits_keep = scoring.deletion_steps, scoring.fractions, scoring.reference, scoring.bits_keep
    infidelity_samples, sensitivity_images = scoring.infidelity_samples, scoring.sensitivity_images
    sensitivity_samples, codecs, randomisation = scoring.sensitivity_samples, scoring.codecs, scoring.randomisation
    check_head(head, threshold)
    methods = check_methods(methods, method_options)
    method_options = head_options(methods, method_options, head, threshold)
    x = check_inputs(inputs, "inputs")
    if not callable(model):
        raise TypeError(f"model: expected a callable returning logits (B, K), got {type(model).__name__}")
    spaces = make_spaces(normalization, transforms)
    with torch.no_grad():
        pixels = check_pixel_images(spaces.to_pixels(x), "inputs (in pixel space)")
    if masks is not None:
        if not isinstance(masks, torch.Tensor) or masks.shape != (x.shape[0], 1, *x.shape[-2:]):
            raise ValueError(f"masks: expected a tensor of shape {(x.shape[0], 1, *x.shape[-2:])}"
                f", got {getattr(masks, 'shape', type(masks).__name__)}")
        masks = masks.to(x.device).bool()
    batch = x.shape[0]
    extra = as_tuple(additional_forward_args)
    with model_guard(model), torch.no_grad():
        logits = check_logits(model(x, *extra), batch, "model")
    check_outputs(logits.shape[1], head, name="model", model=model)
    t = resolve_target(target, batch, predict=lambda: logits, device=x.device)
    estimator = resolve_estimator(estimator, device=x.device)
    if randomisation and not isinstance(model, torch.nn.Module):
        warnings.warn("randomisation: the model is not a torch.nn.Module, so its weights cannot be re-initialised; "
                      "the randomisation columns are left out", stacklevel=2)
        randomisation = False
    context = Context(spaces=spaces, estimator=estimator, seed=seed, head=head)

    def forward(inp: torch.Tensor, *args: Any) -> torch.Tensor:
        return model(inp, *args)

    def explainer(name: str) -> Callable[..., torch.Tensor]:
        # what sensitivity_max re-runs on perturbed inputs (it repeats target and extra args itself)
        def explain(inp: torch.Tensor, target: torch.Tensor, additional_forward_args: Any = None) -> torch.Tensor:
            return attribute(name, model, inp, target, additional_forward_args=additional_forward_args,
                context=context, **method_options.get(name, {}))
        return explain

    json_able = (int, float, str, bool, type(None))
    out = Comparison(methods, {}, {}, {}, settings={
        "batch": batch, "methods": methods, "estimator": estimator.name, "reference": reference, "bits_keep": bits_keep,
        "deletion_steps": deletion_steps, "fractions": list(fractions), "infidelity_samples": infidelity_samples,
        "sensitivity_images": min(sensitivity_images, batch), "sensitivity_samples": sensitivity_samples, "seed": seed,
        "masks": masks is not None, "randomisation": randomisation, "torch_threads": torch.get_num_threads(),
        **({} if head == "softmax" else {"head": head, "threshold": float(threshold)}),
        "method_options": {k: {o: v for o, v in d.items() if isinstance(v, json_able)} for k, d in method_options.items()},
    }, targets=t.detach().cpu())
    curve_kw = {"estimator": estimator, "fractions": fractions, "reference": reference, "to_model": spaces.to_model,
                "additional_forward_args": additional_forward_args, "seed": seed, "head": head}
    faith_kw = {"steps": deletion_steps, "reference": reference, "additional_forward_args": additional_forward_args, "seed": seed,
                "head": head}

    def map_of(name: str) -> Callable[..., torch.Tensor]:
        # what the randomisation check re-runs with the re-initialised copy of the model
        def explain_map(net: Any, inp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return explain(name, net, inp, target, additional_forward_args=additional_forward_args, context=context,
                           **method_options.get(name, {})).map
        return explain_map

    with model_guard(model), JobProgress(disable=not show_progress) as progress:
        task = progress.add_task("explaining", total=len(methods))
        explained = explain_batch(
            model, x, t, methods, context=context, method_options=method_options, additional_forward_args=additional_forward_args,
            on_explained=lambda e: progress.advance(task),
        )
        task = progress.add_task("scoring", total=len(methods))
        for name, e in explained.explanations.items():
            progress.update(task, description=f"scoring: {name}")
            out.reference[name] = get_spec(name).reference
            out.seconds_per_image[name] = e.seconds / batch
            out.maps[name] = e.map
            values: dict[str, torch.Tensor] = {}
            # ---- bits-efficiency: an explainer that simplifies is judged by its lambda path, its map kept beside
            curve_map = M.bits_efficiency_curve(forward, pixels, e.map, t, **curve_kw)
            values["bits_auc_map"] = M.curve_auc(curve_map)
            if e.result is not None:
                curve = M.simplebits_curve(e.result)
                out.curves[name] = curve
                out.curves[f"{name} (map)"] = curve_map
                out.results[name] = e.result
            else:
                curve = curve_map
                out.curves[name] = curve_map
            values["bits_auc"] = M.curve_auc(curve)
            values["bits_needed"] = M.bits_needed(curve, bits_keep)
            # ---- localisation
            if masks is not None:
                for metric in LOCALISATION:
                    values[metric] = getattr(M, metric)(e.map, masks)
            # ---- faithfulness
            values["deletion_auc"] = M.deletion_auc(forward, x, e.map, t, **faith_kw)
            values["insertion_auc"] = M.insertion_auc(forward, x, e.map, t, **faith_kw)
            if infidelity_samples > 0:
                values["infidelity"] = M.infidelity(forward, x, e.attributions, t, n_perturb_samples=infidelity_samples,
                                                    additional_forward_args=additional_forward_args, seed=seed)
            k = min(sensitivity_images, batch)
            if k > 0 and sensitivity_samples > 0:
                sens = M.sensitivity(explainer(name), x[:k], t[:k], n_perturb_samples=sensitivity_samples, seed=seed,
                                     additional_forward_args=slice_args(additional_forward_args, slice(0, k), batch))
                values["sensitivity"] = torch.cat([sens.double().cpu(), torch.full((batch - k,), float("nan"), dtype=torch.double)])
            # ---- sanity: does the map change when the model's weights are destroyed?
            if randomisation:
                rho = M.model_randomisation(map_of(name), model, x, t, maps=e.map, seed=seed)
                values["randomisation_spearman"] = rho
                values["randomisation_undefined"] = torch.isnan(rho).double()
            # ---- simplicity: only an explainer that simplifies produces a simplified image
            if e.result is not None:
                values["bits_removed"] = e.result.bpd_before - e.result.bpd_after
                values["kept"] = e.result.kept.double()
                if codecs:
                    values.update(M.codec_check(e.result.original, e.result.simplified))
            out.per_image[name] = {k_: v.detach().double().cpu() for k_, v in values.items()}
            if show_progress:  # one line per method, also when the output is not a terminal
                progress.console.log(f"{name}: {out.seconds_per_image[name]:.3f} s/img, metrics done")
            progress.advance(task)
    return out


def compare_files(
    model: Callable[..., torch.Tensor],
    images: Sequence[str | Path],
    out: str | Path,
    *,
    model_options: ModelOptions | None = None,
    run: RunOptions | None = None,
    target: TargetLike = None,
    target_name: str | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    steps: int | None = None,
    estimator: BitEstimator | str | None = None,
    simplifier: Simplifier | str | Path | None = None,
    randomisation: bool = ScoringOptions.randomisation,
    **options: Any,
) -> Comparison:
    """:func:`compare` on image files; writes ``comparison.csv`` and ``comparison.json`` into ``out``.

    Parameters
    ----------
    model : callable
        The classifier (model space in, logits (B, K) out). Never modified.
    images : sequence of paths
        Image files, read with the model options' ``preprocessing`` (they must come out the same
        size), and testbed images (``"testbed:NAME:INDEX"``, as for :func:`~simplebits_audit.jobs.explain_images`).
    out : path
        Output folder.
    model_options, run, target, target_name :
        As for :func:`simplebits_audit.jobs.explain_images` (the model options' ``model_name`` is not used).
    methods, method_options : optional
        As for :func:`compare`.
    steps : int, optional
        Optimisation steps of every explainer that simplifies (its ``steps`` option).
    estimator : BitEstimator or str, optional
        The bit estimator.
    simplifier : Simplifier or path, optional
        A learned simplifier: ``simplebits_learned`` joins the methods with it.
    randomisation : bool
        The model-parameter randomisation check, as for :func:`compare`.
    **options
        Fields of the model and run options, overriding the objects' (e.g. ``head="sigmoid"``, ``seed=3``).

    Returns
    -------
    Comparison
    """
    mo, run = take_options("compare_files", options, (ModelOptions, model_options), (RunOptions, run))
    preprocessing, head, threshold = mo.preprocessing, mo.head, mo.threshold
    out = check_out_dir(out)
    pixels = load_image_arguments(images, preprocessing, name="images").pixels
    options = {k: dict(v) for k, v in (method_options or {}).items()}
    if simplifier is not None:
        methods = [*methods, SIMPLEBITS_LEARNED] if SIMPLEBITS_LEARNED not in methods else list(methods)
        options.setdefault(SIMPLEBITS_LEARNED, {})["simplifier"] = load_simplifier(simplifier, forward_func=model)
    if steps is not None:
        for name in dict.fromkeys(methods):
            if name in list_explainers() and "steps" in get_spec(name).options:
                options.setdefault(name, {}).setdefault("steps", steps)
    checked = preflight(
        model, pixels, preprocessing=preprocessing, device=run.device, class_names=declared_class_names(model, mo.class_names),
        target=target, target_name=target_name,
        explainer=None, methods=methods, method_options=options, methods_name="methods", estimator=estimator, head=head,
        threshold=threshold,
    )
    result = compare(
        model, preprocessing.to_model(pixels.to(checked.device)), checked.targets, methods=checked.methods, estimator=checked.estimator,
        normalization=preprocessing.normalization, method_options=options, randomisation=randomisation, head=head, threshold=threshold,
        seed=run.seed, show_progress=run.show_progress,
    )
    result.to_csv(out / COMPARISON_CSV_FILE)
    result.to_json(out / COMPARISON_JSON_FILE)
    return result
