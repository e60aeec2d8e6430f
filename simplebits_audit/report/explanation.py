"""The report of ``simplebits explain`` (and the demo): one section per explained image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write
from ..results import REPORT_FILE, answer_before_after, explained_name, load_arrays, read_explain_results
from ._html import codec_change, esc, figure_html, fmt, kept_title, label_facts, page, status_text, table_html
from .figures import panels_figure, topk_figure, tradeoff_figure
from .information import information_html
from .path import PATH_CSS, path_strip_html


def _summary_table(records: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r in records:
        pred = esc(answer_before_after(r, "→"))
        label = "" if r.get("label") is None else esc(r["label_name"])
        wrong = r.get("label") is not None and r["label"] != r["pred_before"]
        kept = '<span class="good">yes</span>' if r["kept"] else '<span class="bad">no</span>'
        rows.append([
            f'<a href="#img-{esc(r["id"])}">{esc(r["name"])}</a>',
            f'<span class="bad">{label}</span>' if wrong else label,
            esc(explained_name(r)), pred, kept,
            f"{fmt(r['bpd_before'])} → {fmt(r['bpd_after'])}",
            codec_change(r),
            esc(status_text(r)),
        ])
    header = ["image", "label", "target", "prediction before → after", "kept", "bits/dim before → after",
              "lossless files, bits/dim", "status"]
    return table_html(header, rows, raw=True)


def _image_section(out_dir: Path, index: int, record: dict[str, Any], map_keys: list[str]) -> str:
    arrays = load_arrays(out_dir, record)
    keys = [k for k in map_keys if f"map_{k}" in arrays]
    facts = [
        ["file", esc(record.get("path") or record["name"])],
        ["label", "—" if record.get("label") is None else esc(record["label_name"])],
        ["target (explained class)" if "explained" not in record else "explained (labels kept on their side)", esc(explained_name(record))],
        ["prediction", esc(answer_before_after(record, "→"))],
        ["p(target)", f"{fmt(record['prob_target_before'])} → {fmt(record['prob_target_after'])}"],
        *label_facts(record),
        ["bits", f"{record['bits_before']:.0f} → {record['bits_after']:.0f} ({100 * record['bits_retained']:.0f}% retained)"],
        ["bits per dim", f"{fmt(record['bpd_before'])} → {fmt(record['bpd_after'])}"],
        ["lossless files, bits/dim", codec_change(record)],
        [kept_title(record), "yes" if record["kept"] else '<span class="bad">no</span>'],
        ["lambda chosen", fmt(record["lambda"])],
        ["status", esc(status_text(record))],
    ]
    charts = (
        '<div style="display:flex;flex-wrap:wrap;gap:1rem">'
        f"{figure_html(tradeoff_figure(record), f'fig-{index}-tradeoff')}{figure_html(topk_figure(record), f'fig-{index}-topk')}</div>"
    )
    strip = path_strip_html(record, arrays)
    return (
        f'<h2 id="img-{esc(record["id"])}">{esc(record["name"])}</h2>'
        f"{table_html(['', ''], facts, raw=True)}"
        f"{figure_html(panels_figure(arrays, keys), f'fig-{index}-panels', modebar=False)}"
        f"{information_html(record, arrays, f'fig-{index}-info')}"
        f"{'<h3>From the simplest image to the original</h3>' + strip if strip else ''}{charts}"
    )


def render_explanation_report(out_dir: str | Path, records: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str:
    """The HTML page for explained images (records and arrays as written into ``out_dir``)."""
    out_dir = Path(out_dir)
    map_keys = list(settings.get("maps", ["simplebits", "bits_removed"]))
    timing = settings.get("seconds_per_image", {})
    timing_rows = [[esc(k), f"{v:.3f}"] for k, v in timing.items()]
    note = (
        '<p class="note">Each image was simplified: the simplest image (fewest bits under the estimator '
        f"<b>{esc(settings.get('estimator', '?'))}</b>) for which the classifier still gives the same answer. "
        "What survives is what the classifier needs. Maps: <b>SimpleBits</b> = "
        f"{esc(settings.get('attribution', 'ablation'))} map of the simplified image; <b>bits removed</b> = bits per "
        "pixel before minus after; others are Captum baselines.</p>"
    )
    body = note + _summary_table(records)
    if timing_rows:
        body += "<h3>Seconds per image</h3>" + table_html(["method", "seconds"], timing_rows, raw=True)
    sections = [_image_section(out_dir, i, r, map_keys) for i, r in enumerate(records)]
    body += "".join(sections)
    subtitle = f"{len(records)} image(s); model {settings.get('model', '?')}"
    if settings.get("head", "softmax") != "softmax":
        subtitle += f"; {settings['head']} head, threshold {settings.get('threshold', 0.5):g}"
    css = PATH_CSS if any('class="path-strip"' in s for s in sections) else ""
    return page(settings.get("title", "SimpleBits explanations"), body, subtitle=subtitle, css=css)


def write_explanation_report(out_dir: str | Path) -> Path:
    """(Re)build ``out_dir/report.html`` from ``out_dir/results.json`` without recomputing."""
    out_dir = Path(out_dir)
    settings, records = read_explain_results(out_dir)
    html_text = render_explanation_report(out_dir, records, settings)
    return atomic_write(out_dir / REPORT_FILE, lambda tmp: tmp.write_text(html_text, encoding="utf-8"))
