"""Bit estimators against real codecs on held-out photo crops, and their speed.

First the real codecs on multi-scale crops of the held-out package photos at 32, 64 and 224 px
(PNG with Pillow's optimize, WebP lossless at method 4, JPEG-XL lossless at effort 9 via
imagecodecs) and on the one-channel luminance of the 64 px crops. Then for each registered
estimator on the same crops: bpd and its ratio to WebP and to JPEG-XL, the ratio on the grey crops
(rated natively where the estimator can), the bpd of a flat 32x32 image, forward+backward
milliseconds for a batch of 64 at 32x32 and for one image at 224 px (RGB) and 1024 px (grey),
parameters. Then few-level images (the 64 px crops posterised to 2, 4 and 16 levels per channel:
drawings, masks, palette images), where each estimator's bpd is set against WebP and JPEG-XL,
beside the analytic coder without its uniform part (``uniform_weight=0``, the coder before
2026-11-30). Then the
analytic coder's forward+backward time at real sizes against the same formulas run through plain
autograd (``analytic.autograd_bits_map``), measured in the same run.

    python benchmarks/estimators.py [--crops 256] [--threads 2] [--estimators analytic,context]
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from simplebits_audit import list_estimators, load_estimator
from simplebits_audit._helpers import luminance
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


SIZES = (32, 64, 224)


def codec_reference(crops: dict[int, torch.Tensor]) -> dict[int, dict[str, float]]:
    """Mean bpd of PNG, WebP lossless and JPEG-XL lossless at effort 9 on each size's crops."""
    return {
        size: {"PNG": codec_bpd(x, "png").mean().item(), "WebP": codec_bpd(x, "webp").mean().item(),
               "JXL e9": codec_bpd(x, "jxl", effort=9).mean().item()}
        for size, x in crops.items()
    }


def estimator_bpd(est, x: torch.Tensor) -> float:
    with torch.no_grad():
        return torch.cat([est.bpd(c) for c in x.split(16 if x.shape[-1] > 64 else 64)]).mean().item()


def few_levels_table(crops: torch.Tensor, names: list[str], levels: tuple[int, ...] = (2, 4, 16)) -> Table:
    """Estimator bpd on ``crops`` posterised to each number of ``levels`` per channel, against WebP and JPEG-XL e9."""
    from simplebits_audit.estimators.analytic import AnalyticCoder

    posterised = {k: torch.round(torch.round(crops * (k - 1)) / (k - 1) * 255) / 255 for k in levels}  # 8-bit values
    reference = {k: codec_reference({64: x})[64] for k, x in posterised.items()}
    table = Table(title=f"few-level images: {len(crops)} 64 px crops posterised to k levels per channel (bpd; ratio: estimator / codec)")
    table.add_column("estimator")
    for k in levels:
        for col in (f"k={k} bpd", "/ WebP", "/ JXL e9"):
            table.add_column(col, justify="right")
    table.add_row("WebP / JXL e9", *(c for k in levels for c in (f"{reference[k]['WebP']:.3f} / {reference[k]['JXL e9']:.3f}", "", "")))
    estimators = [(n + (" (default)" if n == DEFAULT_ESTIMATOR else ""), load_estimator(n)) for n in names]
    estimators.append(("analytic, uniform_weight=0 (before)", AnalyticCoder(uniform_weight=0)))
    for label, est in estimators:
        row = [label]
        for k in levels:
            bpd = estimator_bpd(est, posterised[k])
            row += [f"{bpd:.3f}", f"{bpd / reference[k]['WebP']:.2f}", f"{bpd / reference[k]['JXL e9']:.2f}"]
        table.add_row(*row)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=256, help="crops per size at 32 and 64 px (224 px: %(default)s / 8)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--estimators", default=None, help="comma-separated names (default: every registered estimator)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    crops = {size: held_out_crops(args.crops if size < 224 else max(args.crops // 8, 4), size=size) for size in SIZES}
    grey = torch.round(luminance(crops[64]).unsqueeze(1) * 255) / 255  # one 8-bit channel
    reference = codec_reference(crops)
    grey_reference = codec_reference({64: grey})[64]
    console = Console(width=220)
    ref = Table(title=f"real codecs on the held-out photo crops ({', '.join(f'{len(x)} at {s} px' for s, x in crops.items())}; grey: "
                f"luminance of the 64 px crops), bpd")
    ref.add_column("codec")
    for size in SIZES:
        ref.add_column(f"{size} px", justify="right")
    ref.add_column("grey 64", justify="right")
    for codec in ("PNG", "WebP", "JXL e9"):
        ref.add_row(codec, *(f"{reference[s][codec]:.3f}" for s in SIZES), f"{grey_reference[codec]:.3f}")
    console.print(ref)

    table = Table(title=f"estimators on the same crops, torch threads {torch.get_num_threads()} (ratios: estimator bpd / codec bpd)")
    table.add_column("estimator")
    for size in SIZES:
        for col in (f"bpd {size}", "/ WebP", "/ JXL e9"):
            table.add_column(col, justify="right")
    for col in ("grey 64 / JXL e9", "flat 32 bpd", "fwd+bwd ms (64x3x32x32)", "(1x3x224x224)", "(1x1x1024x1024)", "parameters"):
        table.add_column(col, justify="right")
    flat = torch.full((1, 3, 32, 32), 0.5)
    names = args.estimators.split(",") if args.estimators else list_estimators()
    for name in names:
        est = load_estimator(name)
        row = [name + (" (default)" if name == DEFAULT_ESTIMATOR else "")]
        for size in SIZES:
            bpd = estimator_bpd(est, crops[size])
            row += [f"{bpd:.3f}", f"{bpd / reference[size]['WebP']:.3f}", f"{bpd / reference[size]['JXL e9']:.3f}"]
        row += [f"{estimator_bpd(est, grey) / grey_reference['JXL e9']:.3f}", f"{estimator_bpd(est, flat):.3f}"]
        row += [f"{forward_backward_ms(est, repeats=5 if shape[0] > 1 else 2, shape=shape):.0f}"
                for shape in ((64, 3, 32, 32), (1, 3, 224, 224), (1, 1, 1024, 1024))]
        row += [f"{est.num_parameters:,}"]
        table.add_row(*row)
    console.print(table)
    console.print(few_levels_table(crops[64], names))
    console.print(adjoint_table())


if __name__ == "__main__":
    main()
