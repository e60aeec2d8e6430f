"""The report of ``simplebits train``: accuracy against input bits over a curve of budgets (or lambdas), and what each run keeps.

Built from ``tradeoff.json`` and ``examples.npz`` only (:func:`~simplebits_audit.results.read_tradeoff`),
so ``simplebits report DIR`` rebuilds it without retraining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from .._io import atomic_write
from ..results import REPORT_FILE, accuracy_delta, read_tradeoff, removal_order, strength_label, strength_name
from ._html import esc, figure_html, fmt, img_tag, page, png_bytes, table_html

#: Side (pixels) of each example thumbnail.
THUMBNAIL_SIDE = 96


def curve_figure(record: dict[str, Any]) -> go.Figure:
    """Validation accuracy (simplified and original images) against the share of bits kept, one marker per run."""
    points = sorted(record["points"], key=removal_order)
    fig = go.Figure()
    x = [p.get("val_bits_kept") for p in points]
    labels = [strength_label(p) for p in points]
    fig.add_trace(go.Scatter(x=x, y=[p.get("val_accuracy_simplified") for p in points], mode="lines+markers+text", text=labels,
                             textposition="top center", name="accuracy on simplified images"))
    fig.add_trace(go.Scatter(x=x, y=[p.get("val_accuracy_original") for p in points], mode="markers", name="accuracy on original images",
                             marker={"symbol": "x"}))
    for key, name, symbol in (("webp_kept", "WebP", "diamond-open"), ("jxl_kept", "JPEG-XL", "square-open")):
        if all(p.get(key) is not None for p in points):
            fig.add_trace(go.Scatter(x=[p[key] for p in points], y=[p.get("val_accuracy_simplified") for p in points], mode="markers",
                                     name=f"same, against {name} size kept", marker={"symbol": symbol}))
    fig.update_layout(xaxis_title="share of the original's bits kept (validation mean)", yaxis_title="validation accuracy",
                      height=420, margin={"l": 60, "r": 20, "t": 30, "b": 50}, legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(range=[0, 1.05])
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    return fig


def _thumb(array: np.ndarray, alt: str) -> str:
    from PIL import Image

    image = array  # (H, W) or (H, W, 3) uint8
    scale = max(1, THUMBNAIL_SIDE // max(image.shape[:2]))
    big = np.asarray(Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.Resampling.NEAREST))
    return img_tag(png_bytes(big), alt, width=min(THUMBNAIL_SIDE, big.shape[1]))


def _examples_html(record: dict[str, Any], examples: dict[str, np.ndarray]) -> str:
    if "original" not in examples or not len(examples["original"]):
        return "<p class=\"note\">No examples were saved.</p>"
    rows = [["original"] + [_thumb(a, "original") for a in examples["original"]]]
    for point in sorted(record["points"], key=removal_order):
        key, label = strength_name(point["lam"], point.get("budget")), strength_label(point)
        if key in examples:
            rows.append([label] + [_thumb(a, f"simplified, {label}") for a in examples[key]])
    body = "".join("<tr>" + f"<th>{esc(r[0])}</th>" + "".join(f"<td>{c}</td>" for c in r[1:]) + "</tr>" for r in rows)
    return f"<table class=\"examples\"><tbody>{body}</tbody></table>"


def tradeoff_page(record: dict[str, Any], examples: dict[str, np.ndarray]) -> str:
    """The whole report page (a string of self-contained HTML)."""
    settings = record["settings"]
    has_masks = record.get("has_masks", False)
    per_label = " per label" if settings.get("head") == "sigmoid" else ""  # a sigmoid head's accuracy: the mean per-label accuracy
    header = ["run", "λ (final)", f"accuracy{per_label} (simplified)", "Δ ± s.e. (points)", f"accuracy{per_label} (original)",
              "bits kept", "WebP kept",
              "JPEG-XL kept", "bpd simplified", "bpd original", "minutes"]
    if has_masks:
        header += ["bits inside mask", "mask share", "inside / share"]
    rows = []
    for p in sorted(record["points"], key=removal_order):
        minutes = p.get("training_seconds")
        row = [strength_label(p), f"{p['lam']:.3g}", fmt(p.get("val_accuracy_simplified")),
               accuracy_delta(record, p), fmt(p.get("val_accuracy_original")),
               fmt(p.get("val_bits_kept")),
               fmt(p.get("webp_kept")), fmt(p.get("jxl_kept")), fmt(p.get("val_bpd_simplified")), fmt(p.get("val_bpd_original")),
               fmt(minutes / 60, 1) if isinstance(minutes, (int, float)) else "—"]
        if has_masks:
            row += [fmt(p.get("bits_inside_mask")), fmt(p.get("mask_share")), fmt(p.get("inside_ratio"), 2)]
        rows.append(row)
    by_name = {strength_name(p["lam"], p.get("budget")): p for p in record["points"]}
    best, reference = by_name.get(_name(record.get("simplest_within_2pt"))), by_name.get(_name(record.get("reference")))
    verdict = (f"The simplest inputs within 2 accuracy points of {strength_label(reference)}: {strength_label(best)}."
               if best is not None and reference is not None else "No run stayed within 2 accuracy points of the reference.")
    body = (
        f"<p class=\"note\">{esc(verdict)} A classifier and a simplifier were trained together once per run on "
        f"{esc(settings.get('training_images'))} images of {esc(settings.get('data'))} ({esc(settings.get('arch'))}); scores are on "
        f"{esc(settings.get('validation_images'))} validation images. Δ: a run's accuracy minus the reference run's, with the "
        "standard error of that difference over the same images (a difference within about two standard errors of 0 may be chance). "
        "Accuracy on original images shows what the classifier does when the simplifier is skipped.</p>"
        "<h2>Accuracy against input bits</h2>" + figure_html(curve_figure(record), "tradeoff-curve")
        + "<h2>Per run</h2>" + table_html(header, rows)
        + ("<p class=\"sub\">bits inside mask: share of the simplified image's bits (the estimator's bits map) inside the "
           "ground-truth mask; above the mask share means the simplifier keeps the evidence and drops the rest (where the mask covers "
           "only part of the evidence, as digits-stripes' masks cover the digit and not the stripes, only that part).</p>"
           if has_masks else "")
        + "<h2>Simplified validation images</h2>" + _examples_html(record, examples)
    )
    return page("Training with simplification", body, subtitle=f"{settings.get('data')} · {_sweep(settings)}",
                css=".examples td, .examples th { padding: .15rem; }")


def _name(value: Any) -> str | None:
    """A record's run name (older records stored the reference and the simplest point as a lambda)."""
    return strength_name(value) if isinstance(value, (int, float)) else value


def _sweep(settings: dict[str, Any]) -> str:
    return f"λ ∈ {settings.get('lams')}" if settings.get("budgets") is None else f"budgets {settings.get('budgets')}"


def write_tradeoff_report(out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` from the folder's ``tradeoff.json`` and ``examples.npz`` (atomically)."""
    out_dir = Path(out_dir)
    record, examples = read_tradeoff(out_dir)
    text = tradeoff_page(record, examples)
    return atomic_write(out_dir / REPORT_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


__all__ = ["curve_figure", "tradeoff_page", "write_tradeoff_report"]
