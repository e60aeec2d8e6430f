"""Train the estimators whose weights ship in ``simplebits_audit/estimators/weights/``.

Offline corpus: the package photos not held out plus Debian's wallpapers (``apt-get install
plasma-workspace-wallpapers gnome-backgrounds sway-backgrounds lomiri-wallpapers``; the shipped
pixelcnn and glow were trained before the last three were added); evaluation on the held-out
package photos.
Resumable: rerun the same command after an interruption.

    python scripts/train_shipped_estimators.py pixelcnn --steps 6000 --threads 1
    python scripts/train_shipped_estimators.py glow --steps 3000 --threads 1
    python scripts/train_shipped_estimators.py context --steps 12000 --threads 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simplebits_audit import photos
from simplebits_audit.estimators.training import TrainingConfig, train_estimator

WEIGHTS = Path(__file__).resolve().parents[1] / "simplebits_audit" / "estimators" / "weights"
SETTINGS = {
    "pixelcnn": dict(lr=3e-3, model_config=dict(hidden=64, kernel_size=7, n_blocks=2, n_mix=5)),
    "glow": dict(lr=1e-3, model_config=dict(levels=3, depth=8, hidden=96)),
    "context": dict(lr=2e-3, grey_fraction=0.2, simple_fraction=0.1, checkpoint_every=500),
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arch", choices=sorted(SETTINGS))
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    if not photos.wallpaper_photos():
        raise SystemExit("install Debian's wallpapers first: apt-get install plasma-workspace-wallpapers gnome-backgrounds "
                         "sway-backgrounds lomiri-wallpapers")
    config = TrainingConfig(arch=args.arch, steps=args.steps, threads=args.threads, **SETTINGS[args.arch])
    card = train_estimator(args.out_dir / f"{args.arch}.pt", config=config, resume=True)
    print({k: card[k] for k in ("arch", "steps", "held_out_bpd", "held_out_webp_bpd", "parameters", "training_seconds")})
