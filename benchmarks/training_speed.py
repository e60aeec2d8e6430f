"""Training with simplification: seconds per step in the channels-last and the contiguous memory layout.

Times :func:`~simplebits_audit.training.train_with_simplification` (SmallCNN from scratch, batch 64,
the simplifier training from the first step: ``warmup=0``, no cooldown) at a 32 px three-channel
report testbed and at ``radiograph``'s 128 px single channel, once per layout in the same process
(:data:`~simplebits_audit.training.loop.CHANNELS_LAST` switched; the contiguous layout is the
reference, as before 2026-12-03). A budget run (budget 0.3: the originals' forward, the gate and
the budget's dual step) and a reference run (budget 1) each: the steps after the first
(allocation) and before the last (the budget check follows it).

    python benchmarks/training_speed.py                 # 2 torch threads, 8 timed steps per cell
    python benchmarks/training_speed.py --threads 1 --steps 4
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from simplebits_audit import testbeds
from simplebits_audit.models import build_architecture
from simplebits_audit.training import joint, loop
from simplebits_audit.training.data import Batches

CELLS = (("colour-cue", 32, 3), ("radiograph", 128, 1))


def seconds_per_step(name: str, budget: float, steps: int, channels_last: bool) -> float:
    """Mean seconds of ``steps`` steps of one run, after its first step (allocation) and before its last."""
    data = testbeds.load(name, "train", n=64 * (steps + 2), seed=0)
    labels = data.labels if data.labels.dim() == 1 else data.labels[:, 0]
    n_classes = int(labels.max()) + 1
    stamps: list[float] = []
    real_call = Batches.__call__

    def stamped(self, at):  # every step asks for its batch first (the run's first peek at the data asks for step 0 too)
        stamps.append(time.perf_counter())
        return real_call(self, at)

    was = loop.CHANNELS_LAST
    loop.CHANNELS_LAST = channels_last
    Batches.__call__ = stamped
    try:
        torch.manual_seed(0)
        joint.train_with_simplification(build_architecture("smallcnn", n_classes, data.images.shape[1], data.images.shape[-1]),
                                         (data.images, labels), budget=budget, epochs=1, batch_size=64, warmup=0.0, cooldown=0)
    finally:
        Batches.__call__ = real_call
        loop.CHANNELS_LAST = was
    starts = stamps[-(steps + 2):]  # the starts of the run's steps 0 .. steps + 1
    return (starts[-1] - starts[1]) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run (one more runs first)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = Table(title=f"seconds per step, batch 64, {args.threads} torch thread(s)")
    for column in ("testbed", "size", "run", "contiguous (reference)", "channels-last", "speed-up"):
        table.add_column(column)
    for name, size, channels in CELLS:
        for budget in (0.3, 1.0):
            # the two layouts back to back, in one process (a busy machine slows both about alike)
            times = {layout: seconds_per_step(name, budget, args.steps, layout) for layout in (False, True)}
            table.add_row(name, f"{channels} x {size} x {size}", f"budget {budget:g}", f"{times[False]:.3f}", f"{times[True]:.3f}",
                          f"{times[False] / times[True]:.2f}x")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
