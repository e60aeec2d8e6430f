"""The ``simplebits`` command line: a thin typer layer over the library.

Every command parses arguments, calls one library function and prints its result. Errors are one
line and exit code 2; ``--debug`` shows the traceback.

Defaults are the library's: an option the user leaves out is not passed on (or passed as None), so
the library's own default applies, and a help text that states a default reads it from the library
(``{library:KEY}`` in the text, resolved through :data:`LIBRARY_DEFAULTS` when the help is shown:
importing the library takes seconds, so ``--help`` pays for it only when it shows the texts).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

app = typer.Typer(
    name="simplebits",
    help="Explain and audit PyTorch image classifiers by simplification (SimpleBits).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


@dataclass
class Options:
    device: str = "cpu"
    seed: int = 0
    quiet: bool = False
    debug: bool = False


options = Options()


@app.callback()
def _global(
    device: str = typer.Option("cpu", help="Torch device: cpu, cuda, cuda:1, ..."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same result on the same machine."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summaries, only results."),
    debug: bool = typer.Option(False, help="Show full tracebacks on errors."),
) -> None:
    """Explain and audit PyTorch image classifiers by simplification (SimpleBits)."""
    import torch

    try:
        torch.device(device)
    except RuntimeError:
        raise typer.BadParameter(f"unknown device {device!r}", param_hint="--device") from None
    options.device, options.seed, options.quiet, options.debug = device, seed, quiet, debug


# ------------------------------------------------------------------------------------------
# The library's defaults, as help texts state them.

#: where the defaults live ("package.module:name")
SIMPLIFY = "simplebits_audit.simplification.engine:simplify"
ENGINE_DEFAULTS = "simplebits_audit.simplification.engine:ENGINE_DEFAULTS"
HEADS = "simplebits_audit.simplification.heads:HEADS"
EXPLAIN_JOB = "simplebits_audit.jobs.explain:explain_images"
AUDIT_JOB = "simplebits_audit.jobs.audit:run_audit"
COMPARE_JOB = "simplebits_audit.jobs.compare:compare"
SIMPLIFIER_JOB = "simplebits_audit.jobs.simplifier:train_simplifier_job"
TRAINING_DEFAULTS = "simplebits_audit.training.simplifier:TRAINING_DEFAULTS"
ESTIMATOR_CONFIG = "simplebits_audit.estimators.training:TrainingConfig"
TRAIN_JOB = "simplebits_audit.jobs.train:train_job"
JOINT_DEFAULTS = "simplebits_audit.training.joint:JOINT_DEFAULTS"
VAL_IMAGES = "simplebits_audit.jobs.train:VAL_IMAGES"
CONDENSE_JOB = "simplebits_audit.jobs.condense:run_condense"
CONDENSE_DEFAULTS = "simplebits_audit.training.condensation:CONDENSE_DEFAULTS"
EVALUATE_DEFAULTS = "simplebits_audit.training.networks:EVALUATE_DEFAULTS"
DEMO_JOB = "simplebits_audit.jobs.demo:run_demo"


def signature_default(target: str, parameter: str) -> Any:
    """The default of ``parameter`` of the function ``target`` (``"package.module:function"``)."""
    module, name = target.split(":")
    return inspect.signature(getattr(importlib.import_module(module), name)).parameters[parameter].default


def constant(target: str, *keys: str) -> Any:
    """The value ``target`` (``"package.module:NAME"``), indexed by ``keys`` (dict keys or dataclass fields)."""
    module, name = target.split(":")
    value = getattr(importlib.import_module(module), name)
    for key in keys:
        if dataclasses.is_dataclass(value):
            value = next(f for f in dataclasses.fields(value) if f.name == key).default
        else:
            value = value[key]
    return value


def _engine_steps() -> int:
    """Optimisation steps of the engine ``simplify`` uses by default."""
    return constant(ENGINE_DEFAULTS, signature_default(SIMPLIFY, "parameterization"), "steps")


#: ``{library:KEY}`` in a help text -> how to read that default off the library.
LIBRARY_DEFAULTS: dict[str, Callable[[], Any]] = {
    "simplify.steps": _engine_steps,
    "simplify.objective": lambda: signature_default(SIMPLIFY, "objective"),
    "simplify.engine": lambda: signature_default(SIMPLIFY, "parameterization"),
    "simplify.engines": lambda: "|".join(constant(ENGINE_DEFAULTS)),
    "simplify.head": lambda: signature_default(SIMPLIFY, "head"),
    "simplify.threshold": lambda: signature_default(SIMPLIFY, "threshold"),
    "heads": lambda: "|".join(constant(HEADS)),
    "explain.attribution": lambda: signature_default(EXPLAIN_JOB, "attribution"),
    "explain.batch_size": lambda: signature_default(EXPLAIN_JOB, "batch_size"),
    "audit.select": lambda: signature_default(AUDIT_JOB, "select"),
    "audit.explain": lambda: signature_default(AUDIT_JOB, "explain"),
    "audit.batch_size": lambda: signature_default(AUDIT_JOB, "batch_size"),
    "audit.predict_batch_size": lambda: signature_default(AUDIT_JOB, "predict_batch_size"),
    "compare.randomisation": lambda: signature_default(COMPARE_JOB, "randomisation"),
    "simplifier.lam": lambda: constant(TRAINING_DEFAULTS, "lam"),
    "simplifier.margin": lambda: constant(TRAINING_DEFAULTS, "margin"),
    "simplifier.steps": lambda: constant(TRAINING_DEFAULTS, "steps"),
    "simplifier.batch_size": lambda: constant(TRAINING_DEFAULTS, "batch_size"),
    "simplifier.held_out": lambda: signature_default(SIMPLIFIER_JOB, "held_out"),
    "estimator.arch": lambda: constant(ESTIMATOR_CONFIG, "arch"),
    "estimator.steps": lambda: constant(ESTIMATOR_CONFIG, "steps"),
    "estimator.batch_size": lambda: constant(ESTIMATOR_CONFIG, "batch_size"),
    "estimator.crop_size": lambda: constant(ESTIMATOR_CONFIG, "crop_size"),
    "estimator.lr": lambda: constant(ESTIMATOR_CONFIG, "lr"),
    "estimator.checkpoint_every": lambda: constant(ESTIMATOR_CONFIG, "checkpoint_every"),
    "train.arch": lambda: signature_default(TRAIN_JOB, "arch"),
    "train.lams": lambda: signature_default(TRAIN_JOB, "lams"),
    "train.epochs": lambda: constant(JOINT_DEFAULTS, "epochs"),
    "train.batch_size": lambda: constant(JOINT_DEFAULTS, "batch_size"),
    "train.lr": lambda: constant(JOINT_DEFAULTS, "lr"),
    "train.margin": lambda: constant(JOINT_DEFAULTS, "margin"),
    "train.val_share": lambda: signature_default(TRAIN_JOB, "val_share"),
    "train.val_n": lambda: constant(VAL_IMAGES),
    "condense.ipc": lambda: signature_default(CONDENSE_JOB, "images_per_class"),
    "condense.lam": lambda: constant(CONDENSE_DEFAULTS, "lam"),
    "condense.outer_steps": lambda: constant(CONDENSE_DEFAULTS, "outer_steps"),
    "condense.arch": lambda: signature_default(CONDENSE_JOB, "arch"),
    "condense.held_out": lambda: signature_default(CONDENSE_JOB, "held_out"),
    "condense.baselines": lambda: signature_default(CONDENSE_JOB, "baselines"),
    "condense.n_models": lambda: constant(EVALUATE_DEFAULTS, "n_models"),
    "condense.epochs": lambda: constant(EVALUATE_DEFAULTS, "epochs"),
    "demo.out": lambda: signature_default(DEMO_JOB, "out"),
}

_LIBRARY_FIELD = re.compile(r"\{library:([\w.]+)\}")


def show_default(value: Any) -> str:
    """A default as help texts write it: numbers as %g, lists comma-separated, booleans on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(show_default(v) for v in value)
    return str(value)


