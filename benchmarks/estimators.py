"""Bit estimators against real codecs on held-out photo crops, and their speed.

For each registered estimator, on 32x32 and 64x64 multi-scale crops of the held-out package
photos: bpd; PNG (Pillow, optimize) and WebP lossless (Pillow, method 4) bpd of the same crops;
the ratio to WebP; forward+backward milliseconds for a batch of 64 at 32x32; parameters. Then the
analytic coder's forward+backward time at real sizes against the same formulas run through plain
autograd (``analytic.autograd_bits_map``), measured in the same run.

    python benchmarks/estimators.py [--crops 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from simplebits_audit import list_estimators, load_estimator
from simplebits_audit.codecs import codec_bpd
from simplebits_audit.estimators import DEFAULT_ESTIMATOR
from simplebits_audit.estimators.analytic import autograd_bits_map
from simplebits_audit.photos import held_out_crops


def forward_backward_ms(estimator, repeats: int = 5, shape: tuple[int, ...] = (64, 3, 32, 32), bits=None) -> float:
    """Median milliseconds of ``bits(x).sum().backward()`` (default: ``estimator.bits``) on random images of ``shape``."""
    bits = estimator.bits if bits is None else bits
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(repeats + 1):
        xi = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        bits(xi).sum().backward()
        times.append(time.perf_counter() - t0)
    return 1000 * sorted(times[1:])[len(times[1:]) // 2]  # median, first call is warm-up


def adjoint_table() -> Table:
    """The analytic coder (hand-written adjoint) against the same formulas through plain autograd."""
    coder = load_estimator("analytic")
    table = Table(title="analytic coder, forward+backward ms: hand-written adjoint vs plain autograd (same formulas, same run)")
    for col in ("images", "coder ms", "plain autograd ms", "speed-up"):
        table.add_column(col, justify="right")
    for shape in ((64, 3, 32, 32), (1, 3, 224, 224), (1, 3, 512, 512), (1, 1, 1024, 1024)):
        ours = forward_backward_ms(coder, shape=shape)
        plain = forward_backward_ms(coder, shape=shape, bits=lambda x: autograd_bits_map(coder, x).flatten(1).sum(1))
        table.add_row("x".join(map(str, shape)), f"{ours:.0f}", f"{plain:.0f}", f"{plain / ours:.1f}x")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    crops = {size: held_out_crops(args.crops, size=size) for size in (32, 64)}
    codecs = {size: (codec_bpd(x, "png").mean().item(), codec_bpd(x, "webp").mean().item()) for size, x in crops.items()}
    table = Table(title=f"held-out photo crops ({args.crops} per size), torch threads {torch.get_num_threads()}")
    for col in (
        "estimator",
        "bpd 32",
        "PNG 32",
        "WebP 32",
        "ratio WebP 32",
        "bpd 64",
        "PNG 64",
        "WebP 64",
        "ratio WebP 64",
        "fwd+bwd ms (64x3x32x32)",
        "parameters",
    ):
        table.add_column(col, justify="right")
    for name in list_estimators():
        est = load_estimator(name)
        row = [name + (" (default)" if name == DEFAULT_ESTIMATOR else "")]
        for size, x in crops.items():
            with torch.no_grad():
                bpd = torch.cat([est.bpd(c) for c in x.split(64)]).mean().item()
            png, webp = codecs[size]
            row += [f"{bpd:.3f}", f"{png:.3f}", f"{webp:.3f}", f"{bpd / webp:.2f}"]
        row += [f"{forward_backward_ms(est):.0f}", f"{est.num_parameters:,}"]
        table.add_row(*row)
    console = Console(width=200)
    console.print(table)
    console.print(adjoint_table())


if __name__ == "__main__":
    main()
