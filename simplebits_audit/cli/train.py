"""The training commands: ``train-estimator``, ``train-simplifier``, ``train``, ``condense``.

Each parses its own options, takes the shared ones as option groups (:mod:`~simplebits_audit.cli.options`),
calls one job and prints its result (under torchrun: rank 0 prints).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from .defaults import given
from .groups import uses
from .options import (
    ESTIMATOR,
    LABELS,
    TESTBED_N,
    ModelFile,
    console,
    err_console,
    head_group,
    model_file_group,
    out_option,
    pixels_group,
    preprocessing_group,
    process_device,
    read_labels,
    run_options,
    session,
)

if TYPE_CHECKING:
    from simplebits_audit.preprocessing import Preprocessing


def train_estimator(
    image_dir: Path = typer.Argument(..., help="Folder of photos; ~15% of whole photos are held out for evaluation."),
    arch: str | None = typer.Option(None, help="Architecture: pixelcnn or glow (default {library:estimator.arch})."),
    out: Path = typer.Option(..., help="Checkpoint to write (a model card goes beside it as .json)."),
    steps: int | None = typer.Option(None, help="Optimisation steps (default {library:estimator.steps})."),
    batch_size: int | None = typer.Option(None, help="Crops per step (default {library:estimator.batch_size})."),
    crop_size: int | None = typer.Option(None, help="Side of the square training crops (default {library:estimator.crop_size})."),
    lr: float | None = typer.Option(None, help="Peak learning rate, cosine decay (default {library:estimator.lr})."),
    checkpoint_every: int | None = typer.Option(None,
        help="Steps between checkpoints and held-out evaluations (default {library:estimator.checkpoint_every})."),
    resume: bool = typer.Option(False, help="Continue from <out>.state if it exists."),
) -> None:
    """Train a bit estimator on random multi-scale crops (with flips) of your photos.

    Example: ``simplebits train-estimator photos/ --arch pixelcnn --out my.pt --steps 2000``;
    interrupted? rerun with ``--resume``. Load the result with ``--estimator my.pt``.
    """
    from simplebits_audit.estimators.training import TrainingConfig, train_estimator

    config = TrainingConfig(**given(arch=arch, steps=steps, batch_size=batch_size, crop_size=crop_size,
        lr=lr, checkpoint_every=checkpoint_every),
                            seed=session.seed)
    card = train_estimator(out, image_dir, config, resume=resume, show_progress=not session.quiet)
    console.print(f"held-out bpd {card['held_out_bpd']:.3f} (WebP lossless {card['held_out_webp_bpd']:.3f}, "
                  f"JPEG-XL lossless {card['held_out_jxl_bpd']:.3f}); wrote {out}")


@uses(net=model_file_group, head_options=head_group, prep=preprocessing_group)
def train_simplifier(
    data: str = typer.Argument(..., help="An ImageFolder directory, a CSV of path,label, or a testbed name (its train split)."),
    *,
    net: ModelFile,
    out: Path = out_option(Path("simplifier.pt"), "The simplifier file to write; OUT.ckpt holds the resumable state."),
    lam: float | None = typer.Option(None, help="Weight of the bits term (default {library:simplifier.lam})."),
    margin: float | None = typer.Option(
        None, help="Log-probability margin the simplified image must keep before bits are charged (default {library:simplifier.margin})."),
    deletion: float | None = typer.Option(
        None, help="Weight of the deletion term, which orders the map below the kept cells by what else the answer rests on "
        "(default {library:simplifier.deletion})."),
    order_steps: int | None = typer.Option(
        None, help="Steps of the order head, trained after the mask with the mask frozen: it ranks the pixels the simplified "
        "image takes from the reference in the map, and changes nothing else (default {library:simplifier.order_steps})."),
    steps: int | None = typer.Option(None, help="Training steps (default {library:simplifier.steps})."),
    batch_size: int | None = typer.Option(None, help="Images per step, per process (default {library:simplifier.batch_size})."),
    held_out: float | None = typer.Option(
        None, help="Share of DATA held out and scored at the end: top-1 kept, bits kept (default {library:simplifier.held_out})."),
    testbed_n: int | None = TESTBED_N,
    head_options: dict[str, Any],
    estimator: str | None = ESTIMATOR,
    prep: Preprocessing,
) -> None:
    """Train a learned simplifier for your model: afterwards each explanation is one forward pass.

    Resumable: rerun the same command after an interruption (Ctrl-C keeps the checkpoint). Across
    processes: ``torchrun --nproc_per_node=2 -m simplebits_audit.cli.main train-simplifier ...``.

    Examples:

      simplebits train-simplifier digits-on-photos --model testbed:digits-on-photos --out dop.pt

      simplebits audit digits-on-photos --model testbed:digits-on-photos --select all --simplifier dop.pt
    """
    from simplebits_audit.jobs.distributed import is_main_process
    from simplebits_audit.jobs.options import ModelOptions
    from simplebits_audit.jobs.simplifier import train_simplifier_job
    from simplebits_audit.training.simplifier import LOW_KEPT, LowKeptWarning

    if steps == 0:  # the library's 0 trains only a given simplifier's order head, which the command cannot be given
        raise ValueError("steps: expected a positive integer, got 0")
    device = process_device()
    with warnings.catch_warnings():  # the library's low-kept warning names library options; said below in flags
        warnings.simplefilter("ignore", LowKeptWarning)
        simplifier = train_simplifier_job(
            net.load(device), data, out, model_options=ModelOptions(preprocessing=prep, **head_options), run=run_options(device),
            estimator=estimator, lam=lam, margin=margin, deletion=deletion, order_steps=order_steps, steps=steps,
            batch_size=batch_size, testbed_n=testbed_n,
            **given(held_out=held_out),
        )
    if not is_main_process():  # under torchrun rank 0 reports
        return
    card = simplifier.card
    if "held_out" in card and card["held_out"]["top1_kept"] < LOW_KEPT:
        err_console.print(f"warning: the simplifier keeps the model's answer on only {card['held_out']['top1_kept']:.0%} of the scored "
                          "images; explanations fall back towards the original for the others. A smaller --lam or a larger --margin "
                          "keeps more", markup=False, highlight=False)
    if skipped := card.get("skipped_images"):  # said even with --quiet: the data is not all there
        err_console.print(f"warning: {skipped['count']} image(s) could not be read ({skipped['left_out']} left out, "
                          f"{skipped['replaced_in_batches']} replaced in their batches by the next image), e.g. {skipped['first']} "
                          "(the simplifier's card: skipped_images)", markup=False, highlight=False)
    scores = card["held_out"]
    kept = "top-1 kept" if card.get("head", "softmax") == "softmax" else "labels kept on their side"
    console.print(f"{scores['images']} {'training' if held_out == 0 else 'held-out'} images: {kept} {100 * scores['top1_kept']:.1f}%, "
                  f"bits kept {scores['bits_kept']:.3f}; trained {card['steps']} steps in {card['training_seconds']:.0f} s; wrote {out}")


@uses(prep=preprocessing_group)
def train(
    data: str = typer.Argument(...,
        help="An ImageFolder directory, a CSV of path,label, or a testbed name (train split; its test split validates; "
             "the multi-label digits-stripes trains one sigmoid logit per label)."),
    *,
    arch: str | None = typer.Option(None,
        help="Classifier to train from scratch: smallcnn, resnet18 or 'package.module:factory' (default {library:train.arch})."),
    budget: str | None = typer.Option(None, "--budget",
        help="Shares of the bits to keep, comma-separated, each in (0, 1]; one run each, 1 = the reference "
        "(default {library:train.budgets})."),
    lam: str | None = typer.Option(None, "--lam",
        help="Fixed weights of the bits term instead of budgets, comma-separated; 0 = the reference."),
    out: Path = out_option(Path("simplebits-train"), "Output folder: models per run, tradeoff.json, report.html."),
    epochs: int | None = typer.Option(None, help="Epochs per run (default {library:train.epochs})."),
    batch_size: int | None = typer.Option(None, help="Images per step, per process (default {library:train.batch_size})."),
    lr: float | None = typer.Option(None, help="AdamW learning rate of both networks, cosine decay (default {library:train.lr})."),
    margin: float | None = typer.Option(
        None, help="Margin the classifier must have on a simplified image before its bits are charged: in log-probability "
        "(softmax), or each label's logit signed by the label (sigmoid) (default {library:train.margin})."),
    cooldown: int | None = typer.Option(
        None, help="Epochs after --epochs in which only the classifier trains, on the frozen simplifier's thresholded "
        "images (default {library:train.cooldown}; 0: none)."),
    reference: str | None = typer.Option(None,
        help="What a removed mask cell becomes: mean (the image's mean colour), blur, grey, mosaic (its cell's mean colour: "
        "for large images whose finding is a change of brightness, such as radiographs) or auto (the mosaic on images of "
        "at least 128 px a side, else the mean) (default {library:train.reference})."),
    val_share: float | None = typer.Option(None,
        help="Share of a folder or CSV held out for validation (default {library:train.val_share})."),
    testbed_n: int | None = typer.Option(None, help="Training images when DATA is a testbed (default: its train size)."),
    val_n: int | None = typer.Option(None, help="Validation images (default {library:train.val_n})."),
    estimator: str | None = ESTIMATOR,
    prep: Preprocessing,
) -> None:
    """Train a classifier on simplified inputs, once per bits budget: how much information does the task need?

    A simplifier learns, jointly with the classifier, to keep at most the budget's share of each
    image's bits; the curve of accuracy against bits kept, and what each run keeps, go to
    OUT/report.html. Resumable: rerun the same command (finished runs are reloaded). Across
    processes: ``torchrun --nproc_per_node=2 -m simplebits_audit.cli.main train ...``.

    Example:

      simplebits train blended-digits --budget 1,0.5,0.3,0.15 --out blended
    """
    from simplebits_audit.jobs.distributed import is_main_process
    from simplebits_audit.jobs.options import TrainOptions
    from simplebits_audit.jobs.train import train_job
    from simplebits_audit.results import REPORT_FILE, accuracy_delta, strength_label

    training = TrainOptions(**given(arch=arch, budgets=budget, lams=lam, epochs=epochs, batch_size=batch_size, lr=lr, margin=margin,
                                       cooldown=cooldown, reference=reference))
    record = train_job(data, out, training=training, run=run_options(process_device()), preprocessing=prep, estimator=estimator,
                       testbed_n=testbed_n, val_n=val_n, **given(val_share=val_share))
    if not is_main_process():
        return
    table = Table("run", "λ", "accuracy (simplified; Δ ± s.e.)", "accuracy (original)", "bits kept",
        "WebP kept", "JPEG-XL kept", *(["bits inside mask / mask share"] if record["has_masks"] else []))
    for p in record["points"]:
        table.add_row(strength_label(p), f"{p['lam']:.3g}", f"{100 * p['val_accuracy_simplified']:.1f}% ({accuracy_delta(record, p)})",
                      f"{100 * p['val_accuracy_original']:.1f}%", f"{p['val_bits_kept']:.3f}", f"{p['webp_kept']:.3f}",
                      f"{p['jxl_kept']:.3f}",
                      *([f"{p['inside_ratio']:.2f}×"] if record["has_masks"] else []))
    console.print(table)
    best = record["simplest_within_2pt"]
    console.print(f"simplest within 2 points of {record['reference']}: {best}" if best is not None
                  else "no run within 2 points of the reference")
    if skipped := record["settings"].get("skipped_images"):  # said even with --quiet: the data is not all there
        err_console.print(f"warning: {skipped} image(s) could not be read and were left out (tradeoff.json: settings.skipped_images)")
    console.print(f"report: {out / REPORT_FILE}")


@uses(prep=pixels_group)
def condense(
    data: str = typer.Argument(...,
        help="Labelled training images: an ImageFolder directory, a CSV of path,label, or a testbed name (its train split)."),
    *,
    out: Path = out_option(Path("simplebits-condense"), "Output folder; rerun the same command to resume."),
    images_per_class: int | None = typer.Option(None, "--ipc", help="Synthetic images per class (default {library:condense.ipc})."),
    lam: float | None = typer.Option(None,
        help="Weight of the bits term against the gradient-matching distance (default {library:condense.lam})."),
    outer_steps: int | None = typer.Option(None, help="Fresh networks to match gradients on (default {library:condense.outer_steps})."),
    near: int | None = typer.Option(None,
        help="Last step, near-lossless: the residuals against the analytic coder's prediction of at most this many "
        "grey levels are set to 0 (G moves by at most NEAR levels, R and B by at most 2 x NEAR), per image where it saves "
        "bits; 0: off (default {library:condense.near})."),
    arch: str | None = typer.Option(
        None, help="Network matched and evaluated: convnet (instance norm) or smallcnn (batch norm) (default {library:condense.arch})."),
    test_data: str | None = typer.Option(None, "--test",
        help="Test images (folder, CSV or testbed); default: a testbed's test split or a held-out share of DATA."),
    held_out: float | None = typer.Option(
        None, help="Share of DATA held out for testing when there is no --test and DATA is not a testbed "
        "(default {library:condense.held_out})."),
    baselines: bool | None = typer.Option(
        None, "--baselines/--no-baselines",
        help="Also condense without the bits term and evaluate a random real subset; "
        "doubles the time (default {library:condense.baselines})."),
    n_models: int | None = typer.Option(None,
        help="Classifiers trained per training set for the accuracy table (default {library:condense.n_models})."),
    epochs: int | None = typer.Option(None, help="Epochs of each evaluation classifier (default {library:condense.epochs})."),
    testbed_n: int | None = typer.Option(None, help="Number of training images when DATA is a testbed."),
    estimator: str | None = ESTIMATOR,
    prep: Preprocessing,
    labels: Path | None = LABELS,
) -> None:
    """Condense a training set to a few synthetic images per class, penalising their bits (gradient matching).

    Writes the condensed images, condense.json and report.html (the images per class with their bits
    and WebP and JPEG-XL sizes, and the accuracy of classifiers trained on them beside a random real subset of the
    same size and the condensation without the bits term). Resumable: rerun the same command.

    Examples:

      simplebits condense digits-on-photos --ipc 10 --out condensed/

      simplebits condense train_folder/ --test val_folder/ --size 32 --crop 32 --ipc 1 --lam 3
    """
    from simplebits_audit.jobs.condense import run_condense
    from simplebits_audit.jobs.options import CondenseOptions
    from simplebits_audit.results import REPORT_FILE
    from simplebits_audit.training.condensation import near_pass_summary

    condensation = CondenseOptions(**given(images_per_class=images_per_class, lam=lam, arch=arch, outer_steps=outer_steps, near=near,
                                           baselines=baselines, n_models=n_models, epochs=epochs))
    results = run_condense(data, out, condensation=condensation, run=run_options(), estimator=estimator,
        test_data=test_data, testbed_n=testbed_n,
                           preprocessing=prep, class_names=read_labels(labels), **given(held_out=held_out))
    if not session.quiet:
        table = Table("training set", "images", "test accuracy %", "bits / dim", "WebP bits / dim", "JPEG-XL bits / dim")
        for name, row in results["evaluation"].items():
            table.add_row(name, str(row["images"]), f"{100 * row['accuracy_mean']:.1f} ± {100 * row['accuracy_std']:.1f}",
                          f"{row['bpd']:.3f}", f"{row['webp_bpd']:.3f}",
                          "—" if row.get("jxl_bpd") is None else f"{row['jxl_bpd']:.3f}")  # runs resumed from before JPEG-XL
        console.print(table)
        for kind, written in results["sets"].items():
            if (line := near_pass_summary(written["settings"])) is not None:
                console.print(f"{kind}: {line}", markup=False)
    if skipped := results["data"]["skipped"]:  # said even with --quiet: the data is not all there
        err_console.print(f"warning: {len(skipped)} image(s) could not be read and were left out, e.g. {skipped[0]} "
                          "(condense.json: data.skipped)", markup=False, highlight=False)
    console.print(f"report: {out / REPORT_FILE}")


__all__ = ["condense", "train", "train_estimator", "train_simplifier"]
