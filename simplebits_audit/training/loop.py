"""The one resumable-run loop every training setting runs in.

A training setting (:func:`~simplebits_audit.training.train_simplifier`,
:func:`~simplebits_audit.training.train_with_simplification`, :func:`~simplebits_audit.training.condense`)
builds its networks and optimiser, then hands :class:`ResumableRun` two functions: one that takes
the step with a given number (its random draws follow from :func:`step_seed`), and one that says
what the checkpoint holds besides the step. The run owns the rest, once for all of them:

* the settings key: what a checkpoint must agree on to be resumed (JSON-normalised), and the
  one-line refusal naming the settings that differ;
* the checkpoint: written atomically (:func:`~simplebits_audit._io.save_torch`) every
  ``checkpoint_every`` seconds, at the setting's own boundaries (an epoch), on Ctrl-C and at the
  end, by rank 0 only, and read back with ``weights_only=True``;
* deferred Ctrl-C (:class:`~simplebits_audit._helpers.DeferredInterrupt`): an interrupt lands
  between steps, so the checkpoint never holds half a step;
* the progress bar (rich; rank 0 only);
* rank (:func:`rank_and_world`); the device follows the rule the jobs share
  (:func:`~simplebits_audit._helpers.run_device`).

A run whose step function draws all its randomness from ``(seed, step)`` ends, after any number
of interruptions and resumes, exactly where the uninterrupted run would have.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.progress import BarColumn, TextColumn, TimeRemainingColumn

from .._helpers import DeferredInterrupt, ForcedInterrupt
from .._io import save_torch
from .._progress import JobProgress

__all__ = [
    "ResumableRun", "changed_settings", "channels_last_fits", "check_checkpoint_every", "progress_bar", "rank_and_world",
    "settings_key", "step_seed",
]

#: Convolutional networks train in the channels-last memory layout where the classifier accepts it: a joint step of the
#: SmallCNN and the simplifier ran 1.2-1.3x (32 px, 3 channels) to 1.5x (128 px, 1 channel) faster on one CPU thread
#: (``benchmarks/training_speed.py``). False: the contiguous layout, as before 2026-12-03.
CHANNELS_LAST = True


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process under ``torch.distributed`` (``torchrun``), ``(0, 1)`` without it."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def step_seed(seed: int, step: int, *stream: int) -> int:
    """The seed, in [0, 2**63), of one stream of random draws at one step.

    Integers ``seed``, ``step`` and ``stream`` (e.g. the rank and a number per kind of draw) give the
    same seed in every process and run: a tuple of integers hashes alike whatever ``PYTHONHASHSEED``
    is (64-bit CPython >= 3.8), so a resumed run repeats the uninterrupted run's draws. The one
    derivation of every training setting: changing it changes every trained result.
    """
    return hash((seed, step, *stream)) % (2**63)


def channels_last_fits(
    model: torch.nn.Module, pixels: torch.Tensor, to_model: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> bool:
    """Whether ``model`` answers ``pixels`` (B, C, H, W) in the channels-last layout as in the contiguous one (:data:`CHANNELS_LAST`).

    ``to_model`` (pixels -> the model's input; default none) runs inside the trial, so a transform
    that needs the contiguous layout is caught too. Both forwards run on a deep copy of ``model``
    in eval mode, without gradient: ``model`` itself is neither run nor changed. False when the
    setting is off, off the CPU (the speed-up was measured there only), for inputs that are not
    4-D, when the forward raises (a ``view`` of channels-last activations does), or when the
    logits differ by more than float32 noise (relative 1e-4).
    """
    if not CHANNELS_LAST or pixels.dim() != 4 or pixels.device.type != "cpu":
        return False
    to_model = to_model or (lambda x: x)
    trial = copy.deepcopy(model).eval()
    with torch.no_grad():
        expected = trial(to_model(pixels.contiguous()))
        try:
            got = trial.to(memory_format=torch.channels_last)(to_model(pixels.contiguous(memory_format=torch.channels_last)))
        except Exception:  # whatever the user's forward or transform raises in this layout: train in the contiguous one
            return False
    if not (isinstance(got, torch.Tensor) and isinstance(expected, torch.Tensor) and got.shape == expected.shape):
        return False
    scale = float(expected.abs().max().clamp_min(1)) if expected.numel() else 1.0
    return bool(torch.allclose(got.float(), expected.float(), rtol=1e-4, atol=1e-5 * scale))


def cosine_decay(peak: float, step: float, length: float) -> float:
    """The learning rate ``step`` steps into a cosine decay from ``peak`` to 0 over ``length`` steps (at least 1)."""
    return peak * 0.5 * (1 + math.cos(math.pi * step / max(1, length)))


def check_checkpoint_every(seconds: Any) -> float:
    """``seconds`` between checkpoint writes, checked (a number > 0): ``ValueError`` naming ``checkpoint_every``."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"checkpoint_every: expected seconds > 0, got {seconds!r}")
    return float(seconds)


def settings_key(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as they read back from JSON (tuples become lists, keys strings): what a checkpoint stores and compares."""
    return json.loads(json.dumps(settings))


def changed_settings(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The names, sorted, of the settings that differ between two keys (present in one only counts)."""
    return sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))


