"""Which information the model needed (issue #22): the factorised engine's per-axis maps and information profile in the reports.

Records of a factorised run (``parameterization="factorised"``) carry ``information`` (the
profile, :func:`~simplebits_audit.results.information_record`) and their arrays ``axis_<axis>``.
:func:`information_html` draws one image's: the simplified image beside the three maps of what it
kept, a small bar chart of the share of each axis kept, and one sentence ("colour kept, detail
dropped"). :func:`summarise_information` aggregates the profiles of an audit per class and per
error type, with a one-sentence takeaway computed from the numbers; :func:`audit_information_html`
shows it. Records of other engines have no profile and these sections do not appear.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..results import class_name, finite_or_none
from ..simplification.factorised import AXES, kept_axis_maps
from ._html import CODEC_NAMES, data_uri, esc, figure_html, fmt, plot_text, png_bytes, table_html

#: A share kept at or above this reads "kept"; at or below :data:`DROPPED_AT` "dropped"; between, "partly kept".
KEPT_AT = 0.5
#: The issue's bar for an axis "simplified away" (<= 0.3 of its information kept).
DROPPED_AT = 0.3
#: A gap between two groups' mean shares below this reads "about the same".
SAME_WITHIN = 0.05
#: The error types an audit's profiles are grouped by.
ERROR_TYPES = ("correct", "misclassified", "unlabelled")


def kept_shares(record: dict[str, Any]) -> dict[str, float | None]:
    """Axis -> share kept inside the needed region (None: not applicable) of a record with a profile."""
    axes = record["information"]["axes"]
    return {axis: finite_or_none(axes.get(axis, {}).get("kept_inside")) for axis in AXES}


#: Bar colours by what a share reads as (:func:`_verb`).
_BAR_COLOURS = {"kept": "#2a7", "partly kept": "#e9a23b", "dropped": "#bbb", "n/a": "#bbb"}


def _verb(value: float) -> str:
    return "kept" if value >= KEPT_AT else "dropped" if value <= DROPPED_AT else "partly kept"


def profile_sentence(kept: dict[str, float | None], region: str = "whole image") -> str:
    """One plain sentence from per-axis shares kept, e.g. ``colour kept (0.82), detail dropped (0.12); 0.35 of the whole image needed``.

    ``kept``: axis -> share in [0, 1] or None (not applicable). When one of colour and detail is
    kept (>= :data:`KEPT_AT`) and the other dropped (<= :data:`DROPPED_AT`) the sentence says so;
    otherwise it names the one the model leans on (a gap of :data:`SAME_WITHIN` or more) or says
    they were kept alike, with the numbers. No colour or detail share (the region was removed
    everywhere inside ``region``) reads as "nothing ... needed".
    """
    content = {axis: v for axis in ("colour", "detail") if (v := kept.get(axis)) is not None}
    region_kept = kept.get("region")
    if not content:  # colour and detail are read where the region was kept: none was, inside ``region``
        return f"nothing of the {region} needed: the flat reference there keeps the answer"
    if len(content) == 1:
        ((axis, v),) = content.items()
        text = f"{axis} {_verb(v)} ({v:.2f})"
    else:
        (top, a), (low, b) = sorted(content.items(), key=lambda kv: -kv[1])
        if a >= KEPT_AT and b <= DROPPED_AT:
            text = f"{top} kept ({a:.2f}), {low} dropped ({b:.2f})"
        elif a - b >= SAME_WITHIN:
            text = f"leans on {top} ({a:.2f} kept) over {low} ({b:.2f})"
        else:
            text = f"colour and detail {_verb((a + b) / 2)} alike ({content['colour']:.2f}, {content['detail']:.2f})"
    if region_kept is not None:
        text += f"; {region_kept:.2f} of the {region} needed"
    return text


# ---------------------------------------------------------------------------------------------
# one image (explain, audit details)


def axis_panels_figure(arrays: dict[str, np.ndarray]) -> go.Figure:
    """The simplified image beside what it kept of colour, detail and region (fixed [0, 1] scale: black removed, white kept)."""
    kept = kept_axis_maps({axis: arrays[f"axis_{axis}"] for axis in AXES})
    titles = ["simplified", *[f"{axis} kept" for axis in AXES]]
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.02)
    fig.add_trace(go.Image(source=data_uri(png_bytes(arrays["image_simplified"])), hoverinfo="skip"), row=1, col=1)
    for col, axis in enumerate(AXES, start=2):
        fig.add_trace(go.Heatmap(z=kept[axis], colorscale="Greys", reversescale=True, zmin=0, zmax=1, showscale=False,
                                 hovertemplate=f"{axis}: x %{{x}}, y %{{y}}: %{{z:.2f}} kept<extra></extra>"), row=1, col=col)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{col}", row=1, col=col)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_layout(height=200, width=640, margin={"l": 5, "r": 5, "t": 30, "b": 5})
    return fig


def _bits_text(entry: dict[str, Any] | None, name: str = "webp") -> str:
    """Hover text: the bits an axis removed under the estimator and as the profile's codec ``name`` files."""
    if not entry:
        return "n/a"
    est, codec = finite_or_none(entry.get("bits_removed")), finite_or_none(entry.get("codec_bits_removed"))
    return (f"bits removed: {'n/a' if est is None else f'{est:.0f}'} (estimator), "
            f"{'n/a' if codec is None else f'{codec:.0f}'} ({CODEC_NAMES.get(name, name)})")


