"""Does the audit expose a shortcut? The ``shortcut`` testbed, audited with two classifiers.

The ``shortcut`` testbed pastes a digit on a photo and puts a small coloured marker in the top-left
corner; in training the marker's colour gives the label away. Its test split shuffles the marker
colours, so a classifier that learned the marker fails there. We audit that test split twice:

* with the classifier trained on ``shortcut`` (it saw the markers), and
* with the classifier trained on ``digits-on-photos`` (same digits and photos, never a marker).

For each, ``summary.json`` gives the share of the *retained* bits (what survives simplification)
and of the SimpleBits attribution that falls inside the marker, against the share of the image the
marker covers. A classifier that uses the shortcut keeps the marker: its share is far above the
area share; the other one lets the marker go.

    python examples/audit_shortcut.py [--n 300] [--limit 48] [--out shortcut-audit]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simplebits_audit import testbeds
from simplebits_audit.jobs import run_audit


def main(out: str = "shortcut-audit", n: int = 300, limit: int = 48, steps: int | None = None) -> dict[str, dict]:
    options = {"steps": steps} if steps else {}
    summaries = {}
    for name in ("shortcut", "digits-on-photos"):
        model = testbeds.load_classifier(name)
        summaries[name] = run_audit(
            model, "shortcut", Path(out) / f"classifier-{name}", testbed_n=n, select="all", limit=limit,
            model_name=f"testbed:{name}", simplify_options=options,
        )
    print(f"{'classifier trained on':<22} {'accuracy':>9} {'marker area':>12} {'bits in marker (orig.)':>23} "
          f"{'retained bits in marker':>24} {'attribution in marker':>22}")
    for name, s in summaries.items():
        m = s["shortcut"]
        print(f"{name:<22} {s['accuracy']:>9.1%} {m['mask_area_share']:>12.1%} {m['mask_bits_share_before']:>23.1%} "
              f"{m['mask_bits_share_after']:>24.1%} {m['mask_attribution_share']:>22.1%}")
    print(f"reports: {Path(out) / 'classifier-shortcut' / 'report.html'} and {Path(out) / 'classifier-digits-on-photos' / 'report.html'}")
    return summaries


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="shortcut-audit")
    parser.add_argument("--n", type=int, default=300, help="test images predicted")
    parser.add_argument("--limit", type=int, default=48, help="images explained per classifier")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    main(args.out, args.n, args.limit, args.steps)
