"""The report of a ``condense`` run: the condensed images per class with their bits, WebP and JPEG-XL sizes, the accuracy table.

Reads ``condense.json`` and the PNGs a run wrote (:mod:`simplebits_audit.results`, "condensation");
every class name and data name is escaped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from .._io import atomic_write
from ..results import CONDENSE_KINDS, REPORT_FILE, read_condense_results
from ..training.condensation import near_pass_summary
from ._html import esc, figure_html, fmt, img_tag, page, table_html

#: Section titles of the two kinds of condensed set.
KIND_TITLES = {"simplified": "Condensed with the bits term (simplified)", "without_bits": "Condensed without the bits term"}

CSS = """
.classrow { display: flex; align-items: flex-start; gap: .6rem; margin: .3rem 0; }
.classname { width: 7rem; font-weight: 600; font-size: .85rem; padding-top: .4rem; overflow-wrap: anywhere; }
.cimg { display: inline-block; text-align: center; font-size: .7rem; color: #555; margin-right: .2rem; }
.cimg img { width: 64px; height: 64px; image-rendering: pixelated; display: block; }
"""


def _accuracy_table(evaluation: dict[str, Any]) -> str:
    rows = []
    for name, row in evaluation.items():
        rows.append([
            esc(name), str(row["images"]),
            f'{100 * row["accuracy_mean"]:.1f} ± {100 * row["accuracy_std"]:.1f}',
            esc(", ".join(f"{100 * a:.1f}" for a in row["accuracies"])),
            fmt(row["bits_per_image"], 0), fmt(row["bpd"]), fmt(row["webp_bits_per_image"], 0), fmt(row["webp_bpd"]),
            fmt(row.get("jxl_bits_per_image"), 0), fmt(row.get("jxl_bpd")),  # absent in runs from before JPEG-XL
        ])
    header = ["training set", "images", "test accuracy % (mean ± std)", "per model", "bits / image (estimator)", "bits / dim",
              "WebP bits / image", "WebP bits / dim", "JPEG-XL bits / image", "JPEG-XL bits / dim"]
    return table_html(header, rows, raw=True)


def _gallery(out_dir: Path, kind: str, written: dict[str, Any], classes: list[str]) -> str:
    by_class: dict[int, list[str]] = {}
    for k, (file, label) in enumerate(zip(written["images"], written["labels"])):
        bits, webp = written["bits"][k], written["webp_bits"][k]
        jxl = written["jxl_bits"][k] if "jxl_bits" in written else None
        png = (out_dir / file).read_bytes()
        tag = img_tag(png, f"{classes[label] if label < len(classes) else label} #{len(by_class.get(label, []))}", css_class="px")
        sizes = f"{fmt(bits, 0)} b<br>WebP {fmt(webp, 0)} b" + ("" if jxl is None else f"<br>JPEG-XL {fmt(jxl, 0)} b")
        by_class.setdefault(label, []).append(f'<span class="cimg">{tag}{sizes}</span>')
    rows = [f'<div class="classrow"><div class="classname">{esc(classes[c] if c < len(classes) else c)}</div>'
            f'<div>{"".join(cells)}</div></div>'
            for c, cells in sorted(by_class.items())]
    return f"<h2>{esc(KIND_TITLES.get(kind, kind))}</h2>" + (
        f'<p class="sub">mean {written["bpd_mean"]:.3f} bits / dim (estimator), {written["webp_bpd_mean"]:.3f} (WebP lossless)'
        + ("" if written.get("jxl_bpd_mean") is None else f', {written["jxl_bpd_mean"]:.3f} (JPEG-XL lossless)')
        + f'; condensed in {fmt(written.get("seconds"), 0)} s. '
        + ("" if (near := near_pass_summary(written.get("settings") or {})) is None else esc(near[0].upper() + near[1:]) + ". ")
        + "Under each image: its bits (estimator) and its lossless file sizes in bits.</p>"
    ) + "".join(rows)


def _history_figure(sets: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    for kind, written in sets.items():
        history = written.get("history") or {}
        steps = list(range(1, len(history.get("match", [])) + 1))
        fig.add_trace(go.Scatter(x=steps, y=history.get("match", []), name=f"matching distance ({kind})", mode="lines"))
        fig.add_trace(go.Scatter(x=steps, y=history.get("bpd", []), name=f"bits / dim ({kind})",
            mode="lines", yaxis="y2", line={"dash": "dot"}))
    fig.update_layout(height=300, width=760, margin={"l": 50, "r": 50, "t": 20, "b": 40}, xaxis_title="outer step (fresh network)",
                      yaxis={"title": "matching distance"}, yaxis2={"title": "bits / dim", "overlaying": "y", "side": "right"},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def write_condense_report(out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` from the ``condense.json`` and PNGs a condense run wrote there."""
    out_dir = Path(out_dir)
    results = read_condense_results(out_dir)
    settings, data, sets = results["settings"], results["data"], results["sets"]
    classes = [str(c) for c in data["classes"]]
    body = [
        ('<p class="note">Each training set below taught fresh classifiers, which were then scored on real test images. '
         "The simplified set was condensed by gradient matching with a penalty on its bits; what it keeps is what the data set "
         "teaches a model (including what it teaches by accident).</p>"),
        "<h2>Accuracy of classifiers trained on each set</h2>",
        _accuracy_table(results["evaluation"]),
        (f'<p class="sub">{settings["n_models"]} classifiers ({esc(settings["arch"])}, {settings["epochs"]} epochs) per row, tested on '
         f'{data["test_images"]} images of {esc(data["test"])}. Real training images: {data["real_bpd_mean"]:.3f} bits / dim (estimator), '
         f'{data["real_webp_bpd_mean"]:.3f} (WebP)'
         + ("" if data.get("real_jxl_bpd_mean") is None else f', {data["real_jxl_bpd_mean"]:.3f} (JPEG-XL)') + ".</p>"),
    ]
    for kind in CONDENSE_KINDS:
        if kind in sets:
            body.append(_gallery(out_dir, kind, sets[kind], classes))
    body += ["<h2>Condensation</h2>", figure_html(_history_figure(sets), "condense-history")]
    body.append(table_html(["setting", "value"], [[k, str(v)] for k, v in settings.items()]))
    if data.get("skipped"):
        body.append(f'<p class="note">{len(data["skipped"])} unreadable or unlabelled images skipped: '
                    f'{esc(", ".join(data["skipped"][:20]))}</p>')
    title = f"Condensed data set: {data['name']}"
    subtitle = (f"{settings['images_per_class']} images per class, {len(classes)} classes, lam {settings['lam']:g}, "
                f"estimator {settings['estimator']}, from {data['train_images']} training images")
    text = page(title, "".join(body), subtitle=subtitle, css=CSS)
    return atomic_write(out_dir / REPORT_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


__all__ = ["KIND_TITLES", "write_condense_report"]
