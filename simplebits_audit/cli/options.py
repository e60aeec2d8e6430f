"""The command line's options, each declared once.

* the global options (``--device``, ``--seed``, ``--quiet``, ``--debug``): :func:`global_options`,
  read by the commands through :data:`session` and :func:`run_options`;
* options several commands take (``--estimator``, ``--labels``, ``--target``, ...): one
  ``typer.Option`` constant each;
* option groups (:mod:`~simplebits_audit.cli.groups`): the model file (:func:`model_file_group`),
  the preprocessing (:func:`preprocessing_group`, :func:`pixels_group`), the output head
  (:func:`head_group`), what the explaining commands tell the jobs about the model
  (:func:`model_group`) and the engine (:func:`engine_group`). A group parses and checks its
  options and returns what they mean, mostly a job option object of :mod:`simplebits_audit.jobs.options`.

A new option for several commands goes into its group here (and, if a job takes it, into the
job's option group); help texts state library defaults as ``{library:KEY}``
(:mod:`~simplebits_audit.cli.defaults`). The library is imported inside the functions, so that
``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from .defaults import given
from .groups import uses

if TYPE_CHECKING:
    import torch

    from simplebits_audit.jobs.options import ExplainOptions, ModelOptions, RunOptions
    from simplebits_audit.preprocessing import Preprocessing

# soft_wrap: a line (a path, a one-line error) is never broken at the terminal's width; tables still fit it
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


# ------------------------------------------------------------------------------------------
# The global options: before or after the command.


@dataclass
class Session:
    """The global options of this invocation."""

    device: str = "cpu"
    seed: int = 0
    quiet: bool = False
    debug: bool = False


session = Session()

#: global options (:func:`global_options`) that may also come after the command; True: the option takes a value
GLOBAL_OPTIONS = {"--device": True, "--seed": True, "--quiet": False, "-q": False, "--debug": False, "--no-debug": False}


def global_options(
    device: str = typer.Option("cpu", help="Torch device: cpu, cuda, cuda:1, ..."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same result on the same machine."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summaries, only results."),
    debug: bool = typer.Option(False, help="Show full tracebacks on errors."),
) -> None:
    """Explain and audit PyTorch image classifiers by simplification (SimpleBits)."""
    import torch

    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise typer.BadParameter(f"unknown device {device!r}", param_hint="--device") from None
    # checked here: torch's own messages name no option
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter(f"{device!r}: this torch finds no CUDA device (torch.cuda.is_available() is False)",
                                 param_hint="--device")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise typer.BadParameter(f"{device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)", param_hint="--device")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise typer.BadParameter(f"{device!r}: this torch finds no MPS device", param_hint="--device")
    session.device, session.seed, session.quiet, session.debug = device, seed, quiet, debug


def process_device() -> torch.device:
    """``--device`` for this process: under torchrun each rank takes its own GPU."""
    from simplebits_audit.jobs.distributed import rank_device

    return rank_device(session.device)


def run_options(device: str | torch.device | None = None) -> RunOptions:
    """How a job runs: on ``device`` (default ``--device``), seeded by ``--seed``, with progress unless ``--quiet``."""
    from simplebits_audit.jobs.options import RunOptions

    return RunOptions(device=session.device if device is None else device, seed=session.seed, show_progress=not session.quiet)


# ------------------------------------------------------------------------------------------
# Options several commands take.

ESTIMATOR = typer.Option(None, "--estimator", "-e", help="Bit estimator name or checkpoint file (default: the package default).")
LABELS = typer.Option(None, help="Class names: a text file (one per line) or JSON (list or {\"0\": name}).")
TARGET = typer.Option(None, help="Class index to explain (default: the prediction).")
TARGET_NAME = typer.Option(None, help="Class to explain, by name (needs --labels, unless the model declares its class names, "
                            "as testbed:NAME models do).")
ATTRIBUTION = typer.Option(
    None, help="SimpleBits map: auto (the mask of the default engine), mask, retained, ablation, survival, bits_removed or kept; "
               "with --engine factorised also colour, detail or region (default {library:explain.attribution}).")
IMAGES = typer.Argument(..., help="Image files (any format Pillow reads), or testbed images: testbed:NAME:INDEX "
                        "(image INDEX of the testbed's test split, as an audit of testbed:NAME at its default --seed and "
                        "--testbed-n numbers them).")
TESTBED_N = typer.Option(None, help="Number of images when DATA is a testbed (default: the whole split the command reads).")


def out_option(default: Path, help: str) -> Any:
    """``--out`` / ``-o``: the command's output folder or file."""
    return typer.Option(default, "--out", "-o", help=help)