def resolve_help(text: Optional[str]) -> Optional[str]:
    """``text`` with every ``{library:KEY}`` replaced by the library's value (:data:`LIBRARY_DEFAULTS`)."""
    if text is None:
        return None
    return _LIBRARY_FIELD.sub(lambda m: show_default(LIBRARY_DEFAULTS[m.group(1)]()), text)


class LibraryDefaultsCommand(TyperCommand):
    """A command whose option help texts state the library's defaults, read from the library when the help is shown."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.params:
            for field in ("help", "metavar"):
                if isinstance(getattr(param, field, None), str):
                    setattr(param, field, resolve_help(getattr(param, field)))
        super().format_help(ctx, formatter)


def library_command(name: Optional[str] = None) -> Callable:
    """``app.command`` with help texts that read the library's defaults."""
    return app.command(name, cls=LibraryDefaultsCommand)


def given(**values: Any) -> dict[str, Any]:
    """The options the user gave (not None): what is left out takes the library's default."""
    return {k: v for k, v in values.items() if v is not None}


# ------------------------------------------------------------------------------------------
# The user's model and preprocessing: the same options on every command that takes a model.

MODEL = typer.Option(..., "--model", "-m", help="TorchScript file, .pt2 export, 'package.module:factory' or a torchvision name (e.g. resnet18).")
WEIGHTS = typer.Option(None, help="State dict for a factory or torchvision --model (loaded with weights_only=True).")
TRUST_PICKLE = typer.Option(False, "--trust-pickle", help="Allow a fully pickled model file: runs code from the file; only for files you trust.")
NUM_CLASSES = typer.Option(None, help="Output classes of a torchvision architecture (default: read off --weights).")
SIZE = typer.Option(None, help="Resize the shorter image side to this many pixels.")
CROP = typer.Option(None, help="Centre-crop to CROP x CROP after resizing.")
MEAN = typer.Option(None, help="Normalisation mean per channel, e.g. 0.485,0.456,0.406.")
STD = typer.Option(None, help="Normalisation std per channel, e.g. 0.229,0.224,0.225.")
PRESET = typer.Option(None, help="Normalisation preset instead of --mean/--std: imagenet or none.")
GRAYSCALE = typer.Option(False, "--grayscale", help="Read images with one channel.")
LABELS = typer.Option(None, help="Class names: a text file (one per line) or JSON (list or {\"0\": name}).")
ESTIMATOR = typer.Option(None, "--estimator", "-e", help="Bit estimator name or checkpoint file (default: the package default).")
SIMPLIFIER = typer.Option(None, "--simplifier", help="A learned simplifier file (simplebits train-simplifier): one forward pass per image.")

# ------------------------------------------------------------------------------------------
# What the explaining commands share.

TARGET = typer.Option(None, help="Class index to explain (default: the prediction).")
TARGET_NAME = typer.Option(None, help="Class to explain, by name (needs --labels).")
STEPS = typer.Option(None, help="Optimisation steps of the simplification (default {library:simplify.steps}, the default engine's).")
ATTRIBUTION = typer.Option(
    None, help="SimpleBits map: auto (the mask of the default engine), mask, retained, ablation, survival, bits_removed or kept; "
               "with --engine factorised also colour, detail or region (default {library:explain.attribution}).")