def profile_figure(
    axes: dict[str, dict[str, Any]], title: str = "share kept inside the needed region", codec: str | None = "webp"
) -> go.Figure:
    """The profile as a small bar chart: per axis the share kept (0 to 1); hover shows the bits it removed (estimator, ``codec``)."""
    kept = [finite_or_none(axes.get(axis, {}).get("kept_inside")) for axis in AXES]
    fig = go.Figure(go.Bar(
        x=list(AXES), y=[0 if v is None else v for v in kept], text=["n/a" if v is None else f"{v:.2f}" for v in kept],
        textposition="outside", marker_color=[_BAR_COLOURS["n/a" if v is None else _verb(v)] for v in kept],
        customdata=[_bits_text(axes.get(axis), codec or "codec") for axis in AXES],
        hovertemplate="%{x}: %{text} kept<br>%{customdata}<extra></extra>",
    ))
    fig.update_layout(height=220, width=300, margin={"l": 45, "r": 10, "t": 30, "b": 30},
                      title={"text": plot_text(title), "font": {"size": 12}},
                      yaxis={"range": [0, 1.15], "dtick": 0.5, "title": "kept"})
    fig.update_xaxes(type="category")
    return fig


def information_html(record: dict[str, Any], arrays: dict[str, np.ndarray], fig_id: str) -> str:
    """One image's "which information" block: a sentence, the simplified image with its three axis maps,
    the profile chart ('' without a profile)."""
    if "information" not in record or not all(f"axis_{axis}" in arrays for axis in AXES):
        return ""
    info = record["information"]
    sentence = profile_sentence(kept_shares(record), info.get("region", "whole image"))
    return (
        f'<h3>Which information</h3><p class="note"><b>{esc(sentence)}</b>. Shares of colour and detail are read where the '
        f"region was kept, inside the {esc(info.get('region', 'whole image'))}; hover a bar for the bits that axis removed.</p>"
        '<div style="display:flex;flex-wrap:wrap;gap:1rem;align-items:center">'
        f"{figure_html(axis_panels_figure(arrays), f'{fig_id}-axes', modebar=False)}"
        f"{figure_html(profile_figure(info['axes'], codec=info.get('codec', 'webp')), f'{fig_id}-profile', modebar=False)}</div>"
    )


