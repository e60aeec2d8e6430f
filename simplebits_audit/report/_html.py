"""The page shell shared by every report: self-contained HTML, plotly.js embedded, strings escaped.

Every user-supplied string (file names, class names) goes through :func:`esc` before it reaches
the page; plotly serialises figure data with ``<``, ``>`` and ``/`` escaped, so text inside
figures cannot close a ``<script>`` either. A small script records JavaScript errors and how many
figures rendered on ``<body>`` (``data-errors``, ``data-figures-rendered``) for browser tests.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from ..results import target_not_predicted
from ..simplification.heads import NON_TOP_TARGET_FRACTION

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px; padding: 1.5rem; color: #1d1d1f; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border-bottom: 1px solid #e4e4e4; padding: .25rem .6rem; text-align: left; }
th { background: #f6f6f6; cursor: default; } th.sortable { cursor: pointer; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b00020; } .good { color: #1b7f3b; }
.gallery { display: flex; flex-wrap: wrap; gap: .75rem; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .4rem; font-size: .8rem; width: 12.5rem; }
.card img { width: 6rem; height: 6rem; image-rendering: pixelated; }
img.px { image-rendering: pixelated; }
.note { background: #f6f6f6; padding: .5rem .8rem; border-radius: 4px; font-size: .9rem; }
"""

# Records JS errors and counts rendered plotly figures, for people and for the browser test.
RENDER_CHECK = """
<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); });
window.addEventListener("load", function () {
  var graphs = document.querySelectorAll(".plotly-graph-div");
  var rendered = 0;
  graphs.forEach(function (g) { if (g.querySelector(".main-svg")) { rendered += 1; } });
  document.body.setAttribute("data-figures", String(graphs.length));
  document.body.setAttribute("data-figures-rendered", String(rendered));
  document.body.setAttribute("data-errors", window.__errors.join(" | "));
});
</script>
"""

SORT_SCRIPT = """
<script>
function sortTable(th) {
  var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
  var asc = th.getAttribute("data-asc") !== "true";
  th.setAttribute("data-asc", String(asc));
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = a.cells[col].getAttribute("data-v") || a.cells[col].textContent;
    var y = b.cells[col].getAttribute("data-v") || b.cells[col].textContent;
    var nx = parseFloat(x), ny = parseFloat(y);
    var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
    return asc ? c : -c;
  });
  rows.forEach(function (r) { body.appendChild(r); });
}
</script>
"""


def esc(value: object) -> str:
    """HTML-escape any value (quotes included) for text and attribute positions."""
    return html.escape(str(value), quote=True)


def fmt(value: object, digits: int = 3) -> str:
    """A number for a table cell: floats to ``digits`` decimals, None as a dash."""
    return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def status_text(record: dict) -> str:
    """A record's status for a reader, saying when the answer needed nothing (a flat map is then the right map)."""
    status = str(record["status"])
    return f"{status} (nothing needed: the reference image alone gets this answer)" if record.get("nothing_needed") else status


def kept_title(record: dict) -> str:
    """What "kept" means for a record: the prediction, a target that was not the prediction, or a sigmoid head's labels."""
    if "explained" in record:
        return "explained labels kept on their side"
    if target_not_predicted(record):
        return f"target kept (not the prediction: at least {NON_TOP_TARGET_FRACTION:.0%} of its probability)"
    return "prediction kept"


def kept_note(not_prediction: int, explained: int) -> str:
    """The audit's note on its kept rate when some explained targets were not the prediction (empty when none were)."""
    if not not_prediction:
        return ""
    return (f" ({not_prediction} of {explained} explanations are of a target that was not the prediction: for them kept means "
            f"its probability stayed at least {NON_TOP_TARGET_FRACTION:.0%} of what it was, even if the prediction changed)")


#: the real codecs a record's ``{key}_bpd_before`` / ``_after`` fields hold, with their names in reports
CODEC_NAMES = {"webp": "WebP", "jxl": "JPEG-XL"}