ENGINE = typer.Option(
    None, "--engine", metavar="[{library:simplify.engines}]",
    help="What the simplification optimises (default {library:simplify.engine}). factorised: colour, fine detail and region "
         "separately; records and the report then carry one map per axis and the information profile (which information the model needed).")
HEAD = typer.Option(
    None, "--head", metavar="[{library:heads}]",
    help="The model's output head (default {library:simplify.head}): softmax over classes, or sigmoid, one logit per label "
         "(a binary classifier with one logit, or multi-label); records then list each label's probability before and after.")
THRESHOLD = typer.Option(
    None, help="With --head sigmoid: a label is on when its probability is at least this (default {library:simplify.threshold}).")
GRADCAM_LAYER = typer.Option(
    None, "--gradcam-layer", metavar="NAME",
    help="The layer Grad-CAM reads, as a dotted module name (e.g. layer4, features.7, or a ViT block such as "
         "encoder.layers.encoder_layer_11.ln_1); default: the last Conv2d. The input stem and a patch embedding are refused.")


def _baseline_options(gradcam_layer: Optional[str]) -> dict[str, dict[str, Any]]:
    """Per-baseline options from the command line (only those given)."""
    return {"gradcam": {"layer": gradcam_layer}} if gradcam_layer else {}


def _head(head: Optional[str], threshold: Optional[float]) -> dict[str, Any]:
    """The head options the user gave, checked by the library (errors name --head / --threshold)."""
    from simplebits_audit.simplification.heads import check_head

    if threshold is not None and head != "sigmoid":
        raise typer.BadParameter("applies to --head sigmoid only", param_hint="--threshold")
    try:
        if head is not None:
            check_head(head, **given(threshold=threshold))
    except ValueError as err:
        name, _, message = str(err).partition(": ")
        raise typer.BadParameter(message, param_hint=f"--{name}") from None
    return given(head=head, threshold=threshold)


def _floats(text: Optional[str], name: str) -> Optional[tuple[float, ...]]:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected numbers separated by commas, got {text!r}", param_hint=name) from None


def _preprocessing(size, crop, mean, std, preset, grayscale):
    from simplebits_audit.preprocessing import Preprocessing

    if preset is not None:
        if mean is not None or std is not None:
            raise typer.BadParameter("give --preset or --mean/--std, not both", param_hint="--preset")
        return Preprocessing.from_preset(preset, size=size, crop=crop, grayscale=grayscale)
    return Preprocessing(size=size, crop=crop, mean=_floats(mean, "--mean"), std=_floats(std, "--std"), grayscale=grayscale)


def _model(spec: str, weights, trust_pickle: bool, num_classes, device=None):
    from simplebits_audit.models import load_model

    return load_model(spec, weights=weights, trust_pickle=trust_pickle, num_classes=num_classes, device=device or options.device)


def _labels(path: Optional[Path]):
    from simplebits_audit.preprocessing import load_labels

    return None if path is None else load_labels(path)


def _methods(text: Optional[str]) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()] if text else []


@library_command()
def explain(
    images: list[Path] = typer.Argument(..., help="Image files (any format Pillow reads)."),
    model: str = MODEL,
    out: Path = typer.Option(Path("simplebits-explain"), "--out", "-o", help="Output folder: report.html, results.json, PNGs."),
    target: Optional[int] = TARGET,
    target_name: Optional[str] = TARGET_NAME,
    baselines: Optional[str] = typer.Option(None, help="Captum baselines beside SimpleBits, comma-separated, e.g. ig,occlusion,gradcam."),
    gradcam_layer: Optional[str] = GRADCAM_LAYER,
    attribution: Optional[str] = ATTRIBUTION,
    engine: Optional[str] = ENGINE,
    steps: Optional[int] = STEPS,
    objective: Optional[str] = typer.Option(
        None, help="kl: keep the whole predicted distribution; ce: keep the target class (default {library:simplify.objective})."),
    batch_size: Optional[int] = typer.Option(None, help="Images simplified together (default {library:explain.batch_size})."),
    head: Optional[str] = HEAD,
    threshold: Optional[float] = THRESHOLD,
    estimator: Optional[str] = ESTIMATOR,
    weights: Optional[Path] = WEIGHTS,
    trust_pickle: bool = TRUST_PICKLE,
    num_classes: Optional[int] = NUM_CLASSES,
    size: Optional[int] = SIZE,
    crop: Optional[int] = CROP,
    mean: Optional[str] = MEAN,
    std: Optional[str] = STD,
    preset: Optional[str] = PRESET,
    grayscale: bool = GRAYSCALE,
    labels: Optional[Path] = LABELS,
    simplifier: Optional[Path] = SIMPLIFIER,
    open_report: bool = typer.Option(False, "--open", help="Open the report in a browser when done."),
) -> None:
    """Explain predictions: simplify each image, write an interactive report.

    Examples:

      simplebits explain cat.jpg --model resnet18 --weights r18.pt --preset imagenet --size 256 --crop 224 --labels classes.txt

      simplebits explain digit.png --model model.ts --baselines ig,occlusion,gradcam --out report/

      simplebits explain xray.png --model binary.ts --head sigmoid --labels negative_positive.txt
    """
    from simplebits_audit.jobs import explain_images

    head_options = _head(head, threshold)
    prep = _preprocessing(size, crop, mean, std, preset, grayscale)
    class_names = _labels(labels)
    net = _model(model, weights, trust_pickle, num_classes)
    result = explain_images(
        net, images, out, preprocessing=prep, class_names=class_names, target=target, target_name=target_name,
        baselines=_methods(baselines), estimator=estimator, model_name=model, device=options.device, seed=options.seed,
        show_progress=not options.quiet, simplify_options=given(objective=objective, steps=steps, parameterization=engine), simplifier=simplifier,
        baseline_options=_baseline_options(gradcam_layer), **given(attribution=attribution, batch_size=batch_size), **head_options,
    )
    if not options.quiet:
        table = Table("image", "target", "prediction before -> after", "kept", "bits/dim before -> after", "WebP bits/dim before -> after")
        for r in result.records:
            table.add_row(r["name"], r["target_name"], f"{r['pred_before_name']} -> {r['pred_after_name']}", "yes" if r["kept"] else "no",
                          f"{r['bpd_before']:.3f} -> {r['bpd_after']:.3f}", f"{r['webp_bpd_before']:.3f} -> {r['webp_bpd_after']:.3f}")
        console.print(table)
        if any("labels" in r for r in result.records):
            on = lambda names: ", ".join(names) or "none"  # noqa: E731
            for r in result.records:
                console.print(f"{r['name']}: labels on {on(r['on_before'])} -> {on(r['on_after'])}")
    console.print(f"report: {result.report_path}")
    if open_report:
        import webbrowser

        webbrowser.open(result.report_path.resolve().as_uri())