# ---------------------------------------------------------------------------------------------
# an audit: profiles per class and per error type


def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def _group(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def per_axis(key: str) -> dict[str, float | None]:
        return {axis: _mean([finite_or_none(r["information"]["axes"].get(axis, {}).get(key)) for r in records]) for axis in AXES}

    defined = {axis: sum(finite_or_none(r["information"]["axes"].get(axis, {}).get("kept_inside")) is not None for r in records)
               for axis in AXES}
    return {"n": len(records), "n_defined": defined, "kept_inside": per_axis("kept_inside"), "bits_removed": per_axis("bits_removed"),
            "codec_bits_removed": per_axis("codec_bits_removed")}


def error_type(record: dict[str, Any]) -> str:
    """``"correct"``, ``"misclassified"`` (label known, original prediction differs) or ``"unlabelled"`` (no label, or a
    multi-label record: its most probable label is no prediction to score against one label)."""
    if record.get("label") is None or len(record.get("labels") or ()) > 1:
        return "unlabelled"
    return "correct" if record["label"] == record["pred_before"] else "misclassified"


def takeaway(summary: dict[str, Any]) -> str:
    """The one sentence a reader takes away, from :func:`summarise_information`'s numbers.

    With correct and misclassified images: the axis whose mean share differs most between them
    ("misclassified images lean on colour (0.71 kept vs 0.32 for correct ones; n = 5 vs 11)").
    Otherwise: what all explained images kept and dropped (:func:`profile_sentence`).
    """
    groups = summary["by_error"]
    wrong, right = groups.get("misclassified"), groups.get("correct")
    if wrong and right:
        gaps = [(abs(w - c), axis, w, c) for axis in AXES
                if (w := wrong["kept_inside"][axis]) is not None and (c := right["kept_inside"][axis]) is not None]
        if gaps:
            _, axis, w, c = max(gaps)
            counts = f"n = {wrong['n_defined'][axis]} vs {right['n_defined'][axis]}"  # the images each mean is over
            if abs(w - c) < SAME_WITHIN:
                return (
                    "misclassified and correct images keep about the same information "
                    f"(largest gap: {axis}, {w:.2f} vs {c:.2f}; {counts})"
                )
            lean = "lean on" if w > c else "lean less on"
            return f"misclassified images {lean} {axis} ({w:.2f} kept vs {c:.2f} for correct ones; {counts})"
    everything = summary["all"]
    region = summary.get("region", "whole image")
    # colour and detail are read where the region was kept: say on how many images, when not on all (one image's
    # shares are not the model's habit)
    read = max(everything["n_defined"]["colour"], everything["n_defined"]["detail"])
    head = f"over {everything['n']} explained image(s)"
    if 0 < read < everything["n"]:
        head += f" (colour and detail read on the {read} that needed part of the {region}; the others needed none of it)"
    return f"{head}: " + profile_sentence(everything["kept_inside"], region)


def summarise_information(records: Sequence[dict[str, Any]], class_names: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Mean profiles of an audit's records: overall, per error type and per class, and the takeaway sentence.

    Parameters
    ----------
    records : sequence of dict
        Audit records; those without a profile (other engines, non-finite runs left out by the
        caller) are ignored. None is returned when none has one.
    class_names : sequence of str, optional
        Names of the classes (a class is the label, or the prediction where there is none; keys
        as the summary's ``per_class``: ``"<index>: <name>"`` when names repeat).

    Returns
    -------
    dict or None
        ``{"n", "region", "all", "by_error": {type: group}, "by_class": {name: group}, "takeaway"}``;
        a group is ``{"n", "kept_inside": {axis: mean}, "bits_removed": {...}, "codec_bits_removed": {...}}``
        (means over the images where the value is defined; None where none is).
    """
    with_profile = [r for r in records if "information" in r]
    if not with_profile:
        return None
    duplicated = class_names is not None and len(set(class_names)) < len(class_names)
    by_class: dict[int, list[dict[str, Any]]] = {}
    for r in with_profile:
        by_class.setdefault(r["label"] if r.get("label") is not None else r["pred_before"], []).append(r)
    regions = sorted({r["information"].get("region", "whole image") for r in with_profile})
    summary = {
        "n": len(with_profile),
        "region": regions[0] if len(regions) == 1 else " / ".join(regions),
        "all": _group(with_profile),
        "by_error": {kind: _group(rs) for kind in ERROR_TYPES if (rs := [r for r in with_profile if error_type(r) == kind])},
        "by_class": {(f"{c}: {class_name(c, class_names)}" if duplicated else class_name(c, class_names)): _group(by_class[c])
                     for c in sorted(by_class)},
    }
    summary["takeaway"] = takeaway(summary)
    return summary


def _groups_figure(groups: dict[str, dict[str, Any]], fig_id: str) -> str:
    fig = go.Figure([
        go.Bar(name=plot_text(name), x=list(AXES), y=[g["kept_inside"][a] for a in AXES],
               customdata=[[plot_text(name), g["n"],
                           _bits_text({"bits_removed": g["bits_removed"][a], "codec_bits_removed": g["codec_bits_removed"][a]})]
                           for a in AXES],
               hovertemplate="%{x}, %{customdata[0]} (n %{customdata[1]}): %{y:.2f} kept<br>mean %{customdata[2]}<extra></extra>")
        for name, g in groups.items()
    ])
    fig.update_layout(barmode="group", height=260, width=420, margin={"l": 50, "r": 10, "t": 20, "b": 30},
                      yaxis={"range": [0, 1], "title": "kept (mean)"},
                      legend={"orientation": "h", "y": 1.15})
    fig.update_xaxes(type="category")
    return figure_html(fig, fig_id)


def audit_information_html(summary: dict[str, Any]) -> str:
    """The audit report's "which information" section from ``summary["information"]`` ('' when the audit has none)."""
    info = summary.get("information")
    if not info:
        return ""
    rows = []
    for label, groups in (("all", {"all": info["all"]}), ("error type", info["by_error"]), ("class", info["by_class"])):
        for name, g in groups.items():
            counts = g.get("n_defined", {})  # summaries written before the counts: the means alone
            rows.append([esc(label), esc(name), g["n"], *[fmt(g["kept_inside"][a]) + (f" (n {counts[a]})" if a in counts else "")
                                                          for a in AXES],
                         *[fmt(g["bits_removed"][a], 0) for a in AXES]])
    header = ["by", "group", "images", *[f"{a} kept" for a in AXES], *[f"{a} bits removed" for a in AXES]]
    charts = [f"<div><h3>By error type</h3>{_groups_figure(info['by_error'], 'fig-info-error')}</div>"]
    if len(info["by_class"]) <= 20:  # beyond that a grouped bar chart is unreadable; the table has them all
        charts.append(f"<div><h3>By class</h3>{_groups_figure(info['by_class'], 'fig-info-class')}</div>")
    return (
        f'<h2>Which information the model needed</h2><p class="note"><b>{esc(info["takeaway"])}</b>.</p>'
        f'<p class="sub">Mean share of each kind of information kept, over {info["n"]} explanation(s) with a profile; colour and '
        f"detail are read where the region was kept, inside the {esc(info['region'])}, so each mean is over the images that kept "
        "some of it (n). Bits removed: the estimator's, mean per image (0 where nothing was removed).</p>"
        '<div style="display:flex;flex-wrap:wrap;gap:1rem">' + "".join(charts) + "</div>"
        + table_html(header, rows, raw=True)
    )


__all__ = [
    "AXES", "ERROR_TYPES", "audit_information_html", "axis_panels_figure", "error_type", "information_html", "kept_shares",
    "profile_figure", "profile_sentence", "summarise_information", "takeaway",
]
