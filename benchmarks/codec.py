"""The default estimator as a real codec, against PNG, WebP lossless and JPEG-XL lossless (issue #24).

On multi-scale crops of the held-out photos (the set ``benchmarks/estimators.py`` uses), per crop
size: mean bpd of the analytic estimator's reported bits, of its real file (``codecs.encode``,
header included, every file decoded and checked bit for bit), of PNG, WebP lossless (method 4) and
JPEG-XL lossless at effort 9; the ratios of the estimator's file to WebP and JPEG-XL; mean
milliseconds per image to encode and decode the estimator's file and to encode JPEG-XL (effort 9
and the report default) and WebP.

    python benchmarks/codec.py [--crops 128] [--sizes 32 64 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from simplebits_audit import codecs
from simplebits_audit.estimators import load_estimator
from simplebits_audit.photos import held_out_crops


def _ms(fn, items) -> tuple[list, float]:
    """Results of ``fn`` over ``items`` and the mean milliseconds per item."""
    t0 = time.perf_counter()
    out = [fn(i) for i in items]
    return out, 1000 * (time.perf_counter() - t0) / len(items)


def _webp(img: np.ndarray) -> int:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="WEBP", lossless=True, quality=100, method=4)
    return buf.tell()


def run_size(estimator, n: int, size: int) -> dict[str, float]:
    x = held_out_crops(n, size=size)
    u8 = (x * 255).round().to(torch.uint8)
    dims = float(np.prod(x.shape[1:]))
    with torch.no_grad():
        bits = torch.cat([estimator.bits(c) for c in x.split(64)])
    files, enc_ms = _ms(lambda img: codecs.encode(img, estimator), list(u8))
    decoded, dec_ms = _ms(lambda data: codecs.decode(data, estimator), files)
    if not all(torch.equal(a, b) for a, b in zip(decoded, u8)):
        raise AssertionError("the estimator codec did not round-trip every crop")
    hwc = [img.numpy().transpose(1, 2, 0) for img in u8]
    jxl9, jxl9_ms = _ms(lambda img: len(codecs.jxl_encode(img, 9)), hwc)
    _, jxl_default_ms = _ms(lambda img: codecs.jxl_encode(img, codecs.JXL_EFFORT), hwc)
    webp, webp_ms = _ms(_webp, hwc)
    file_bits = torch.tensor([8.0 * len(f) for f in files], dtype=torch.float64)
    payload = file_bits - torch.tensor([8.0 * codecs.read_header(f).size for f in files], dtype=torch.float64)
    return {
        "bits": (bits.double() / dims).mean().item(),
        "file": (file_bits / dims).mean().item(),
        "file/bits": (file_bits.sum() / bits.double().sum()).item(),
        "payload/bits": (payload / bits.double()).max().item(),
        "overhead": (payload - bits.double()).mean().item(),
        "png": codecs.codec_bpd(x, "png").mean().item(),
        "webp": (8 * torch.tensor(webp, dtype=torch.float64) / dims).mean().item(),
        "jxl9": (8 * torch.tensor(jxl9, dtype=torch.float64) / dims).mean().item(),
        "enc_ms": enc_ms,
        "dec_ms": dec_ms,
        "jxl9_ms": jxl9_ms,
        "jxl_default_ms": jxl_default_ms,
        "webp_ms": webp_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=128, help="crops per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    estimator = load_estimator("analytic")
    table = Table(title=f"analytic estimator as a codec, held-out photo crops ({args.crops} per size), bpd (lower is better)")
    cols = (
        "size",
        "bits",
        "file",
        "file / bits",
        "max payload / bits",
        "payload - bits",
        "PNG",
        "WebP",
        "JXL e9",
        "file / WebP",
        "file / JXL e9",
        "enc ms",
        "dec ms",
        "JXL e9 ms",
        f"JXL e{codecs.JXL_EFFORT} ms",
        "WebP ms",
    )
    for col in cols:
        table.add_column(col, justify="right")
    for size in args.sizes:
        r = run_size(estimator, args.crops, size)
        table.add_row(
            f"{size}", f"{r['bits']:.3f}", f"{r['file']:.3f}", f"{r['file/bits']:.4f}", f"{r['payload/bits']:.4f}",
            f"{r['overhead']:.0f}", f"{r['png']:.3f}", f"{r['webp']:.3f}",
            f"{r['jxl9']:.3f}", f"{r['file'] / r['webp']:.3f}", f"{r['file'] / r['jxl9']:.3f}", f"{r['enc_ms']:.0f}",
            f"{r['dec_ms']:.0f}", f"{r['jxl9_ms']:.0f}", f"{r['jxl_default_ms']:.0f}", f"{r['webp_ms']:.0f}",
        )
    Console(width=200).print(table)
    Console(width=200).print(
        "bits: the estimator's reported bits; file: its real encode() file incl. the header, every one decoded bit for bit; "
        "payload: the file less its header (max ratio over crops; mean excess in bits); ms: mean per image"
    )


if __name__ == "__main__":
    main()
