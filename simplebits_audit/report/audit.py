"""The report of ``simplebits audit``: confusion matrix, per-class bits, shortcut check, galleries.

Built from ``summary.json``, ``results.jsonl`` and the per-image PNGs only, so ``simplebits report
DIR`` rebuilds it without recomputing. Images appear as small inline PNGs (the page stays one
file); the gallery is sortable by bits retained, confidence, and the other columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from .._io import atomic_write
from ..results import REPORT_FILE, answer_before_after, explained_name, load_arrays, map_title, read_audit
from ._html import (
    codec_change,
    esc,
    figure_html,
    fmt,
    img_tag,
    kept_note,
    label_facts,
    page,
    plot_text,
    png_bytes,
    status_text,
    table_html,
)
from .information import audit_information_html, error_type, kept_shares, profile_sentence
from .path import PATH_CSS, path_strip_html

#: Images shown in the gallery and detail sections (the rest stay in results.jsonl).
MAX_GALLERY = 400


def _png(out_dir: Path, rel: str, side: int = 128) -> bytes:
    """The PNG at ``rel``, shrunk to at most ``side`` pixels per side (keeps the page small for large images)."""
    import numpy as np
    from PIL import Image

    with Image.open(out_dir / rel) as im:
        if max(im.size) <= side:
            return (out_dir / rel).read_bytes()
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
        return png_bytes(np.asarray(im.convert("RGB")))


def _confusion_figure(summary: dict[str, Any]) -> go.Figure:
    names = summary["class_names"] or [str(i) for i in range(len(summary["confusion_matrix"]))]
    if len(set(names)) < len(names):  # category axes would merge duplicate names
        names = [f"{i}: {n}" for i, n in enumerate(names)]
    names = [plot_text(n) for n in names]
    fig = go.Figure(go.Heatmap(
        z=summary["confusion_matrix"], x=names, y=names, colorscale="Blues",
        texttemplate="%{z}" if len(names) <= 30 else None,  # counts in the cells only while they stay legible
        hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
    ))
    fig.update_layout(height=420, width=480, margin=dict(l=60, r=10, t=10, b=60), xaxis_title="predicted", yaxis_title="true")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return fig


def _per_class_figure(summary: dict[str, Any]) -> go.Figure:
    classes = list(summary["per_class"])
    stats = summary["per_class"]
    fig = go.Figure([
        go.Bar(x=[plot_text(c) for c in classes], y=[stats[c]["bpd_before"] for c in classes], name="original"),
        go.Bar(x=[plot_text(c) for c in classes], y=[stats[c]["bpd_after"] for c in classes], name="simplified"),
    ])
    fig.update_layout(barmode="group", height=320, width=560, yaxis_title="bits per dim (mean)", margin=dict(l=60, r=10, t=30, b=60),
                      legend=dict(orientation="h", y=1.12))
    fig.update_xaxes(type="category")
    return fig


def _overview(summary: dict[str, Any]) -> str:
    t = summary["timing"]
    rows = [
        ["data", esc(summary["data"])],
        ["images", f"{summary['items']} ({summary['readable']} readable, {len(summary['skipped'])} skipped)"],
        ["accuracy", "—" if summary["accuracy"] is None else f"{100 * summary['accuracy']:.1f}%"],
        ["selected / explanations", f"{summary['selected_images']} / {summary['explained']}"],
        ["answer kept after simplification", "—" if summary["kept_rate"] is None else f"{100 * summary['kept_rate']:.1f}%"
         + kept_note(summary.get("not_prediction_targets") or 0, summary["explained"])],
        ["bits per dim, original → simplified", f"{fmt(summary['bpd_before'])} → {fmt(summary['bpd_after'])}"],
        ["bits retained (mean)", "—" if summary["bits_retained"] is None else f"{100 * summary['bits_retained']:.1f}%"],
        ["seconds: predict / simplify / write",
         f"{t['predict_seconds']:.1f} / {t['simplify_seconds']:.1f} / {t['write_seconds']:.1f} (processes: {t['world_size']})"],
    ]
    return table_html(["", ""], rows, raw=True)


def _shortcut(summary: dict[str, Any]) -> str:
    s = summary.get("shortcut")
    if not s or any(v is None for v in s.values()):
        return ""
    return (
        "<h2>Where the retained information sits (ground-truth mask)</h2><p class=\"note\">"
        f"The mask (e.g. a shortcut marker) covers <b>{100 * s['mask_area_share']:.1f}%</b> of each image and held "
        f"<b>{100 * s['mask_bits_share_before']:.1f}%</b> of the original bits. After simplification it holds "
        f"<b>{100 * s['mask_bits_share_after']:.1f}%</b> of the retained bits "
        f"({s['retained_bits_enrichment']:.1f}x its area share), and <b>{100 * s['mask_attribution_share']:.1f}%</b> of the "
        f"SimpleBits attribution. Mean over {s['n']} explanations. A share well above the area share means the "
        "classifier keeps what is inside the mask: if the mask is a shortcut, it uses the shortcut.</p>"
    )


def _gallery(out_dir: Path, records: Sequence[dict[str, Any]]) -> str:
    head = ["image", "original", "simplified", "SimpleBits", "label", "prediction", "explained", "confidence", "bits retained", "kept"]
    rows = []
    for r in records:
        wrong = error_type(r) == "misclassified"  # a multi-label record's top label is not scored
        cells = [
            (f'<a href="#d-{esc(r["id"])}">{esc(r["name"])}</a>', esc(r["name"])),
            (img_tag(_png(out_dir, r["files"]["original"], 64), "original", width=64), ""),
            (img_tag(_png(out_dir, r["files"]["simplified"], 64), "simplified", width=64), ""),
            (img_tag(_png(out_dir, r["files"]["maps"]["simplebits"], 64), "SimpleBits map", width=64), ""),
            (esc(r["label_name"] or "—"), esc(r["label_name"] or "")),
            (f'<span class="{"bad" if wrong else ""}">{esc(r["pred_before_name"])}</span>', esc(r["pred_before_name"])),
            (esc(f"{explained_name(r)} ({r['explain']})"), esc(explained_name(r))),
            (f"{r['confidence']:.3f}", f"{r['confidence']:.6f}"),
            (f"{100 * r['bits_retained']:.1f}%", f"{r['bits_retained']:.6f}"),
            ("yes" if r["kept"] else '<span class="bad">no</span>', "1" if r["kept"] else "0"),
        ]
        rows.append("<tr>" + "".join(f'<td data-v="{v}">{html}</td>' for html, v in cells) + "</tr>")
    header = "".join(f'<th class="sortable" onclick="sortTable(this)">{esc(h)}</th>' for h in head)
    return f'<table id="gallery"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _detail(out_dir: Path, r: dict[str, Any]) -> str:
    panels = [("original", r["files"]["original"]), ("simplified", r["files"]["simplified"])]
    panels += [(map_title(k), v) for k, v in r["files"]["maps"].items()]
    panels += [(f"{axis} kept", v) for axis, v in r["files"].get("axes", {}).items()]
    images = "".join(
        f'<figure style="display:inline-block;margin:0 .4rem">{img_tag(_png(out_dir, rel), title, width=128)}'
        f'<figcaption>{esc(title)}</figcaption></figure>'
        for title, rel in panels
    )
    top = ", ".join(f"{esc(n)} {p:.2f}" for _, n, p in r["top_before"])
    top_after = ", ".join(f"{esc(n)} {p:.2f}" for _, n, p in r["top_after"])
    facts = [
        ["file", esc(r.get("path") or r["name"])],
        ["label / prediction", f"{esc(r['label_name'] or '—')} / {esc(answer_before_after(r, '→'))}"],
        ["explained class",
         f"{esc(explained_name(r))} ({esc(r['explain'])}); p {r['prob_target_before']:.3f} → {r['prob_target_after']:.3f}"],
        ["top probabilities before / after", f"{top} / {top_after}"],
        *label_facts(r),
        ["bits per dim", f"{r['bpd_before']:.3f} → {r['bpd_after']:.3f}" + (f" ({codecs})" if (codecs := codec_change(r)) else "")],
        ["lambda, status", f"{r['lambda']:.3f}, {esc(status_text(r))}"],
    ]
    strip = path_strip_html(r, load_arrays(out_dir, r), side=64, width=64) if "path_labels" in r else ""
    if "information" in r:  # a factorised run: what the image kept, in a sentence, and the profile's numbers
        facts.append(["which information", f"{esc(profile_sentence(kept_shares(r), r['information'].get('region', 'whole image')))}"])
    return f'<h3 id="d-{esc(r["id"])}">{esc(r["name"])} — {esc(r["explain"])}</h3>{images}{strip}{table_html(["", ""], facts, raw=True)}'


def render_audit_report(out_dir: str | Path, summary: dict[str, Any], records: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str:
    out_dir = Path(out_dir)
    shown = list(records[:MAX_GALLERY])
    body = _overview(summary) + _shortcut(summary) + audit_information_html(summary)
    charts = []
    if summary.get("confusion_matrix"):
        charts.append("<div><h3>Confusion matrix</h3>" + figure_html(_confusion_figure(summary), "fig-confusion") + "</div>")
    if summary.get("per_class"):
        charts.append("<div><h3>Bits per class (explained images)</h3>"
            + figure_html(_per_class_figure(summary), "fig-per-class") + "</div>")
    body += '<div style="display:flex;flex-wrap:wrap;gap:1rem">' + "".join(charts) + "</div>"
    if summary.get("per_class"):
        pct = lambda v, d: "—" if v is None else f"{100 * v:.{d}f}%"  # noqa: E731
        rows = [[esc(c), v["n"], fmt(v["bpd_before"]), fmt(v["bpd_after"]), pct(v["bits_retained"], 1), pct(v["kept_rate"], 0)]
                for c, v in summary["per_class"].items()]
        body += table_html(["class", "explanations", "bits/dim original", "bits/dim simplified", "bits retained", "kept"], rows, raw=True)
    note = f" (first {MAX_GALLERY} of {len(records)}; all are in results.jsonl)" if len(records) > MAX_GALLERY else ""
    body += f"<h2>Explained images{note}</h2><p class=\"sub\">Click a column to sort.</p>" + _gallery(out_dir, shown)
    if summary["skipped"]:
        body += "<h2>Skipped images</h2>" + table_html(["image", "reason"],
            [[s["path"] or s["id"], s["reason"]] for s in summary["skipped"]])
    details = [_detail(out_dir, r) for r in shown]
    body += "<h2>Details</h2>" + "".join(details)
    subtitle = f"model {settings.get('model', '?')}; selection {settings.get('select', '?')}; explain {settings.get('explain', '?')}"
    if settings.get("head", "softmax") != "softmax":
        subtitle += f"; {settings['head']} head, threshold {settings.get('threshold', 0.5):g}"
    css = PATH_CSS if any('class="path-strip"' in d for d in details) else ""
    return page("SimpleBits audit", body, subtitle=subtitle, css=css)


def write_audit_report(out_dir: str | Path) -> Path:
    """(Re)build ``out_dir/report.html`` from an audit's ``summary.json`` and ``results.jsonl``."""
    out_dir = Path(out_dir)
    audit = read_audit(out_dir)
    html_text = render_audit_report(out_dir, audit.summary, audit.records, audit.settings)
    return atomic_write(out_dir / REPORT_FILE, lambda tmp: tmp.write_text(html_text, encoding="utf-8"))