def comma_list(text: str | None) -> list[str]:
    """The names in a comma-separated list (none without ``text``)."""
    return [m.strip() for m in text.split(",") if m.strip()] if text else []


def read_labels(path: Path | None) -> list[str] | None:
    """The class names in ``path`` (``--labels``), or None."""
    from simplebits_audit.preprocessing import load_labels

    return None if path is None else load_labels(path)


# ------------------------------------------------------------------------------------------
# The user's model.


def load_user_model(spec: str, weights: Path | None, trust_pickle: bool, num_classes: int | None, device: Any) -> Any:
    """The user's model, loaded by the library (:func:`~simplebits_audit.models.load_model`) onto ``device``."""
    from simplebits_audit.models import load_model

    return load_model(spec, weights=weights, trust_pickle=trust_pickle, num_classes=num_classes, device=device)


@dataclass(frozen=True)
class ModelFile:
    """The model the user named (``--model``, ``--weights``, ...), loaded when the command needs it."""

    spec: str
    weights: Path | None = None
    trust_pickle: bool = False
    num_classes: int | None = None

    def load(self, device: Any = None) -> Any:
        """The model on ``device`` (default ``--device``)."""
        return load_user_model(self.spec, self.weights, self.trust_pickle, self.num_classes, device or session.device)

    @property
    def described(self) -> str:
        """``--model``, and its weights file when one was given."""
        return self.spec if self.weights is None else f"{self.spec} (weights {self.weights})"


def model_file_group(
    model: str = typer.Option(..., "--model", "-m",
        help="TorchScript file, .pt2 export, 'package.module:factory', a torchvision name (e.g. resnet18) "
             "or testbed:NAME (a shipped testbed classifier)."),
    weights: Path | None = typer.Option(None, help="State dict for a factory or torchvision --model (loaded with weights_only=True)."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle",
        help="Allow a fully pickled model file: runs code from the file; only for files you trust."),
    num_classes: int | None = typer.Option(None, help="Output classes of a torchvision architecture (default: read off --weights)."),
) -> ModelFile:
    """The model options: what to load."""
    return ModelFile(model, weights, trust_pickle, num_classes)


# ------------------------------------------------------------------------------------------
# Preprocessing: what the model expects of an image.

SIZE = typer.Option(None, help="Resize the shorter image side to this many pixels.")
CROP = typer.Option(None, help="Centre-crop to CROP x CROP after resizing.")
GRAYSCALE = typer.Option(False, "--grayscale", help="Read images with one channel.")