@library_command()
def compare(
    images: list[Path] = typer.Argument(..., help="Image files (any format Pillow reads)."),
    model: str = MODEL,
    out: Path = typer.Option(Path("simplebits-compare"), "--out", "-o", help="Output folder: comparison.csv and comparison.json."),
    methods: Optional[str] = typer.Option(None, help="Comma-separated: simplebits and baseline names (default: simplebits, ig, occlusion, gradcam and the trivial reference maps)."),
    target: Optional[int] = TARGET,
    target_name: Optional[str] = TARGET_NAME,
    steps: Optional[int] = STEPS,
    gradcam_layer: Optional[str] = GRADCAM_LAYER,
    randomisation: Optional[bool] = typer.Option(
        None, "--randomisation/--no-randomisation",
        help="Model-parameter randomisation check (default {library:compare.randomisation}): Spearman correlation of each method's map with its map "
             "under a copy of the model with re-initialised weights; lower is better; one more explanation per method."),
    head: Optional[str] = HEAD,
    threshold: Optional[float] = THRESHOLD,
    estimator: Optional[str] = ESTIMATOR,
    weights: Optional[Path] = WEIGHTS,
    trust_pickle: bool = TRUST_PICKLE,
    num_classes: Optional[int] = NUM_CLASSES,
    size: Optional[int] = SIZE,
    crop: Optional[int] = CROP,
    mean: Optional[str] = MEAN,
    std: Optional[str] = STD,
    preset: Optional[str] = PRESET,
    grayscale: bool = GRAYSCALE,
    labels: Optional[Path] = LABELS,
    simplifier: Optional[Path] = typer.Option(None, "--simplifier", help="A learned simplifier file: adds the method simplebits_learned."),
) -> None:
    """Score SimpleBits and Captum baselines side by side on your images (faithfulness, bits-efficiency, sanity, time).

    Localisation metrics need ground-truth masks: run ``python benchmarks/compare.py --testbed NAME`` for those.

    Example: ``simplebits compare a.png b.png --model model.ts --methods simplebits,ig,occlusion``.
    """
    from simplebits_audit.jobs.compare import DEFAULT_METHODS, compare_files
    from simplebits_audit.results import COMPARISON_CSV_FILE

    head_options = _head(head, threshold)
    prep = _preprocessing(size, crop, mean, std, preset, grayscale)
    class_names = _labels(labels)
    net = _model(model, weights, trust_pickle, num_classes)
    result = compare_files(
        net, images, out, preprocessing=prep, class_names=class_names, target=target, target_name=target_name,
        methods=_methods(methods) or DEFAULT_METHODS, steps=steps, estimator=estimator, simplifier=simplifier, device=options.device,
        seed=options.seed, show_progress=not options.quiet, method_options=_baseline_options(gradcam_layer) or None,
        **given(randomisation=randomisation), **head_options,
    )
    rows = result.to_rows()
    # One column per method (metrics as rows) keeps the table readable in a terminal.
    table = Table("metric", *(r["method"] + (" (ref.)" if r["reference"] else "") for r in rows))
    for metric in [c for c in rows[0] if c not in ("method", "reference")]:
        table.add_row(metric, *("-" if r[metric] is None else f"{r[metric]:.3g}" if isinstance(r[metric], float) else str(r[metric]) for r in rows))
    if not options.quiet:
        console.print(table)
    console.print(f"table: {out / COMPARISON_CSV_FILE}")


