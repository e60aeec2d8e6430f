"""Plotly figures of one explanation: image panels, the trade-off (target probability against bits along the path), top-k probabilities.

Inputs are records and arrays as written by :mod:`simplebits_audit.results`. User strings
(class names) are HTML-escaped before they go into figure text: plotly renders a few tags itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..results import finite_or_none, map_title, path_order
from ._html import data_uri, plot_text, png_bytes

#: Maps larger than this (per side) are shown downsampled in the interactive panels; PNGs keep full size.
MAX_HEATMAP_SIDE = 96


def _downsample(values: np.ndarray) -> np.ndarray:
    step = int(np.ceil(max(values.shape) / MAX_HEATMAP_SIDE))
    if step <= 1:
        return values
    h, w = (values.shape[0] // step) * step, (values.shape[1] // step) * step
    return values[:h, :w].reshape(h // step, step, w // step, step).mean((1, 3))


def panels_figure(arrays: dict[str, np.ndarray], map_keys: list[str]) -> go.Figure:
    """Original, simplified and every map side by side; hover shows map values."""
    titles = ["original", "simplified", *[map_title(k) for k in map_keys]]
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=[plot_text(t) for t in titles], horizontal_spacing=0.02)
    for col, key in enumerate(("image_original", "image_simplified"), start=1):
        img = arrays[key]
        fig.add_trace(go.Image(source=data_uri(png_bytes(img)), hoverinfo="skip"), row=1, col=col)
    for col, key in enumerate(map_keys, start=3):
        values = _downsample(arrays[f"map_{key}"])
        signed = values.min() < 0
        limit = float(np.abs(values).max()) or 1.0
        fig.add_trace(
            go.Heatmap(
                z=values, colorscale="RdBu_r" if signed else "Inferno", showscale=False,
                zmin=-limit if signed else 0, zmax=limit, hovertemplate="x %{x}, y %{y}: %{z:.3g}<extra></extra>",
            ),
            row=1, col=col,
        )
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{col}", row=1, col=col)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_layout(height=230, width=max(500, 175 * len(titles)), margin=dict(l=5, r=5, t=30, b=5))
    return fig


def tradeoff_figure(record: dict[str, Any]) -> go.Figure:
    """The trade-off: the target's probability against bits per dim, one point per path snapshot.

    Points run from the simplest snapshot to the original (:func:`~simplebits_audit.results.path_order`),
    hover text names each snapshot, the returned one is starred. Drawn against bits rather than
    lambda because the mask engine's snapshots share one lambda.
    """
    order = [s for s in path_order(record) if finite_or_none(record["path_bpd"][s]) is not None]
    labels = record.get("path_labels") or [f"lambda {v:g}" for v in record["path_lambdas"]]
    x = [record["path_bpd"][s] for s in order]
    y = [finite_or_none(record["path_target_prob"][s]) for s in order]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=f"p({plot_text(record['target_name'])})",
                             text=[plot_text(labels[s]) for s in order],
                             hovertemplate="%{text}<br>%{x:.3f} bpd, p %{y:.3f}<extra></extra>"))
    chosen = record.get("path_chosen")
    if chosen is None:  # older records: the snapshot at the chosen lambda with the reported bits
        chosen = min(range(len(x)), key=lambda i: abs(x[i] - record["bpd_after"]))
        chosen = order[chosen]
    if chosen in order:
        fig.add_trace(go.Scatter(x=[record["path_bpd"][chosen]], y=[finite_or_none(record["path_target_prob"][chosen])], mode="markers",
                                 name="returned", marker=dict(symbol="star", size=14, color="black")))
    fig.update_xaxes(title_text="bits per dim of the snapshot (original at right)")
    fig.update_yaxes(title_text="target probability", range=[0, 1.02], dtick=0.25)
    fig.update_layout(height=260, width=520, margin=dict(l=50, r=20, t=20, b=45), legend=dict(orientation="h", y=1.15))
    return fig


def topk_figure(record: dict[str, Any]) -> go.Figure:
    """Top-k class probabilities before and after simplification."""
    classes = list(dict.fromkeys([c for c, _, _ in record["top_before"]] + [c for c, _, _ in record["top_after"]]))
    names = {c: n for c, n, _ in record["top_before"] + record["top_after"]}
    before = {c: p for c, _, p in record["top_before"]}
    after = {c: p for c, _, p in record["top_after"]}
    labels = [plot_text(names[c]) for c in classes]
    fig = go.Figure([
        go.Bar(x=labels, y=[before.get(c) for c in classes], name="original"),
        go.Bar(x=labels, y=[after.get(c) for c in classes], name="simplified"),
    ])
    fig.update_layout(barmode="group", height=260, width=420, yaxis=dict(range=[0, 1], title="probability"),
                      margin=dict(l=50, r=10, t=20, b=60), legend=dict(orientation="h", y=1.15))
    fig.update_xaxes(type="category")
    return fig