def _floats(text: str | None, name: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected numbers separated by commas, got {text!r}", param_hint=name) from None


def preprocessing_group(
    size: int | None = SIZE,
    crop: int | None = CROP,
    mean: str | None = typer.Option(None, help="Normalisation mean per channel, e.g. 0.485,0.456,0.406."),
    std: str | None = typer.Option(None, help="Normalisation std per channel, e.g. 0.229,0.224,0.225."),
    preset: str | None = typer.Option(None, help="Normalisation preset instead of --mean/--std: imagenet or none."),
    grayscale: bool = GRAYSCALE,
) -> Preprocessing:
    """Resize, crop and normalisation."""
    from simplebits_audit.preprocessing import Preprocessing

    if preset is not None:
        if mean is not None or std is not None:
            raise typer.BadParameter("give --preset or --mean/--std, not both", param_hint="--preset")
        return Preprocessing.from_preset(preset, size=size, crop=crop, grayscale=grayscale)
    return Preprocessing(size=size, crop=crop, mean=_floats(mean, "--mean"), std=_floats(std, "--std"), grayscale=grayscale)


def pixels_group(size: int | None = SIZE, crop: int | None = CROP, grayscale: bool = GRAYSCALE) -> Preprocessing:
    """Resize and crop, without normalisation (for commands that train their own networks on pixels)."""
    from simplebits_audit.preprocessing import Preprocessing

    return Preprocessing(size=size, crop=crop, grayscale=grayscale)


# ------------------------------------------------------------------------------------------
# The output head, and what the explaining commands tell the jobs about the model.


def head_group(
    head: str | None = typer.Option(
        None, "--head", metavar="[{library:heads}]",
        help="The model's output head (default {library:simplify.head}): softmax over classes, or sigmoid, one logit per label "
             "(a binary classifier with one logit, or multi-label); explanation records then list each label's probability before "
             "and after."),
    threshold: float | None = typer.Option(
        None, help="With --head sigmoid: a label is on when its probability is at least this (default {library:simplify.threshold})."),
) -> dict[str, Any]:
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


@uses(head_options=head_group, prep=preprocessing_group)
def model_group(head_options: dict, prep: Preprocessing, labels: Path | None = LABELS) -> ModelOptions:
    """The jobs' :class:`~simplebits_audit.jobs.options.ModelOptions`: head, preprocessing, class names."""
    from simplebits_audit.jobs.options import ModelOptions

    return ModelOptions(preprocessing=prep, class_names=read_labels(labels), **head_options)


# ------------------------------------------------------------------------------------------
# The engine: what the explaining commands (explain, compare, audit) share.


@dataclass(frozen=True)
class Engine:
    """The engine options of an explaining command."""

    steps: int | None = None
    estimator: str | None = None
    baseline_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the simplification engine (``parameterization``), None: the library's default
    engine: str | None = None

    def simplify_options(self, **fields: Any) -> dict[str, Any]:
        """The primary explainer's options given on the command line: ``fields``, the steps and the engine (those given)."""
        return given(**fields, steps=self.steps, parameterization=self.engine)

    def explain_options(self, **fields: Any) -> ExplainOptions:
        """The jobs' :class:`~simplebits_audit.jobs.options.ExplainOptions`: this engine's estimator and baseline options, and
        ``fields`` (those given)."""
        from simplebits_audit.jobs.options import ExplainOptions

        return ExplainOptions(estimator=self.estimator, baseline_options=self.baseline_options, **given(**fields))


def engine_group(
    steps: int | None = typer.Option(
        None, help="Optimisation steps of the simplification (default {library:simplify.steps}, the default engine's)."),
    gradcam_layer: str | None = typer.Option(
        None, "--gradcam-layer", metavar="NAME",
        help="The layer Grad-CAM reads, as a dotted module name (e.g. layer4, features.7, or a ViT block such as "
             "encoder.layers.encoder_layer_11.ln_1); default: the last Conv2d. The input stem and a patch embedding are refused."),
    estimator: str | None = ESTIMATOR,
    engine: str | None = typer.Option(
        None, "--engine", metavar="[{library:simplify.engines}]",
        help="What the simplification optimises (default {library:simplify.engine}). factorised: colour, fine detail and region "
             "separately; records and the report then carry one map per axis and "
             "the information profile (which information the model needed). latent needs --estimator glow."),
) -> Engine:
    """Steps, the bit estimator, per-baseline options, the engine (only those given)."""
    return Engine(steps, estimator, {"gradcam": {"layer": gradcam_layer}} if gradcam_layer else {}, engine)


__all__ = [
    "ATTRIBUTION", "CROP", "ESTIMATOR", "GLOBAL_OPTIONS", "GRAYSCALE", "IMAGES", "LABELS", "SIZE", "TARGET", "TARGET_NAME", "TESTBED_N",
    "Engine", "ModelFile", "Session", "comma_list", "console", "engine_group", "err_console", "global_options", "head_group",
    "load_user_model", "model_file_group", "model_group", "out_option", "pixels_group", "preprocessing_group", "process_device",
    "read_labels", "run_options", "session",
]
