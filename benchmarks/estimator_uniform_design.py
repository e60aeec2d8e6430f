"""Design trial: the weight of the analytic coder's uniform part, chosen on training photo crops.

The analytic coder's per-value distribution is ``(1 - w) Laplace + w / 256``. A pure Laplace
(``w = 0``) rated few-level images above 8 bits per dimension; this prints, for several ``w``,
the estimator's bpd beside WebP lossless on crops of the *training* photos (the testbeds' train
split, never the held-out photos ``benchmarks/estimators.py`` reports on) at 32 and 64 px, the
same crops posterised to 2, 4 and 16 levels per channel, a flat image and a half-flat one. The
default (2^-10) and why: docs/design-log.md, "Bit estimators".

    python benchmarks/estimator_uniform_design.py [--crops 128] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch
from rich.console import Console
from rich.table import Table

from simplebits_audit.codecs import codec_bpd
from simplebits_audit.estimators.analytic import AnalyticCoder
from simplebits_audit.photos import split_crop_sampler

WEIGHTS = (0.0, 2.0**-14, 2.0**-12, 2.0**-10, 2.0**-8, 2.0**-6)


def eight_bit(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sets: dict[str, torch.Tensor] = {}
    for size in (32, 64):
        photos = eight_bit(split_crop_sampler("train", size, (0.1, 1.0), seed=5).sample(args.crops))
        sets[f"photos {size} px"] = photos
        for k in (2, 4, 16):
            sets[f"{k} levels, {size} px"] = eight_bit(torch.round(photos * (k - 1)) / (k - 1))
    g = torch.Generator().manual_seed(0)
    sets["flat 32 px (8 colours)"] = eight_bit(torch.rand(8, 3, 1, 1, generator=g).expand(8, 3, 32, 32).contiguous())
    sets["half flat 32 px"] = eight_bit(torch.cat([torch.full((8, 3, 32, 16), 0.2), torch.full((8, 3, 32, 16), 0.7)], 3))
    table = Table(title=f"analytic coder bpd by uniform weight w, training photo crops ({args.crops} per size), threads {args.threads}")
    table.add_column("images")
    table.add_column("WebP", justify="right")
    for w in WEIGHTS:
        table.add_column("w = 0" if w == 0 else f"w = 2^{int(torch.log2(torch.tensor(w)))}", justify="right")
    coders = [AnalyticCoder(uniform_weight=w) for w in WEIGHTS]
    for name, x in sets.items():
        with torch.no_grad():
            row = [name, f"{float(codec_bpd(x, 'webp').mean()):.3f}"] + [f"{float(c.bpd(x).mean()):.4f}" for c in coders]
        table.add_row(*row)
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