def codec_change(record: dict, digits: int = 3) -> str:
    """``"WebP 4.085 → 1.201, JPEG-XL 3.759 → 1.104"``: the record's lossless bits per dim before and after
    simplification under each real codec it holds (records written before JPEG-XL was added have WebP only)."""
    return ", ".join(
        f"{name} {fmt(record[f'{key}_bpd_before'], digits)} → {fmt(record[f'{key}_bpd_after'], digits)}"
        for key, name in CODEC_NAMES.items() if record.get(f"{key}_bpd_before") is not None
    )


def plot_text(value: object) -> str:
    """Escape a user string for plotly figure text (plotly decodes ``&lt; &gt; &amp;`` but not ``&quot;``)."""
    return html.escape(str(value), quote=False)


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The plotly.js bundle shipped with the plotly package (no network needed)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def figure_html(fig, div_id: str, *, modebar: bool = True) -> str:
    """A plotly figure as a ``<div>`` plus its script (plotly.js comes once, in the page head).

    ``div_id`` (letters, digits, ``-``) makes the page reproducible: plotly would draw a random one.
    """
    if not all(c.isalnum() or c == "-" for c in div_id):
        raise ValueError(f"div_id: only letters, digits and '-' allowed, got {div_id!r}")
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
        config={"displaylogo": False, "displayModeBar": "hover" if modebar else False})


def png_bytes(array: np.ndarray) -> bytes:
    """Encode an (H, W, 3) or (H, W) uint8 array as PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img_tag(png: bytes, alt: str, *, width: int | None = None, css_class: str = "px") -> str:
    size = f' width="{width}"' if width else ""
    return f'<img class="{css_class}" src="{data_uri(png)}" alt="{esc(alt)}"{size}>'


def table_html(header: Iterable[str], rows: Iterable[Iterable[str]], *, sortable: bool = False, raw: bool = False) -> str:
    """A table; cells are escaped unless ``raw`` (cells already HTML).

    With ``sortable`` a click on a column header sorts the rows (numbers numerically).
    """
    th_attr = ' class="sortable" onclick="sortTable(this)"' if sortable else ""
    head = "".join(f"<th{th_attr}>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, body: str, *, subtitle: str = "", css: str = "") -> str:
    """A complete, self-contained HTML page (plotly.js inline, works offline); ``css`` is added to the shared style."""
    sub = f'<p class="sub">{esc(subtitle)}</p>' if subtitle else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
        f"<style>{CSS}{css}</style>{RENDER_CHECK}{SORT_SCRIPT}"
        f"<script type=\"text/javascript\">{plotly_js()}</script></head>"
        f"<body><h1>{esc(title)}</h1>{sub}{body}"
        "<p class=\"sub\">Made by simplebits-audit. Self-contained: opens offline.</p></body></html>\n"
    )


#: Labels listed per image in a sigmoid-head report (the on ones first, then the most probable).
MAX_LABELS_SHOWN = 12


def label_facts(record: dict) -> list[list[str]]:
    """Table rows for a sigmoid-head record (one logit per label): the labels on before and after, each label's probability.

    Empty for a softmax record (no ``labels`` field), so its report is unchanged.
    """
    labels = record.get("labels")
    if not labels:
        return []
    t = record.get("threshold", 0.5)
    on = lambda names: ", ".join(esc(n) for n in names) or "none"  # noqa: E731
    shown = sorted(labels, key=lambda d: (not d["on_before"], -d["prob_before"]))[:MAX_LABELS_SHOWN]
    more = f" (and {len(labels) - len(shown)} more in the results)" if len(labels) > len(shown) else ""
    flipped = ' <span class="bad">(flipped)</span>'
    probs = "; ".join(
        f"{esc(d['name'])} {d['prob_before']:.3f} → {d['prob_after']:.3f}{flipped if d['on_before'] != d['on_after'] else ''}"
        for d in shown
    )
    return [
        [f"labels on (sigmoid p ≥ {t:g}) before → after", f"{on(record.get('on_before', []))} → {on(record.get('on_after', []))}"],
        ["per-label probability before → after", probs + more],
    ]
