"""From a saved model file to an opened report, the way a user does it.

1. A model file: here the classifier shipped for the ``digits-on-photos`` testbed, saved as
   TorchScript (yours could be a ``.pt2`` export, ``module:factory`` + ``--weights``, or a
   torchvision name + ``--weights``).
2. An image file and a file of class names.
3. One command: ``simplebits explain IMAGE --model FILE --labels FILE --baselines ... --out DIR``,
   which prints a summary table and the report's path; ``--open`` opens it in the browser.

    python examples/explain_one_image.py [--out explain-example] [--no-open]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from simplebits_audit import testbeds


def main(out: str = "explain-example", open_report: bool = True) -> Path:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # 1. the model file
    model = testbeds.load_classifier("digits-on-photos")
    torch.jit.save(torch.jit.script(model), str(out_dir / "model.ts"))
    # 2. an image and the class names
    test = testbeds.load("digits-on-photos", "test", n=1, seed=3)
    image = out_dir / "digit.png"
    Image.fromarray((test.images[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(image)
    (out_dir / "classes.txt").write_text("\n".join(f"digit {d}" for d in range(10)) + "\n")
    # 3. the command (``simplebits`` is ``python -m simplebits_audit.cli.main``; the module form needs no PATH)
    command = [
        sys.executable, "-m", "simplebits_audit.cli.main", "explain", str(image), "--model", str(out_dir / "model.ts"),
        "--labels", str(out_dir / "classes.txt"), "--baselines", "ig,occlusion", "--out", str(out_dir / "report"),
    ]
    if open_report:
        command.append("--open")
    print("$ simplebits", " ".join(command[3:]).replace(str(out_dir), out), flush=True)
    subprocess.run(command, check=True)
    return out_dir / "report" / "report.html"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="explain-example")
    parser.add_argument("--no-open", action="store_true", help="Do not open the report in a browser.")
    args = parser.parse_args()
    main(args.out, open_report=not args.no_open)
