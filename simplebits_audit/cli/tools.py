"""The small commands: ``report``, ``estimators``, ``bits``, ``demo``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from .defaults import given
from .options import console, session


def report(folder: Path = typer.Argument(..., help="Output folder of an explain, demo, audit or train run.")) -> None:
    """Rebuild a run's report.html from its results, without recomputing.

    Example: ``simplebits report simplebits-explain/``.
    """
    from simplebits_audit.report import build_report

    console.print(f"report: {build_report(folder)}")


def estimators(name: str | None = typer.Argument(None, help="Show this estimator's model card.")) -> None:
    """List the bit estimators, or show one's model card.

    Examples: ``simplebits estimators``; ``simplebits estimators pixelcnn``.
    """
    from simplebits_audit.estimators import DEFAULT_ESTIMATOR, list_estimators, model_card

    if name is not None:
        card = {k: v for k, v in model_card(name).items() if k != "history"}
        console.print_json(json.dumps(card))
        return
    table = Table("name", "default", "held-out bpd", "held-out WebP bpd", "held-out JPEG-XL (effort 9) bpd", "parameters")
    for est in list_estimators():
        card = model_card(est)
        fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else "-"  # noqa: E731
        table.add_row(est, "yes" if est == DEFAULT_ESTIMATOR else "",
            fmt(card.get("held_out_bpd")), fmt(card.get("held_out_webp_bpd")), fmt(card.get("held_out_jxl_bpd")),
            str(card.get("parameters", 0)))
    console.print(table)


def bits(
    images: list[Path] | None = typer.Argument(None, help="Image files (any format Pillow reads)."),
    estimator: str | None = typer.Option(None, "--estimator", "-e",
        help="Estimator name or checkpoint file (default: the package default)."),
    grayscale: bool = typer.Option(False, help="Rate (and --encode) the images as grayscale; by default each file as it is stored: "
        "grey files on one plane, the others as RGB."),
    encode: Path | None = typer.Option(None, "--encode", help="Compress the one IMAGE into this file with the estimator as a real codec."),
    decode: Path | None = typer.Option(None, "--decode", help="Restore the image of a file written by --encode (needs --out)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="With --decode: the PNG to write."),
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
        f = encode_file(images[0], encode, estimator=estimator, grayscale=grayscale or None)
        console.print(f"wrote {f.path}: {f.bytes * 8} bits ({f.bytes} bytes, header {f.header_bytes})"
            f"; the estimator's bits {f.estimator_bits:.0f}")
        return
    table = Table("image", "H x W", "bits", "bpd", "PNG bpd", "WebP bpd", "JPEG-XL bpd")
    for r in measure_bits(images, estimator=estimator, grayscale=grayscale or None, device=session.device):
        table.add_row(r.path, f"{r.height} x {r.width}", f"{r.bits:.0f}", f"{r.bpd:.3f}",
            f"{r.png_bpd:.3f}", f"{r.webp_bpd:.3f}", f"{r.jxl_bpd:.3f}")
    console.print(table)


def demo(out: Path | None = typer.Option(None, help="Folder for the demo's outputs (default {library:demo.out}).")) -> None:
    """The main job on the embedded default: no arguments needed.

    Example: ``simplebits demo --out demo/``.
    """
    from simplebits_audit.jobs.demo import run_demo

    run_demo(**given(out=out), device=session.device, seed=session.seed,
        show_progress=not session.quiet, console=None if session.quiet else console)


__all__ = ["bits", "demo", "estimators", "report"]