@library_command()
def audit(
    data: str = typer.Argument(..., help="An ImageFolder directory, a CSV of path,label, or a testbed name (its test split)."),
    model: str = MODEL,
    out: Path = typer.Option(Path("simplebits-audit"), "--out", "-o", help="Output folder; rerun the same command to resume."),
    select: Optional[str] = typer.Option(None, help="misclassified | all | low-confidence:P | class:NAME (default {library:audit.select})."),
    limit: Optional[int] = typer.Option(None, help="Explain at most this many selected images (the first ones)."),
    explain_target: Optional[str] = typer.Option(
        None, "--explain", help="Class to keep: pred (the prediction), true (the label) or both (default {library:audit.explain})."),
    baselines: Optional[str] = typer.Option(None, help="Captum baselines beside SimpleBits, comma-separated, e.g. ig,gradcam."),
    gradcam_layer: Optional[str] = GRADCAM_LAYER,
    attribution: Optional[str] = ATTRIBUTION,
    engine: Optional[str] = ENGINE,
    steps: Optional[int] = STEPS,
    batch_size: Optional[int] = typer.Option(
        None, help="Images simplified together (default {library:audit.batch_size}); fixed batches: results do not depend on the number of processes."),
    predict_batch_size: Optional[int] = typer.Option(None, help="Images per prediction batch (default {library:audit.predict_batch_size})."),
    testbed_n: Optional[int] = typer.Option(None, help="Number of images when DATA is a testbed."),
    head: Optional[str] = HEAD,
    threshold: Optional[float] = THRESHOLD,
    estimator: Optional[str] = ESTIMATOR,
    weights: Optional[Path] = WEIGHTS,
    trust_pickle: bool = TRUST_PICKLE,
    num_classes: Optional[int] = NUM_CLASSES,
    size: Optional[int] = SIZE,
    crop: Optional[int] = CROP,
    mean: Optional[str] = MEAN,
    std: Optional[str] = STD,
    preset: Optional[str] = PRESET,
    grayscale: bool = GRAYSCALE,
    labels: Optional[Path] = LABELS,
    simplifier: Optional[str] = typer.Option(
        None, "--simplifier", help="A learned simplifier file, or 'auto': train one on DATA first (OUT/simplifier.pt, reused on resume)."),
) -> None:
    """Audit a dataset: predict everything, simplify the misclassified (or selected) images, write a report.

    Resumable: rerun the same command after an interruption. Across processes:
    ``torchrun --nproc_per_node=2 -m simplebits_audit.cli.main audit ...`` (gloo on CPU, nccl on GPU).

    A binary classifier with one logit: ``--head sigmoid``; its prediction is the decision
    (probability >= --threshold: the second class folder, e.g. negative/ and positive/).

    Examples:

      simplebits audit val/ --model model.ts --preset imagenet --size 256 --crop 224 --limit 200

      simplebits audit digits-on-photos --model testbed:digits-on-photos --explain both

      simplebits audit digits-on-photos --model testbed:digits-on-photos --select all --simplifier auto

      simplebits audit colour-cue --model testbed:colour-cue --select all --engine factorised --limit 16
    """
    from simplebits_audit.jobs import run_audit
    from simplebits_audit.jobs.distributed import rank_device
    from simplebits_audit.results import REPORT_FILE

    head_options = _head(head, threshold)
    prep = _preprocessing(size, crop, mean, std, preset, grayscale)
    class_names = _labels(labels)
    device = rank_device(options.device)  # under torchrun each rank takes its own GPU
    net = _model(model, weights, trust_pickle, num_classes, device)
    summary = run_audit(
        net, data, out, preprocessing=prep, class_names=class_names, limit=limit, baselines=_methods(baselines), estimator=estimator,
        model_name=model if weights is None else f"{model} (weights {weights})", device=device, seed=options.seed, testbed_n=testbed_n,
        show_progress=not options.quiet, simplify_options=given(steps=steps, parameterization=engine), simplifier=simplifier,
        baseline_options=_baseline_options(gradcam_layer),
        **given(select=select, explain=explain_target, attribution=attribution, batch_size=batch_size, predict_batch_size=predict_batch_size),
        **head_options,
    )
    if not summary:  # a torchrun rank other than 0: rank 0 reports
        return
    if not options.quiet:
        acc = "-" if summary["accuracy"] is None else f"{100 * summary['accuracy']:.1f}%"
        console.print(f"{summary['items']} images, {len(summary['skipped'])} skipped, accuracy {acc}; "
                      f"{summary['explained']} explanations, kept {100 * (summary['kept_rate'] or 0):.0f}%, "
                      f"bits/dim {summary['bpd_before'] or 0:.3f} -> {summary['bpd_after'] or 0:.3f}")
        if summary["shortcut"]:
            s = summary["shortcut"]
            console.print(f"mask: {100 * s['mask_area_share']:.1f}% of the area, {100 * s['mask_bits_share_after']:.1f}% of the retained bits, "
                          f"{100 * s['mask_attribution_share']:.1f}% of the attribution")
        if summary.get("information"):  # --engine factorised
            console.print(f"which information: {summary['information']['takeaway']}")
    console.print(f"report: {out / REPORT_FILE}")


@app.command()
def report(folder: Path = typer.Argument(..., help="Output folder of an explain, demo, audit or train run.")) -> None:
    """Rebuild a run's report.html from its results, without recomputing.

    Example: ``simplebits report simplebits-explain/``.
    """
    from simplebits_audit.report import build_report

    console.print(f"report: {build_report(folder)}")


@app.command()
def estimators(name: Optional[str] = typer.Argument(None, help="Show this estimator's model card.")) -> None:
    """List the bit estimators, or show one's model card.

    Examples: ``simplebits estimators``; ``simplebits estimators pixelcnn``.
    """
    from simplebits_audit.estimators import DEFAULT_ESTIMATOR, list_estimators, model_card

    if name is not None:
        card = {k: v for k, v in model_card(name).items() if k != "history"}
        console.print_json(json.dumps(card))
        return
    table = Table("name", "default", "held-out bpd", "held-out WebP bpd", "parameters")
    for est in list_estimators():
        card = model_card(est)
        fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else "-"  # noqa: E731
        table.add_row(est, "yes" if est == DEFAULT_ESTIMATOR else "", fmt(card.get("held_out_bpd")), fmt(card.get("held_out_webp_bpd")), str(card.get("parameters", 0)))
    console.print(table)