def progress_bar(show: bool) -> JobProgress:
    """The training progress bar: description, bar, steps done / total, the setting's ``stats`` text, time left."""
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[stats]}"), TimeRemainingColumn()]
    return JobProgress(*columns, disable=not show)


class ResumableRun:
    """Steps ``0 .. total - 1`` of one training run, resumable from its checkpoint.

    Parameters
    ----------
    checkpoint : path or None
        The resumable state (no file is written without one).
    settings : dict
        Everything the run's result depends on (JSON-able); a checkpoint written with other
        settings is refused (``ValueError`` naming them). Leave out what may change between runs
        (e.g. the number of steps when training longer equals resuming).
    total : int
        Steps of the run (>= 0).
    total_name : str
        The argument that sets ``total``, named when a checkpoint is already past it.
    checkpoint_every : float
        Seconds between checkpoint writes (> 0).
    device : optional
        Where the checkpoint's tensors are loaded.

    Attributes
    ----------
    step : int
        The next step to take (steps done so far, resumed ones included).
    rank, world : int
        This process and the number of processes (:func:`rank_and_world`); only rank 0 writes.
    """

    def __init__(
        self, checkpoint: str | Path | None, settings: dict[str, Any], *, total: int, total_name: str = "steps",
        checkpoint_every: float = 60.0, device: str | torch.device | None = None,
    ) -> None:
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.key = settings_key(settings)
        self.total, self.total_name, self.every = int(total), total_name, check_checkpoint_every(checkpoint_every)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.rank, self.world = rank_and_world()
        self.step, self.elapsed = 0, 0.0
        self._started = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Training time so far, the resumed runs' included."""
        return self.elapsed + time.perf_counter() - self._started

    def resume(self) -> dict[str, Any] | None:
        """The saved state when the checkpoint exists (its settings checked; ``step`` set from it), else None.

        ``ValueError`` naming ``checkpoint`` when it is from a run with other settings, and naming
        ``total_name`` when it is already past ``total`` steps.
        """
        if self.checkpoint is None or not self.checkpoint.is_file():
            return None
        state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        changed = changed_settings(json.loads(state["run_key"]), self.key)
        if changed:
            raise ValueError(f"checkpoint: {str(self.checkpoint)!r} is from a run with other settings ({changed}); "
                             "delete it or change the path")
        self.step, self.elapsed = int(state["step"]), float(state["seconds"])
        if self.step > self.total:
            raise ValueError(f"{self.total_name}: the checkpoint {str(self.checkpoint)!r} is already at step {self.step}; "
                             "ask for at least that many")
        self._started = time.perf_counter()
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write the settings key, ``step``, ``seconds`` and ``state`` to the checkpoint atomically (rank 0 only)."""
        if self.checkpoint is not None and self.rank == 0:
            save_torch({"run_key": json.dumps(self.key), **state, "step": self.step, "seconds": self.seconds}, self.checkpoint)

    def _any_rank(self, requested: bool) -> bool:
        """Whether any process was interrupted: under torchrun every rank stops at the same step (a rank that
        stopped alone would leave the others waiting in the next step's all-reduce, and nothing saved)."""
        if self.world == 1 or not dist.is_initialized():
            return requested
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        flag = torch.tensor([int(requested)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def run(
        self, take_step: Callable[[int], str], state: Callable[[], dict[str, Any]], *, description: str, show_progress: bool = False,
        boundary: Callable[[int], bool] | None = None,
    ) -> None:
        """Take the steps from ``step`` to ``total``, checkpointing as it goes; returns when all are taken.

        ``take_step(step)`` takes one step and returns the progress bar's text; ``state()`` is what
        the checkpoint holds besides the step. ``boundary(step)``, called before each step and once
        after the last, does the setting's between-steps work (closing an epoch) and returns True
        when the checkpoint should be written now. Ctrl-C, or a ``KeyboardInterrupt`` raised inside
        a step, writes the checkpoint (every finished step) and raises ``KeyboardInterrupt``.
        """
        last_saved = time.perf_counter()
        with DeferredInterrupt() as stop, progress_bar(show_progress and self.rank == 0) as progress:
            task = progress.add_task(description, total=self.total, completed=self.step, stats="")
            try:
                while True:
                    if (boundary is not None and boundary(self.step)) or time.perf_counter() - last_saved > self.every:
                        self.save(state())
                        last_saved = time.perf_counter()
                    if self._any_rank(stop.requested):  # lands between steps: the checkpoint never holds half a step
                        raise KeyboardInterrupt
                    if self.step >= self.total:
                        break
                    stats = take_step(self.step)
                    self.step += 1
                    progress.update(task, advance=1, stats=stats)
            except ForcedInterrupt:
                raise  # a second Ctrl-C mid-step: the state may hold half a step; the last checkpoint stays
            except KeyboardInterrupt:
                # The checkpoint holds every finished step; running again resumes there.
                self.save(state())
                raise
        self.save(state())
