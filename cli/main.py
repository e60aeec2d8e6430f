"""The ``simplebits`` command line: a thin typer layer over the library.

Every command parses arguments, calls one library function and prints its result. Errors are one
line and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

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
    images: list[Path] = typer.Argument(..., help="Image files (any format Pillow reads)."),
    estimator: Optional[str] = typer.Option(None, "--estimator", "-e", help="Estimator name or checkpoint file (default: the package default)."),
    grayscale: bool = typer.Option(False, help="Rate the images as grayscale."),
) -> None:
    """How many bits each image costs under an estimator, beside PNG and WebP lossless.

    Example: ``simplebits bits photo.png --estimator analytic``.
    """
    import torch

    from simplebits_audit import load_estimator
    from simplebits_audit.codecs import codec_bpd
    from simplebits_audit.images import load_image

    pixels = [load_image(p, grayscale=grayscale, name="IMAGES") for p in images]  # all checked before any work
    est = load_estimator(estimator, device=options.device)
    table = Table("image", "H x W", "bits", "bpd", "PNG bpd", "WebP bpd")
    with torch.no_grad():
        for path, x in zip(images, pixels):
            x = x.to(options.device)
            b = float(est.bits(x)[0])
            table.add_row(str(path), f"{x.shape[2]} x {x.shape[3]}", f"{b:.0f}", f"{b / x[0].numel():.3f}", f"{float(codec_bpd(x, 'png')[0]):.3f}", f"{float(codec_bpd(x, 'webp')[0]):.3f}")
    console.print(table)


@app.command("train-estimator")
def train_estimator_cmd(
    image_dir: Path = typer.Argument(..., help="Folder of photos; ~15% of whole photos are held out for evaluation."),
    arch: str = typer.Option("pixelcnn", help="Architecture: pixelcnn or glow."),
    out: Path = typer.Option(..., help="Checkpoint to write (a model card goes beside it as .json)."),
    steps: int = typer.Option(4000, help="Optimisation steps."),
    batch_size: int = typer.Option(64, help="Crops per step."),
    crop_size: int = typer.Option(32, help="Side of the square training crops."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (cosine decay)."),
    checkpoint_every: int = typer.Option(200, help="Steps between checkpoints and held-out evaluations."),
    resume: bool = typer.Option(False, help="Continue from <out>.state if it exists."),
) -> None:
    """Train a bit estimator on random multi-scale crops (with flips) of your photos.

    Example: ``simplebits train-estimator photos/ --arch pixelcnn --out my.pt --steps 2000``;
    interrupted? rerun with ``--resume``. Load the result with ``--estimator my.pt``.
    """
    from simplebits_audit.estimators.training import TrainingConfig, train_estimator

    config = TrainingConfig(arch=arch, steps=steps, batch_size=batch_size, crop_size=crop_size, lr=lr, checkpoint_every=checkpoint_every, seed=options.seed)
    card = train_estimator(out, image_dir, config, resume=resume, show_progress=not options.quiet)
    console.print(f"held-out bpd {card['held_out_bpd']:.3f} (WebP lossless {card['held_out_webp_bpd']:.3f}); wrote {out}")


@app.command()
def demo(out: Path = typer.Option(Path("simplebits-demo"), help="Folder for the demo's outputs.")) -> None:
    """The main job on the embedded default: no arguments needed.

    Example: ``simplebits demo --out demo/``.
    """
    from simplebits_audit.demo import run_demo

    run_demo(out, device=options.device, seed=options.seed, show_progress=not options.quiet, console=None if options.quiet else console)


def main() -> None:
    """Console-script entry point: one-line errors unless ``--debug``."""
    try:
        app(standalone_mode=False)
    except (typer.Exit, SystemExit) as stop:
        code = getattr(stop, "exit_code", getattr(stop, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        err_console.print("aborted")
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
