"""The main job on the embedded default: explain a testbed classifier's predictions offline.

Loads the ``digits-on-photos`` test split and the classifier shipped for it, picks correctly and
wrongly classified images, simplifies them with SimpleBits (default estimator), computes Captum's
Integrated Gradients beside it, and writes a figure and ``results.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from captum.attr import IntegratedGradients
from rich.console import Console
from rich.table import Table

from . import testbeds
from ._io import atomic_write, save_json
from .codecs import codec_bpd
from .explainer import SimpleBits


def _figure(result, maps: dict[str, torch.Tensor], labels: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["original", "simplified", *maps]
    n = len(labels)
    fig, axes = plt.subplots(n, len(cols), figsize=(2 * len(cols), 2 * n), squeeze=False)
    for i in range(n):
        panels = [result.original[i], result.simplified[i]] + [m[i] for m in maps.values()]
        for j, (name, panel) in enumerate(zip(cols, panels)):
            ax = axes[i, j]
            if j < 2:
                ax.imshow(panel.permute(1, 2, 0).cpu().numpy())
            else:
                ax.imshow(panel.abs().sum(0).cpu().numpy(), cmap="inferno")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
        axes[i, 0].set_ylabel(f"y={labels[i]} pred={int(result.pred_before[i])}", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


def run_demo(
    out: str | Path = "simplebits-demo",
    *,
    device: str = "cpu",
    seed: int = 0,
    n_images: int = 8,
    show_progress: bool = True,
    console: Console | None = None,
) -> dict[str, Any]:
    """Explain ``n_images`` testbed predictions (half of them misclassified when possible).

    Returns the summary written to ``out/results.json``.
    """
    out = Path(out)
    test = testbeds.load("digits-on-photos", "test", n=400, seed=seed)
    model = testbeds.load_classifier("digits-on-photos", device)
    x, y = test.images.to(device), test.labels.to(device)
    with torch.no_grad():
        pred = model(x).argmax(1)
    wrong = (pred != y).nonzero().flatten()[: n_images // 2]
    right = (pred == y).nonzero().flatten()[: n_images - len(wrong)]
    idx = torch.cat([wrong, right])
    x, y = x[idx], y[idx]

    sb = SimpleBits(model)
    attr, result = sb.attribute(x, target=pred[idx], return_result=True, seed=seed, show_progress=show_progress)
    ig = IntegratedGradients(model).attribute(x, target=pred[idx], n_steps=50)
    _figure(result, {"SimpleBits (ablation)": attr, "bits removed": result.bit_reduction_map, "Integrated Gradients": ig}, y.tolist(), out / "demo.png")
    webp_before, webp_after = codec_bpd(result.original), codec_bpd(result.simplified)
    records = [
        {
            "index": int(i), "label": int(label), "pred": int(p0), "pred_after": int(p1), "kept": bool(k),
            "bpd_before": float(b0), "bpd_after": float(b1), "webp_bpd_before": float(w0), "webp_bpd_after": float(w1),
        }
        for i, label, p0, p1, k, b0, b1, w0, w1 in zip(
            idx.tolist(), y.tolist(), result.pred_before, result.pred_after, result.kept, result.bpd_before, result.bpd_after, webp_before, webp_after
        )
    ]
    summary = {
        "testbed": "digits-on-photos",
        "classifier_test_accuracy": testbeds.classifier_card("digits-on-photos")["test_accuracy"],
        "estimator": result.settings["estimator"],
        "seconds_per_image": result.seconds_per_image,
        "images": records,
    }
    save_json(summary, out / "results.json")
    if console is not None:
        table = Table("image", "label", "pred", "kept", "bpd before -> after", "WebP bpd before -> after")
        for r in records:
            table.add_row(str(r["index"]), str(r["label"]), str(r["pred"]), "yes" if r["kept"] else "no",
                          f"{r['bpd_before']:.2f} -> {r['bpd_after']:.2f}", f"{r['webp_bpd_before']:.2f} -> {r['webp_bpd_after']:.2f}")
        console.print(table)
        console.print(f"figure: {out / 'demo.png'}\nresults: {out / 'results.json'}")
    return summary
