"""Condense digits-on-photos to ten synthetic images per class, with and without the bits term.

Gradient matching (Zhao et al. 2021) learns images that train a network the way the real data
does; the bits term (SimpleBits) makes them as simple as it can. Fresh classifiers trained on each
set are compared on the test split with a random real subset of the same size. Writes a PNG grid
(a class per row) of both sets.

    python examples/condense_digits.py          # about half an hour on one CPU core

The command line does the same, resumably, with a report: ``simplebits condense digits-on-photos --ipc 10``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from simplebits_audit import condense, evaluate_condensed, testbeds


def grid(images: torch.Tensor, per_row: int) -> np.ndarray:
    """Images (N, 3, H, W) in [0, 1] as one uint8 picture (H', W', 3), ``per_row`` to a row, upscaled twice."""
    big = F.interpolate(images, scale_factor=2, mode="nearest")
    rows = [torch.cat(list(big[i : i + per_row]), 2) for i in range(0, len(big), per_row)]
    return (torch.cat(rows, 1).permute(1, 2, 0) * 255).round().byte().numpy()


def main(out: str = "condensed_digits.png", *, n_train: int | None = None, n_test: int | None = None, images_per_class: int = 10,
         outer_steps: int | None = None, n_models: int = 3, epochs: int | None = None) -> dict[str, dict]:
    train = testbeds.load("digits-on-photos", "train", n=n_train)
    test = testbeds.load("digits-on-photos", "test", n=n_test)
    simplified = condense(train, images_per_class=images_per_class, outer_steps=outer_steps, show_progress=True)
    plain = condense(train, images_per_class=images_per_class, outer_steps=outer_steps, lam=0.0, show_progress=True)
    rows = evaluate_condensed(simplified, test, train_data=train, without_bits=plain, n_models=n_models, epochs=epochs, show_progress=True)
    for name, row in rows.items():
        print(f"{name:>18}: test accuracy {100 * row['accuracy_mean']:.1f} ± {100 * row['accuracy_std']:.1f} %, "
              f"{row['bpd']:.2f} bits/dim ({row['webp_bpd']:.2f} as WebP)")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(simplified.images, images_per_class)).save(out)
    Image.fromarray(grid(plain.images, images_per_class)).save(Path(out).with_name(Path(out).stem + "_without_bits.png"))
    return rows


if __name__ == "__main__":
    main()
