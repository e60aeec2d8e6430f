"""Design trial (issue 22): the detail axis removing texture towards superpixel means instead of a blur.

The factorised engine's detail axis blends towards a Gaussian blur, which also softens an object's
outline; on ``shape-cue`` the engine keeps the outline's ring with its detail (detail kept 0.58,
region 0.10 inside the object). Would a removal that flattens texture but keeps edges (each SLIC
superpixel of the current image replaced by its mean, ``skimage.segmentation.slic``) let the
shape classifier give the detail up and keep the silhouette's region instead? This runs
``benchmarks/information.py`` with the detail removal swapped (everything else as shipped) and
prints its tables; compare with the same command on ``benchmarks/information.py``. Result and
verdict: docs/design-log.md, "Factorised engine".

    OMP_NUM_THREADS=1 python benchmarks/information_segments_design.py --segments 64 --split design --n 64 --only cues
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

import numpy as np
import torch
from skimage.segmentation import slic

import simplebits_audit.simplification.factorised as factorised

_REMOVE = factorised.remove


def superpixel_means(x: torch.Tensor, n_segments: int, compactness: float) -> torch.Tensor:
    """Each SLIC superpixel of each image (B, C, H, W) replaced by its mean (differentiable in ``x``)."""
    b, c, h, w = x.shape
    pixels = x.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for i in range(b):
        image = pixels[i] if c == 3 else pixels[i][..., 0]
        labels = slic(image, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1 if c == 3 else None)
        labels = torch.from_numpy(labels.astype(np.int64)).view(-1).to(x.device)
        k = int(labels.max()) + 1
        sums = torch.zeros(c, k, dtype=x.dtype, device=x.device).index_add(1, labels, x[i].reshape(c, -1))
        out.append((sums / torch.bincount(labels, minlength=k).to(x.dtype))[:, labels].view(c, h, w))
    return torch.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=64, help="SLIC superpixels per image")
    parser.add_argument("--compactness", type=float, default=10.0)
    args, rest = parser.parse_known_args()

    def remove(x, axis, *, reference, blur_sigma):
        if axis == "detail":
            return superpixel_means(x, args.segments, args.compactness)
        return _REMOVE(x, axis, reference=reference, blur_sigma=blur_sigma)

    factorised.remove = remove  # compose() looks the removal up in its module
    sys.argv = ["benchmarks/information.py", *rest]
    runpy.run_path(str(Path(__file__).with_name("information.py")), run_name="__main__")


if __name__ == "__main__":
    main()