@app.command()
def bits(
    images: Optional[list[Path]] = typer.Argument(None, help="Image files (any format Pillow reads)."),
    estimator: Optional[str] = typer.Option(None, "--estimator", "-e", help="Estimator name or checkpoint file (default: the package default)."),
    grayscale: bool = typer.Option(False, help="Rate the images as grayscale."),
    encode: Optional[Path] = typer.Option(None, "--encode", help="Compress the one IMAGE into this file with the estimator as a real codec."),
    decode: Optional[Path] = typer.Option(None, "--decode", help="Restore the image of a file written by --encode (needs --out)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="With --decode: the PNG to write."),
) -> None:
    """How many bits each image costs under an estimator, beside PNG, WebP and JPEG-XL lossless.

    Examples: ``simplebits bits photo.png``; ``simplebits bits photo.png --encode photo.sbits`` (a real
    file of about the estimator's bits); ``simplebits bits --decode photo.sbits --out restored.png``.
    """
    from simplebits_audit.jobs.bits import decode_file, encode_file, measure_bits

    if decode is not None:
        if images or encode is not None or out is None:
            raise typer.BadParameter("--decode FILE takes --out PNG and no IMAGES or --encode", param_hint="--decode")
        shape = decode_file(decode, out, estimator=estimator)
        console.print(f"restored {decode} -> {out} ({shape[0]} x {shape[1]} x {shape[2]})")
        return
    if not images:
        raise typer.BadParameter("give at least one image (or --decode FILE --out PNG)", param_hint="IMAGES")
    if encode is not None:
        if len(images) != 1:
            raise typer.BadParameter(f"--encode takes one image, got {len(images)}", param_hint="--encode")
        f = encode_file(images[0], encode, estimator=estimator, grayscale=grayscale)
        console.print(f"wrote {f.path}: {f.bytes * 8} bits ({f.bytes} bytes, header {f.header_bytes}); the estimator's bits {f.estimator_bits:.0f}")
        return
    table = Table("image", "H x W", "bits", "bpd", "PNG bpd", "WebP bpd", "JPEG-XL bpd")
    for r in measure_bits(images, estimator=estimator, grayscale=grayscale, device=options.device):
        table.add_row(r.path, f"{r.height} x {r.width}", f"{r.bits:.0f}", f"{r.bpd:.3f}", f"{r.png_bpd:.3f}", f"{r.webp_bpd:.3f}", f"{r.jxl_bpd:.3f}")
    console.print(table)


@library_command("train-estimator")
def train_estimator_cmd(
    image_dir: Path = typer.Argument(..., help="Folder of photos; ~15% of whole photos are held out for evaluation."),
    arch: Optional[str] = typer.Option(None, help="Architecture: pixelcnn or glow (default {library:estimator.arch})."),
    out: Path = typer.Option(..., help="Checkpoint to write (a model card goes beside it as .json)."),
    steps: Optional[int] = typer.Option(None, help="Optimisation steps (default {library:estimator.steps})."),
    batch_size: Optional[int] = typer.Option(None, help="Crops per step (default {library:estimator.batch_size})."),
    crop_size: Optional[int] = typer.Option(None, help="Side of the square training crops (default {library:estimator.crop_size})."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate, cosine decay (default {library:estimator.lr})."),
    checkpoint_every: Optional[int] = typer.Option(None, help="Steps between checkpoints and held-out evaluations (default {library:estimator.checkpoint_every})."),
    resume: bool = typer.Option(False, help="Continue from <out>.state if it exists."),
) -> None:
    """Train a bit estimator on random multi-scale crops (with flips) of your photos.

    Example: ``simplebits train-estimator photos/ --arch pixelcnn --out my.pt --steps 2000``;
    interrupted? rerun with ``--resume``. Load the result with ``--estimator my.pt``.
    """
    from simplebits_audit.estimators.training import TrainingConfig, train_estimator

    config = TrainingConfig(**given(arch=arch, steps=steps, batch_size=batch_size, crop_size=crop_size, lr=lr, checkpoint_every=checkpoint_every),
                            seed=options.seed)
    card = train_estimator(out, image_dir, config, resume=resume, show_progress=not options.quiet)
    console.print(f"held-out bpd {card['held_out_bpd']:.3f} (WebP lossless {card['held_out_webp_bpd']:.3f}); wrote {out}")


@library_command("train-simplifier")
def train_simplifier_cmd(
    data: str = typer.Argument(..., help="An ImageFolder directory, a CSV of path,label, or a testbed name (its train split)."),
    model: str = MODEL,
    out: Path = typer.Option(Path("simplifier.pt"), "--out", "-o", help="The simplifier file to write; OUT.ckpt holds the resumable state."),
    lam: Optional[float] = typer.Option(None, help="Weight of the bits term (default {library:simplifier.lam})."),
    margin: Optional[float] = typer.Option(
        None, help="Log-probability margin the simplified image must keep before bits are charged (default {library:simplifier.margin})."),
    steps: Optional[int] = typer.Option(None, help="Training steps (default {library:simplifier.steps})."),
    batch_size: Optional[int] = typer.Option(None, help="Images per step, per process (default {library:simplifier.batch_size})."),
    held_out: Optional[float] = typer.Option(
        None, help="Share of DATA held out and scored at the end: top-1 kept, bits kept (default {library:simplifier.held_out})."),
    testbed_n: Optional[int] = typer.Option(None, help="Number of images when DATA is a testbed."),
    head: Optional[str] = HEAD,
    threshold: Optional[float] = THRESHOLD,
    estimator: Optional[str] = ESTIMATOR,
    weights: Optional[Path] = WEIGHTS,
    trust_pickle: bool = TRUST_PICKLE,
    num_classes: Optional[int] = NUM_CLASSES,
    size: Optional[int] = SIZE,
    crop: Optional[int] = CROP,
    mean: Optional[str] = MEAN,
    std: Optional[str] = STD,
    preset: Optional[str] = PRESET,
    grayscale: bool = GRAYSCALE,
) -> None:
    """Train a learned simplifier for your model: afterwards each explanation is one forward pass.

    Resumable: rerun the same command after an interruption (Ctrl-C keeps the checkpoint). Across
    processes: ``torchrun --nproc_per_node=2 -m simplebits_audit.cli.main train-simplifier ...``.

    Examples:

      simplebits train-simplifier digits-on-photos --model testbed:digits-on-photos --out dop.pt

      simplebits audit digits-on-photos --model testbed:digits-on-photos --select all --simplifier dop.pt
    """
    from simplebits_audit.jobs.distributed import rank_device
    from simplebits_audit.jobs.simplifier import train_simplifier_job

    head_options = _head(head, threshold)
    prep = _preprocessing(size, crop, mean, std, preset, grayscale)
    device = rank_device(options.device)
    net = _model(model, weights, trust_pickle, num_classes, device)
    simplifier = train_simplifier_job(
        net, data, out, preprocessing=prep, estimator=estimator, lam=lam, margin=margin, steps=steps, batch_size=batch_size,
        testbed_n=testbed_n, device=device, seed=options.seed, show_progress=not options.quiet, **given(held_out=held_out), **head_options,
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 reports
        return
    card = simplifier.card
    scores = card["held_out"]
    console.print(f"{scores['images']} {'training' if held_out == 0 else 'held-out'} images: top-1 kept {100 * scores['top1_kept']:.1f}%, "
                  f"bits kept {scores['bits_kept']:.3f}; trained {card['steps']} steps in {card['training_seconds']:.0f} s; wrote {out}")


@library_command("train")
def train_cmd(
    data: str = typer.Argument(..., help="An ImageFolder directory, a CSV of path,label, or a testbed name (train split; its test split validates)."),
    arch: Optional[str] = typer.Option(None, help="Classifier to train from scratch: smallcnn, resnet18 or 'package.module:factory' (default {library:train.arch})."),
    lam: Optional[str] = typer.Option(None, "--lam", help="Weights of the bits term, comma-separated; one run each, 0 = the reference (default {library:train.lams})."),
    out: Path = typer.Option(Path("simplebits-train"), "--out", "-o", help="Output folder: models per lambda, tradeoff.json, report.html."),
    epochs: Optional[int] = typer.Option(None, help="Epochs per lambda (default {library:train.epochs})."),
    batch_size: Optional[int] = typer.Option(None, help="Images per step, per process (default {library:train.batch_size})."),
    lr: Optional[float] = typer.Option(None, help="AdamW learning rate of both networks, cosine decay (default {library:train.lr})."),
    margin: Optional[float] = typer.Option(
        None, help="Log-probability margin the classifier must have on a simplified image before its bits are charged (default {library:train.margin})."),
    val_share: Optional[float] = typer.Option(None, help="Share of a folder or CSV held out for validation (default {library:train.val_share})."),
    testbed_n: Optional[int] = typer.Option(None, help="Training images when DATA is a testbed (default: its train size)."),
    val_n: Optional[int] = typer.Option(None, help="Validation images (default {library:train.val_n})."),
    estimator: Optional[str] = ESTIMATOR,
    size: Optional[int] = SIZE,
    crop: Optional[int] = CROP,
    mean: Optional[str] = MEAN,
    std: Optional[str] = STD,
    preset: Optional[str] = PRESET,
    grayscale: bool = GRAYSCALE,
) -> None:
    """Train a classifier on simplified inputs, once per lambda: how much information does the task need?

    A simplifier learns, jointly with the classifier, to remove every bit the task allows; the
    curve of accuracy against bits kept, and what each lambda keeps, go to OUT/report.html.
    Resumable: rerun the same command (finished lambdas are reloaded). Across processes:
    ``torchrun --nproc_per_node=2 -m simplebits_audit.cli.main train ...``.

    Example:

      simplebits train blended-digits --lam 0,0.5,1,2 --out blended
    """
    from simplebits_audit.jobs.distributed import rank_device
    from simplebits_audit.jobs.train import parse_lams, train_job
    from simplebits_audit.results import REPORT_FILE

    lams = None if lam is None else parse_lams(lam)
    prep = _preprocessing(size, crop, mean, std, preset, grayscale)
    record = train_job(
        data, out, preprocessing=prep, estimator=estimator, epochs=epochs, batch_size=batch_size, lr=lr, margin=margin, testbed_n=testbed_n,
        val_n=val_n, device=rank_device(options.device), seed=options.seed, show_progress=not options.quiet,
        **given(arch=arch, lams=lams, val_share=val_share),
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return
    table = Table("λ", "accuracy (simplified)", "accuracy (original)", "bits kept", "WebP kept", *(["bits inside mask / mask share"] if record["has_masks"] else []))
    for p in record["points"]:
        table.add_row(f"{p['lam']:g}", f"{100 * p['val_accuracy_simplified']:.1f}%", f"{100 * p['val_accuracy_original']:.1f}%",
                      f"{p['val_bits_kept']:.3f}", f"{p['webp_kept']:.3f}", *([f"{p['inside_ratio']:.2f}×"] if record["has_masks"] else []))
    console.print(table)
    best = record["simplest_within_2pt"]
    console.print(f"simplest within 2 points of λ={record['reference']:g}: λ={best:g}" if best is not None else "no λ within 2 points of the reference")
    console.print(f"report: {out / REPORT_FILE}")


@library_command("condense")
def condense_cmd(
    data: str = typer.Argument(..., help="Labelled training images: an ImageFolder directory, a CSV of path,label, or a testbed name (its train split)."),
    out: Path = typer.Option(Path("simplebits-condense"), "--out", "-o", help="Output folder; rerun the same command to resume."),
    ipc: Optional[int] = typer.Option(None, "--ipc", help="Synthetic images per class (default {library:condense.ipc})."),
    lam: Optional[float] = typer.Option(None, help="Weight of the bits term against the gradient-matching distance (default {library:condense.lam})."),
    outer_steps: Optional[int] = typer.Option(None, help="Fresh networks to match gradients on (default {library:condense.outer_steps})."),
    arch: Optional[str] = typer.Option(
        None, help="Network matched and evaluated: convnet (instance norm) or smallcnn (batch norm) (default {library:condense.arch})."),
    test: Optional[str] = typer.Option(None, "--test", help="Test images (folder, CSV or testbed); default: a testbed's test split or a held-out share of DATA."),
    held_out: Optional[float] = typer.Option(
        None, help="Share of DATA held out for testing when there is no --test and DATA is not a testbed (default {library:condense.held_out})."),
    baselines: Optional[bool] = typer.Option(
        None, "--baselines/--no-baselines",
        help="Also condense without the bits term and evaluate a random real subset; doubles the time (default {library:condense.baselines})."),
    n_models: Optional[int] = typer.Option(None, help="Classifiers trained per training set for the accuracy table (default {library:condense.n_models})."),
    epochs: Optional[int] = typer.Option(None, help="Epochs of each evaluation classifier (default {library:condense.epochs})."),
    testbed_n: Optional[int] = typer.Option(None, help="Number of training images when DATA is a testbed."),
    estimator: Optional[str] = ESTIMATOR,
    size: Optional[int] = SIZE,
    crop: Optional[int] = CROP,
    grayscale: bool = GRAYSCALE,
    labels: Optional[Path] = LABELS,
) -> None:
    """Condense a training set to a few synthetic images per class, penalising their bits (gradient matching).

    Writes the condensed images, condense.json and report.html (the images per class with their bits
    and WebP size, and the accuracy of classifiers trained on them beside a random real subset of the
    same size and the condensation without the bits term). Resumable: rerun the same command.

    Examples:

      simplebits condense digits-on-photos --ipc 10 --out condensed/

      simplebits condense train_folder/ --test val_folder/ --size 32 --crop 32 --ipc 1 --lam 3
    """
    from simplebits_audit.jobs.condense import run_condense
    from simplebits_audit.results import REPORT_FILE

    prep = _preprocessing(size, crop, None, None, None, grayscale)
    results = run_condense(
        data, out, lam=lam, estimator=estimator, outer_steps=outer_steps, test_data=test, n_models=n_models, epochs=epochs, testbed_n=testbed_n,
        preprocessing=prep, class_names=_labels(labels), device=options.device, seed=options.seed, show_progress=not options.quiet,
        **given(images_per_class=ipc, arch=arch, held_out=held_out, baselines=baselines),
    )
    if not options.quiet:
        table = Table("training set", "images", "test accuracy %", "bits / dim", "WebP bits / dim")
        for name, row in results["evaluation"].items():
            table.add_row(name, str(row["images"]), f"{100 * row['accuracy_mean']:.1f} ± {100 * row['accuracy_std']:.1f}",
                          f"{row['bpd']:.3f}", f"{row['webp_bpd']:.3f}")
        console.print(table)
    console.print(f"report: {out / REPORT_FILE}")


@library_command()
def demo(out: Optional[Path] = typer.Option(None, help="Folder for the demo's outputs (default {library:demo.out}).")) -> None:
    """The main job on the embedded default: no arguments needed.

    Example: ``simplebits demo --out demo/``.
    """
    from simplebits_audit.jobs.demo import run_demo

    run_demo(**given(out=out), device=options.device, seed=options.seed, show_progress=not options.quiet, console=None if options.quiet else console)


#: global options (``_global``) that may also come after the command; True: the option takes a value
GLOBAL_OPTIONS = {"--device": True, "--seed": True, "--quiet": False, "-q": False, "--debug": False}


def hoist_global_options(args: list[str]) -> list[str]:
    """Move global options written after the command (``simplebits audit ... --seed 0``) in front of it.

    Typer only reads the callback's options before the command; users write them anywhere.
    Everything after a ``--`` stays where it is.
    """
    command = next((i for i, a in enumerate(args) if a in app_commands()), None)
    if command is None:
        return list(args)
    head, rest, moved = list(args[:command]), [], []
    tail = args[command:]
    i = 0
    while i < len(tail):
        arg = tail[i]
        if arg == "--":
            rest += tail[i:]
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            takes_value = GLOBAL_OPTIONS[name] and "=" not in arg
            moved += tail[i : i + 2] if takes_value else [arg]
            i += 2 if takes_value else 1
            continue
        rest.append(arg)
        i += 1
    return head + moved + rest


def app_commands() -> set[str]:
    """The names of the registered commands (``train-estimator`` included)."""
    return {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}


def main() -> None:
    """Console-script entry point: one-line errors unless ``--debug``."""
    sys.argv[1:] = hoist_global_options(sys.argv[1:])
    try:
        app(standalone_mode=False)
    except (typer.Exit, SystemExit) as stop:
        code = getattr(stop, "exit_code", getattr(stop, "code", 0))
        sys.exit(code or 0)
    except (typer.Abort, KeyboardInterrupt):
        # Resumable jobs (audit, train-simplifier) have saved their progress.
        err_console.print("interrupted (audit, train-simplifier and condense continue where they stopped when rerun)")
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 -- the one place errors become messages
        if options.debug or "--debug" in sys.argv:
            raise
        if hasattr(err, "show") and hasattr(err, "exit_code"):  # a usage error from typer's click
            err.show()
            sys.exit(err.exit_code)
        print(f"error: {err}", file=sys.stderr)  # one line, never wrapped
        sys.exit(2)


if __name__ == "__main__":
    main()
