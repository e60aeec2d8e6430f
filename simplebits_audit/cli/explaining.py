"""The explaining commands: ``explain``, ``compare``, ``audit``.

Each parses its own options, takes the shared ones as option groups (:mod:`~simplebits_audit.cli.options`),
calls one job and prints its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from .defaults import given
from .groups import uses
from .options import (
    ATTRIBUTION,
    IMAGES,
    TARGET,
    TARGET_NAME,
    TESTBED_N,
    Engine,
    ModelFile,
    comma_list,
    console,
    engine_group,
    model_file_group,
    model_group,
    out_option,
    process_device,
    run_options,
    session,
)

if TYPE_CHECKING:
    from simplebits_audit.jobs.options import ModelOptions


@uses(net=model_file_group, model_opts=model_group, engine=engine_group)
def explain(
    images: list[Path] = IMAGES,
    *,
    net: ModelFile,
    out: Path = out_option(Path("simplebits-explain"), "Output folder: report.html, results.json, PNGs."),
    target: int | None = TARGET,
    target_name: str | None = TARGET_NAME,
    baselines: str | None = typer.Option(None, help="Captum baselines beside SimpleBits, comma-separated, e.g. ig,occlusion,gradcam."),
    attribution: str | None = ATTRIBUTION,
    objective: str | None = typer.Option(
        None, help="kl: keep the whole predicted distribution; ce: keep the target class (default {library:simplify.objective})."),
    batch_size: int | None = typer.Option(None, help="Images simplified together (default {library:explain.batch_size})."),
    engine: Engine,
    model_opts: ModelOptions,
    simplifier: Path | None = typer.Option(
        None, "--simplifier", help="A learned simplifier file (simplebits train-simplifier): one forward pass per image."),
    open_report: bool = typer.Option(False, "--open", help="Open the report in a browser when done."),
) -> None:
    """Explain predictions: simplify each image, write an interactive report.

    Examples:

      simplebits explain cat.jpg --model resnet18 --weights r18.pt --preset imagenet --size 256 --crop 224 --labels classes.txt

      simplebits explain digit.png --model model.ts --baselines ig,occlusion,gradcam --out report/

      simplebits explain xray.png --model binary.ts --head sigmoid --labels negative_positive.txt

      simplebits explain testbed:stripes:3 --model testbed:stripes
    """
    from simplebits_audit.jobs import explain_images
    from simplebits_audit.results import answer_before_after, explained_name, labels_on_before_after, target_not_predicted
    from simplebits_audit.simplification.heads import NON_TOP_TARGET_FRACTION

    result = explain_images(
        net.load(), images, out, model_options=model_opts, model_name=net.spec, run=run_options(), target=target, target_name=target_name,
        explain_options=engine.explain_options(
            baselines=comma_list(baselines), simplify_options=engine.simplify_options(objective=objective), simplifier=simplifier,
            attribution=attribution, batch_size=batch_size),
    )
    if not session.quiet:
        table = Table("image", "target", "prediction before -> after", "kept", "bits/dim before -> after", "WebP bits/dim before -> after",
                      "JPEG-XL bits/dim before -> after")
        for r in result.records:
            table.add_row(r["name"], explained_name(r), answer_before_after(r), "yes" if r["kept"] else "no",
                          f"{r['bpd_before']:.3f} -> {r['bpd_after']:.3f}", f"{r['webp_bpd_before']:.3f} -> {r['webp_bpd_after']:.3f}",
                          f"{r['jxl_bpd_before']:.3f} -> {r['jxl_bpd_after']:.3f}")
        console.print(table)
        for r in result.records:
            if target_not_predicted(r):  # "kept" then means less than the prediction kept
                console.print(f"{r['name']}: the target {r['target_name']} was not the prediction (p {r['prob_target_before']:.3g}): "
                              f"kept means its probability stayed at least {NON_TOP_TARGET_FRACTION:.0%} of that")
            if r.get("nothing_needed"):  # a flat map is then the right answer, not a failure
                console.print(f"{r['name']}: nothing needed: the reference image alone gets this answer, so the map is flat")
        for r in result.records:
            if len(r.get("labels", ())) == 1:  # one logit: the table shows the decision, this its label
                console.print(f"{r['name']}: {labels_on_before_after(r)}")
    console.print(f"report: {result.report_path}")
    if open_report:
        import webbrowser

        webbrowser.open(result.report_path.resolve().as_uri())


@uses(net=model_file_group, model_opts=model_group, engine=engine_group)
def compare(
    images: list[Path] = IMAGES,
    *,
    net: ModelFile,
    out: Path = out_option(Path("simplebits-compare"), "Output folder: comparison.csv and comparison.json."),
    methods: str | None = typer.Option(
        None, help="Comma-separated: simplebits and baseline names "
        "(default: simplebits, ig, occlusion, gradcam and the trivial reference maps)."),
    target: int | None = TARGET,
    target_name: str | None = TARGET_NAME,
    randomisation: bool | None = typer.Option(
        None, "--randomisation/--no-randomisation",
        help="Model-parameter randomisation check (default {library:compare.randomisation}): "
        "Spearman correlation of each method's map with its map "
             "under a copy of the model with re-initialised weights; lower is better; one more explanation per method."),
    engine: Engine,
    model_opts: ModelOptions,
    simplifier: Path | None = typer.Option(None, "--simplifier", help="A learned simplifier file: adds the method simplebits_learned."),
) -> None:
    """Score SimpleBits and Captum baselines side by side on your images (faithfulness, bits-efficiency, sanity, time).

    Localisation metrics need ground-truth masks: run ``python benchmarks/compare.py --testbed NAME`` for those.

    Every method explains one class per image, the scores' target: --target / --target-name, or the
    prediction. Under a multi-label --head sigmoid that is the most probable label, where ``explain``
    without a target keeps every label that was on; comparison.json records it per image (targets).

    Example: ``simplebits compare a.png b.png --model model.ts --methods simplebits,ig,occlusion``.
    """
    from simplebits_audit.explainers import SIMPLEBITS
    from simplebits_audit.jobs.comparison import DEFAULT_METHODS, METRICS, compare_files
    from simplebits_audit.results import COMPARISON_CSV_FILE

    # --engine is SimpleBits's (the learned simplifier has its own): its region map is the one scored
    engine_options = {SIMPLEBITS: {"parameterization": engine.engine}} if engine.engine else {}
    result = compare_files(
        net.load(), images, out, model_options=model_opts, run=run_options(), target=target, target_name=target_name,
        methods=comma_list(methods) or DEFAULT_METHODS, steps=engine.steps, estimator=engine.estimator, simplifier=simplifier,
        method_options={**engine.baseline_options, **engine_options} or None, **given(randomisation=randomisation),
    )
    rows = result.to_rows()
    # One column per method (metrics as rows) keeps the table readable in a terminal.
    table = Table("metric (^ higher is better, v lower)", *(r["method"] + (" (ref.)" if r["reference"] else "") for r in rows))
    for metric in [c for c in rows[0] if c not in ("method", "reference")]:
        direction = {True: " ^", False: " v"}.get(False if metric == "rank" else METRICS.get(metric), "")  # rank 1: the best
        table.add_row(metric + direction + (" (share of images)" if metric == "randomisation_undefined" else ""),
            *("-" if r[metric] is None else f"{r[metric]:.3g}" if isinstance(r[metric], float) else str(r[metric]) for r in rows))
    if not session.quiet:
        console.print(table)
    console.print(f"table: {out / COMPARISON_CSV_FILE}")


@uses(net=model_file_group, model_opts=model_group, engine=engine_group)
def audit(
    data: str = typer.Argument(..., help="An ImageFolder directory, a CSV of path,label, or a testbed name (its test split)."),
    *,
    net: ModelFile,
    out: Path = out_option(Path("simplebits-audit"), "Output folder; rerun the same command to resume."),
    select: str | None = typer.Option(None, help="misclassified | all | low-confidence:P | class:NAME (default {library:audit.select})."),
    limit: int | None = typer.Option(None, help="Explain at most this many selected images (the first ones)."),
    explain_target: str | None = typer.Option(
        None, "--explain", help="Class to keep: pred (the prediction), true (the label) or both (default {library:audit.explain})."),
    baselines: str | None = typer.Option(None, help="Captum baselines beside SimpleBits, comma-separated, e.g. ig,gradcam."),
    attribution: str | None = ATTRIBUTION,
    batch_size: int | None = typer.Option(
        None, help="Images simplified together (default {library:explain.batch_size}); "
        "fixed batches: results do not depend on the number of processes."),
    predict_batch_size: int | None = typer.Option(None, help="Images per prediction batch (default {library:audit.predict_batch_size})."),
    testbed_n: int | None = TESTBED_N,
    engine: Engine,
    model_opts: ModelOptions,
    simplifier: str | None = typer.Option(
        None, "--simplifier", help="A learned simplifier file, or 'auto': train one on DATA first (OUT/simplifier.pt, reused on resume)."),
) -> None:
    """Audit a dataset: predict everything, simplify the misclassified (or selected) images, write a report.

    Resumable: rerun the same command after an interruption. Across processes:
    ``torchrun --nproc_per_node=2 -m simplebits_audit.cli.main audit ...`` (gloo on CPU, nccl on GPU).

    A binary classifier with one logit: ``--head sigmoid``; its prediction is the decision
    (probability >= --threshold: the second class folder, e.g. negative/ and positive/).

    Examples:

      simplebits audit val/ --model model.ts --preset imagenet --size 256 --crop 224 --limit 200

      simplebits audit digits-on-photos --model testbed:digits-on-photos --explain both

      simplebits audit digits-on-photos --model testbed:digits-on-photos --select all --simplifier auto

      simplebits audit colour-cue --model testbed:colour-cue --select all --engine factorised --limit 16
    """
    from simplebits_audit.jobs import run_audit
    from simplebits_audit.results import AUDIT_SIMPLIFIER_FILE, REPORT_FILE
    from simplebits_audit.simplification import Simplifier
    from simplebits_audit.simplification.heads import NON_TOP_TARGET_FRACTION

    device = process_device()  # under torchrun each rank takes its own GPU
    summary = run_audit(
        net.load(device), data, out, model_options=model_opts, model_name=net.described, run=run_options(device), limit=limit,
        testbed_n=testbed_n, explain_options=engine.explain_options(
            baselines=comma_list(baselines), simplify_options=engine.simplify_options(), simplifier=simplifier,
            attribution=attribution, batch_size=batch_size),
        **given(select=select, explain=explain_target, predict_batch_size=predict_batch_size),
    )
    if not summary:  # a torchrun rank other than 0: rank 0 reports
        return
    if not session.quiet:
        acc = "-" if summary["accuracy"] is None else f"{100 * summary['accuracy']:.1f}%"
        console.print(f"{summary['items']} images, {len(summary['skipped'])} skipped, accuracy {acc}; "
                      + (f"{summary['explained']} explanations, kept {100 * summary['kept_rate']:.0f}%, "
                         f"bits/dim {_num(summary['bpd_before'])} -> {_num(summary['bpd_after'])}" if summary["explained"]
                         else "nothing selected to explain (--select all explains every image)"))
        if simplifier == "auto" and (trained := Path(out) / AUDIT_SIMPLIFIER_FILE).is_file():  # what train-simplifier says
            scores = Simplifier.load(trained).card.get("held_out") or {}
            if scores:
                console.print(f"learned simplifier ({trained}): {scores['images']} held-out images, answers kept "
                              f"{100 * scores['top1_kept']:.1f}%, bits kept {scores['bits_kept']:.3f}", markup=False, highlight=False)
        if Path(data).is_dir() and model_opts.class_names is None and summary.get("class_names"):
            # the classes are the folders in sorted order (torchvision's rule): said, since a model trained otherwise looks wrong
            order = ", ".join(f"{i} {name}" for i, name in enumerate(summary["class_names"][:10]))
            console.print(f"classes from the folders, in sorted order (--labels names them otherwise): {order}"
                          + (", ..." if len(summary["class_names"]) > 10 else ""), markup=False, highlight=False)
        if summary.get("not_prediction_targets"):  # "kept" then means less than the prediction kept
            console.print(f"{summary['not_prediction_targets']} of the explanations are of a target that was not the prediction: "
                          f"kept means its probability stayed at least {NON_TOP_TARGET_FRACTION:.0%} of what it was")
        if summary["shortcut"]:
            s = summary["shortcut"]
            console.print(f"mask: {100 * s['mask_area_share']:.1f}% of the area, "
                f"{100 * s['mask_bits_share_after']:.1f}% of the retained bits, "
                          f"{100 * s['mask_attribution_share']:.1f}% of the attribution")
        if summary.get("information"):  # --engine factorised
            console.print(f"which information: {summary['information']['takeaway']}")
    console.print(f"report: {out / REPORT_FILE}")


def _num(value: float | None) -> str:
    """A summary's mean for the terminal: "-" where no explanation had one (all non-finite)."""
    return "-" if value is None else f"{value:.3f}"


__all__ = ["audit", "compare", "explain"]
