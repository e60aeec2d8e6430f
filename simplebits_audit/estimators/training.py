"""Train a bit estimator on random multi-scale crops of photos, with checkpoints and resume.

Whole photos are held out for evaluation (never cropped for training). The training state is
checkpointed atomically to ``<out>.state`` every ``checkpoint_every`` steps; ``resume=True``
continues from it. The final weights go to ``out`` together with a JSON model card
``out.with_suffix(".json")``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, TextColumn, TimeRemainingColumn

from .. import photos as photo_data
from .._helpers import luminance
from .._io import check_parent, save_json, save_torch
from .._progress import JobProgress
from ..codecs import codec_bpd
from . import ARCHITECTURES, BitEstimator


@dataclass
class TrainingConfig:
    """Settings of :func:`train_estimator` (all recorded in the model card)."""

    arch: str = "pixelcnn"
    steps: int = 4000
    batch_size: int = 64
    crop_size: int = 32
    lr: float = 2e-3
    scales: tuple[float, float] = (0.125, 1.0)
    model_config: dict[str, Any] = field(default_factory=dict)
    eval_crops: int = 256
    checkpoint_every: int = 200
    seed: int = 0
    threads: int | None = None
    #: share of steps whose batch is the crops' luminance, one channel (for estimators that rate grayscale natively)
    grey_fraction: float = 0.0
    #: share of crops blended towards their mean colour under a smooth random mask, as simplified images look,
    #: so that flat and partly flat images are in the training distribution
    simple_fraction: float = 0.0


def _training_batch(sampler: photo_data.CropSampler, config: TrainingConfig, gen: torch.Generator) -> torch.Tensor:
    """One batch of crops with :attr:`TrainingConfig.simple_fraction` of them partly flattened and, on
    :attr:`TrainingConfig.grey_fraction` of steps, converted to one-channel luminance (8-bit values)."""
    x = sampler.sample(config.batch_size)
    n_simple = int(round(config.simple_fraction * len(x)))
    if n_simple:
        # a smooth mask: bilinear upsampling of a 2..8 cell random grid; 0 -> the crop's mean colour
        cells = int(torch.randint(2, 9, (1,), generator=gen))
        mask = F.interpolate(torch.rand(n_simple, 1, cells, cells, generator=gen), size=x.shape[-2:], mode="bilinear", align_corners=False)
        mask = (mask * 3 - 1).clamp(0, 1)
        flat = x[:n_simple].mean((2, 3), keepdim=True)
        x[:n_simple] = torch.round((mask * x[:n_simple] + (1 - mask) * flat) * 255) / 255
    if config.grey_fraction and float(torch.rand(1, generator=gen)) < config.grey_fraction:
        x = torch.round(luminance(x).unsqueeze(1) * 255) / 255
    return x


def _held_out_eval(model: BitEstimator, crops: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        bpd = float(torch.cat([model.bpd(c) for c in crops.split(64)]).mean())
    model.train()
    return bpd


def train_estimator(
    out: str | Path,
    image_dir: str | Path | None = None,
    config: TrainingConfig | None = None,
    *,
    resume: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train an estimator and write ``out`` (weights checkpoint) and its model card.

    Parameters
    ----------
    out : path
        Checkpoint to write (loadable with :func:`simplebits_audit.load_estimator`).
    image_dir : path, optional
        Folder of photos; about 15 % of whole photos (by a stable hash of the name) are held out.
        Default: the package photos not in :data:`simplebits_audit.photos.HELD_OUT` plus Debian's
        wallpapers when installed, evaluated on the held-out package photos.
    config : TrainingConfig, optional
    resume : bool
        Continue from ``<out>.state`` if it exists.
    show_progress : bool
        Show a rich progress bar.

    Returns
    -------
    dict
        The model card.
    """
    config = config or TrainingConfig()
    if config.arch not in ARCHITECTURES or config.arch == "analytic":
        raise ValueError(f"arch: expected one of {sorted(set(ARCHITECTURES) - {'analytic'})}, got {config.arch!r}")
    if config.steps < 1 or config.batch_size < 1:
        raise ValueError("steps and batch_size must be positive")
    out = check_parent(out, "out")  # before the training: a checkpoint under a file could never be written
    state_path = out.with_name(out.name + ".state")
    if image_dir is None:
        train_paths, eval_paths = photo_data.training_photos(), photo_data.held_out_photos()
    else:
        train_paths, eval_paths = photo_data.split_held_out(photo_data.image_files(image_dir))
        if not train_paths or not eval_paths:
            raise ValueError(f"image_dir: need at least 2 images in {str(image_dir)!r} (some are held out)")
    if config.threads:
        torch.set_num_threads(config.threads)

    torch.manual_seed(config.seed)
    model = ARCHITECTURES[config.arch](**config.model_config)
    optimizer = (
        torch.optim.Adamax(model.parameters(), lr=config.lr)
        if config.arch == "glow"
        else torch.optim.Adam(model.parameters(), lr=config.lr)
    )
    start_step, elapsed, history = 0, 0.0, []
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, elapsed, history = state["step"], state["elapsed"], state["history"]

    train_photos = [photo_data.load_rgb(p) for p in train_paths]
    eval_crops = photo_data.CropSampler([photo_data.load_rgb(p) for p in eval_paths], config.crop_size, config.scales, seed=1234).sample(
        config.eval_crops
    )
    # A new stream per resume point keeps resumed runs reproducible.
    sampler = photo_data.CropSampler(train_photos, config.crop_size, config.scales, seed=config.seed * 100_003 + start_step)
    gen = torch.Generator().manual_seed(config.seed * 100_003 + start_step)
    schedule = lambda step: 0.5 * (1 + math.cos(math.pi * step / config.steps))  # noqa: E731 (cosine decay)

    def save_state(step: int) -> None:
        save_torch(
            {"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "elapsed": elapsed, "history": history},
            state_path,
        )

    model.train()
    t0 = time.perf_counter()
    with JobProgress(
        TextColumn("[bold]training {task.fields[arch]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} loss {task.fields[loss]:.3f} bpd"),
        TimeRemainingColumn(),
        disable=not show_progress,
        transient=False,
    ) as progress:
        task = progress.add_task(f"training {config.arch}", total=config.steps, completed=start_step, arch=config.arch,
                                 loss=float("nan"), stats="")
        for step in range(start_step, config.steps):
            for group in optimizer.param_groups:
                group["lr"] = config.lr * schedule(step)
            x = _training_batch(sampler, config, gen)
            loss = model.bpd(x, noise=True).mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged at step {step}: loss {loss.item()}; resume from the last checkpoint "
                                         "with a lower lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            progress.update(task, advance=1, loss=loss.item(), stats=f"loss {loss.item():.3f} bpd")
            done = step + 1
            if done % config.checkpoint_every == 0 or done == config.steps:
                elapsed += time.perf_counter() - t0
                t0 = time.perf_counter()
                history.append({"step": done, "train_bpd": loss.item(), "held_out_bpd": _held_out_eval(model, eval_crops)})
                save_state(done)

    model.eval()
    held_out_bpd = history[-1]["held_out_bpd"] if history else _held_out_eval(model, eval_crops)
    card = {
        "name": out.stem,
        "arch": config.arch,
        "config": model.config,
        "training": {k: v for k, v in vars(config).items() if k != "model_config"},
        "training_data": {
            "photos": [photo_data.photo_id(p) for p in train_paths],
            "held_out_photos": [photo_data.photo_id(p) for p in eval_paths],
        },
        "data_licence": "photos shipped with scikit-image, scikit-learn and matplotlib (see their data READMEs); "
        "Debian plasma-workspace-wallpapers, gnome-backgrounds, sway-backgrounds, lomiri-wallpapers "
        "(licences per wallpaper: /usr/share/wallpapers/*/metadata*, /usr/share/doc/<package>/copyright)",
        "steps": config.steps,
        "held_out_bpd": held_out_bpd,
        "held_out_webp_bpd": float(codec_bpd(eval_crops, "webp").mean()),
        "held_out_png_bpd": float(codec_bpd(eval_crops, "png").mean()),
        "held_out_jxl_bpd": float(codec_bpd(eval_crops, "jxl", effort=9).mean()),  # JPEG-XL lossless at effort 9, as benchmarked
        "parameters": model.num_parameters,
        "training_seconds": round(elapsed, 1),
        "history": history,
    }
    save_torch({"arch": config.arch, "config": model.config, "state_dict": model.state_dict(), "card": card}, out)
    save_json(card, out.with_suffix(".json"))
    return card
