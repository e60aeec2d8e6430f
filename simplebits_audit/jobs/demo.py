"""The main job on the embedded default: explain a testbed classifier's predictions offline.

Loads the ``digits-on-photos`` test split and the classifier shipped for it, picks wrongly and
correctly classified images among those whose digit stands out, explains them with SimpleBits (default estimator) beside Captum's
Integrated Gradients, Occlusion and Grad-CAM, and writes an interactive report
(:func:`simplebits_audit.jobs.explain_images`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from .. import testbeds
from .explain import ExplainOutput, explain_images

#: The baselines the demo shows beside SimpleBits.
DEMO_BASELINES = ("ig", "occlusion", "gradcam")


def _digit_contrast(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per image (N,): largest channel difference between the mean stroke colour and the mean background colour."""
    m = masks.float()
    strokes = (images * m).sum((2, 3)) / m.sum((2, 3)).clamp_min(1)
    background = (images * (1 - m)).sum((2, 3)) / (1 - m).sum((2, 3)).clamp_min(1)
    return (strokes - background).abs().amax(1)


def run_demo(
    out: str | Path = "simplebits-demo",
    *,
    device: str = "cpu",
    seed: int = 0,
    n_images: int = 8,
    show_progress: bool = True,
    console: Console | None = None,
) -> ExplainOutput:
    """Explain ``n_images`` testbed predictions (half of them misclassified when possible).

    Writes ``out/report.html``, ``out/results.json`` and per-image PNGs; returns what was written.
    """
    test = testbeds.load("digits-on-photos", "test", n=400, seed=seed)
    model = testbeds.load_classifier("digits-on-photos", device)
    with torch.no_grad():
        pred = model(test.images.to(device)).argmax(1).cpu()
    # Show digits a person can make out: the strokes' contrast against the rest of the image in
    # the top quarter. (Low-contrast digits are the testbed's point, but not a first impression.)
    contrast = _digit_contrast(test.images, test.masks)
    visible = contrast >= contrast.quantile(0.75)
    wrong = ((pred != test.labels) & visible).nonzero().flatten()[: n_images // 2]
    right = ((pred == test.labels) & visible).nonzero().flatten()[: n_images - len(wrong)]
    idx = torch.cat([wrong, right])
    accuracy = testbeds.classifier_card("digits-on-photos")["test_accuracy"]
    output = explain_images(
        model, test.images[idx], out, class_names=test.classes, labels=test.labels[idx].tolist(),
        names=[f"test image {int(i)}" for i in idx], baselines=DEMO_BASELINES, device=device, seed=seed,
        show_progress=show_progress, model_name=f"SmallCNN shipped for digits-on-photos (test accuracy {accuracy:.1%})",
        title="SimpleBits demo: digits pasted on photos",
    )
    if console is not None:
        table = Table("image", "label", "prediction", "kept", "bits/dim before -> after", "WebP bits/dim before -> after",
                      "JPEG-XL bits/dim before -> after")
        for r in output.records:
            wrong_mark = "" if r["label"] == r["pred_before"] else " (wrong)"
            table.add_row(r["name"], r["label_name"], r["pred_before_name"] + wrong_mark, "yes" if r["kept"] else "no",
                          f"{r['bpd_before']:.2f} -> {r['bpd_after']:.2f}", f"{r['webp_bpd_before']:.2f} -> {r['webp_bpd_after']:.2f}",
                          f"{r['jxl_bpd_before']:.2f} -> {r['jxl_bpd_after']:.2f}")
        console.print(table)
        seconds = ", ".join(f"{k} {v:.2f}" for k, v in output.seconds_per_image.items())
        console.print(f"seconds per image: {seconds}")
        console.print(f"report: {output.report_path}")
    return output
