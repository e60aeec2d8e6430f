"""Which information, not only where: the factorised engine on the ground-truth testbeds.

For each single-cue testbed (the information that decides the label is known: colour, texture
detail or the outline), simplifies a few test images with ``parameterization="factorised"`` and
prints the information profile: the share of colour, detail and region kept inside the object.
With ``--figure`` it draws one row per testbed: the original, the simplified image, the three
maps and the profile as bars. Runs in well under a minute on CPU.

    python examples/which_information.py [--n 8] [--figure which_information.png]
"""

from __future__ import annotations

import argparse

import torch

from simplebits_audit import testbeds
from simplebits_audit.explainers import SimpleBits
from simplebits_audit.metrics import information_profile
from simplebits_audit.simplification.factorised import AXES


def default_testbeds() -> list[str]:
    """The single-cue testbeds (``testbeds.CUE_AXES``), the cue-conflict pair left out."""
    return [name for name in getattr(testbeds, "CUE_AXES", {}) if not name.startswith("cue-conflict")]


def main(names: list[str] | None = None, n: int = 8, steps: int | None = None, figure: str | None = None) -> dict[str, dict[str, float]]:
    """Mean share of each axis kept inside the object, per testbed: ``{testbed: {axis: share}}``."""
    torch.manual_seed(0)
    names = default_testbeds() if names is None else names
    options = {"steps": steps} if steps else {}
    profiles, rows = {}, []
    for name in names:
        data = testbeds.load(name, "test", n=n, seed=1)
        model = testbeds.load_classifier(name)
        sb = SimpleBits(model, parameterization="factorised", **options)
        # the region map (B, C, H, W) like any Captum attribution; attribution="colour" / "detail" give the others
        _region_map, result = sb.attribute(data.images, attribution="region", return_result=True)
        profile = information_profile(result, region=data.masks, codec=None)
        profiles[name] = {axis: float(profile[axis]["kept_inside"].nanmean()) for axis in AXES}
        cue = getattr(data, "cue_axis", None)
        shares = ", ".join(f"{axis} {share:.2f}" for axis, share in profiles[name].items())
        kept = float(result.kept.float().mean())
        print(f"{name} (label carried by {cue}): kept inside the object: {shares}; predictions kept {kept:.0%}")
        rows.append((name, result, profiles[name]))
    if figure:
        draw(rows, figure)
    return profiles


def draw(rows, path: str) -> None:
    """One row per testbed: original, simplified, the three maps (the first image that kept some region:
    an image the model classifies as it classifies the flat grey reference keeps nothing to show),
    and the testbed's mean profile as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 6, figsize=(12, 2.1 * len(rows)), squeeze=False)
    for row, (name, result, profile) in zip(axes, rows):
        shown = (result.mask.flatten(1).amax(1) > 0.5).nonzero()
        i = int(shown[0]) if len(shown) else 0
        row[0].imshow(result.original[i].permute(1, 2, 0).clamp(0, 1).numpy())
        row[0].set_ylabel(name)
        row[1].imshow(result.simplified[i].permute(1, 2, 0).numpy())
        region = result.axis_masks["region"]
        maps = {"region": region, **{a: result.axis_masks[a] * region for a in ("colour", "detail")}}
        for ax, axis in zip(row[2:5], ("region", "colour", "detail")):
            ax.imshow(maps[axis][i, 0].numpy(), vmin=0, vmax=1, cmap="viridis")
        row[5].bar(list(profile), list(profile.values()), color=["tab:red", "tab:blue", "tab:grey"])
        row[5].set_ylim(0, 1)
        for ax in row[:5]:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, title in zip(axes[0], ["original", "simplified", "region map", "colour map", "detail map", "kept inside object (mean)"]):
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--figure", default=None)
    parser.add_argument("--testbeds", nargs="*", default=None)
    args = parser.parse_args()
    main(args.testbeds, args.n, args.steps, args.figure)
