"""The path of one explanation as a strip of snapshots, from the simplest image to the original.

Each snapshot is a small inline PNG captioned with what it is (its label), its bits per dimension
and the target's probability; the returned snapshot is framed and marked "chosen", snapshots that
did not keep the prediction are faded, dashed and marked "not kept". Built from a record and its
``arrays.npz`` (``path_images``) only; records written before the path was stored get no strip.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..results import finite_or_none, path_order
from ._html import esc, img_tag, png_bytes

#: Style of the strip (added to a page's head only when the page shows one).
PATH_CSS = """
.path-strip { display: flex; gap: .4rem; overflow-x: auto; padding: .3rem 0 .5rem; align-items: flex-start; }
.snap { margin: 0; padding: .2rem; border: 2px solid #e4e4e4; border-radius: 4px; flex: 0 0 auto;
        font-size: .72rem; line-height: 1.25; text-align: center; }
.snap img { display: block; margin: 0 auto .15rem; image-rendering: pixelated; }
.snap.chosen { border: 3px solid #1a56db; background: #eef3ff; }
.snap.lost { border: 2px dashed #b00020; }
.snap.lost img { opacity: .45; }
.snap .mark { font-weight: 600; }
.snap.chosen .mark { color: #1a56db; } .snap.lost .mark { color: #b00020; }
"""


def _num(value: Any, digits: int = 3) -> str:
    """A path value for a caption; missing or non-finite values as a dash (the same in memory and from JSON)."""
    return "—" if value is None or not math.isfinite(float(value)) else f"{float(value):.{digits}f}"


def _thumbnail(image: np.ndarray, side: int) -> bytes:
    """One snapshot (C, H, W) uint8 as PNG, shrunk to at most ``side`` pixels per side."""
    from PIL import Image

    pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    im = Image.fromarray(np.ascontiguousarray(pixels))
    if max(im.size) > side:
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return png_bytes(np.asarray(im))


def has_path(record: dict[str, Any], arrays: dict[str, np.ndarray]) -> bool:
    """Whether the record and its arrays hold a path to show (runs before the path was stored do not)."""
    images = arrays.get("path_images")
    return images is not None and "path_labels" in record and len(images) == len(record["path_bpd"]) == len(record["path_labels"])


def path_strip_html(record: dict[str, Any], arrays: dict[str, np.ndarray], *, side: int = 96, width: int = 96) -> str:
    """The strip of a record's path snapshots, simplest first, the original last ("" if it holds no path).

    ``side`` bounds the embedded PNG, ``width`` the displayed size (small images are scaled up, pixelated).
    """
    if not has_path(record, arrays):
        return ""
    images = arrays["path_images"]
    chosen = record.get("path_chosen")
    target = esc(record["target_name"])
    figures = []
    original_bpd = finite_or_none(record["path_bpd"][0])
    for position, s in enumerate(path_order(record)):
        kept = bool(record["path_kept"][s])
        bpd_s = finite_or_none(record["path_bpd"][s])
        # a mid-optimisation image can be noisier than the original: it sorts left of the original, and says so
        costlier = s != 0 and original_bpd is not None and bpd_s is not None and bpd_s > original_bpd
        classes = ["snap"] + (["chosen"] if s == chosen else []) + ([] if kept else ["lost"]) + (["costlier"] if costlier else [])
        marks = (["chosen"] if s == chosen else []) + ([] if kept else ["not kept"]) + (["more bits than the original"] if costlier else [])
        label = record["path_labels"][s]
        bpd, prob = _num(record["path_bpd"][s]), _num(record["path_target_prob"][s])
        alt = f"{label}: {bpd} bits per dim, p({record['target_name']}) {prob}"
        mark = f'<br><span class="mark">{" · ".join(marks)}</span>' if marks else ""
        figures.append(
            f'<figure class="{" ".join(classes)}" style="width:{width}px" '
            f'data-index="{s}" data-position="{position}" data-kept="{int(kept)}">'
            f"{img_tag(_thumbnail(images[s], side), alt, width=width, css_class='px')}"
            f"<figcaption>{esc(label)}<br>{bpd} bpd<br>p {prob}{mark}</figcaption></figure>"
        )
    return (
        f'<div class="path" data-snapshots="{len(figures)}"><p class="sub">The path\'s snapshots by their bits, from the simplest '
        f"(left, fewest bits) up, then the original (right): bits per dim (bpd) and the probability p of <b>{target}</b>. "
        "A snapshot marked \"more bits than the original\" is an image from the middle of the optimisation that costs more than "
        "the original itself. Framed: the image returned; "
        "faded and dashed: the prediction was not kept. What appears first from the left is what the model needed first.</p>"
        f'<div class="path-strip">{"".join(figures)}</div></div>'
    )
