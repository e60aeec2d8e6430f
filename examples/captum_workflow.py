"""SimpleBits in an ordinary Captum workflow, next to Integrated Gradients.

A small CNN trained offline on the ``digits-on-photos`` testbed (shipped with the package) is
explained by SimpleBits and by Captum's IntegratedGradients through the same code; both maps are
scored with Captum's metrics and drawn with Captum's visualisation. Runs in under a minute on CPU.

    python examples/captum_workflow.py [--out captum_workflow.png]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from captum.attr import IntegratedGradients
from captum.attr import visualization as viz
from captum.metrics import infidelity, sensitivity_max

from simplebits_audit import SimpleBits, testbeds


def main(out: str = "captum_workflow.png", n_images: int = 4) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    model = testbeds.load_classifier("digits-on-photos")
    data = testbeds.load("digits-on-photos", "test", n=n_images, seed=1)
    # The model takes normalised inputs here, as most models do: tell SimpleBits how to undo it.
    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    normalised_model = torch.nn.Sequential(torch.nn.Identity()).eval()
    normalised_model.forward = lambda z: model(z * s + m)
    inputs = (data.images - m) / s
    target = data.labels

    explainers = {
        "SimpleBits": SimpleBits(normalised_model, normalization=(mean, std), steps=40),
        "IntegratedGradients": IntegratedGradients(normalised_model),
    }

    def perturb(x):
        noise = torch.randn_like(x) * 0.05
        return noise, x - noise

    scores, maps = {}, {}
    for name, explainer in explainers.items():
        extra = {"steps": 10} if name == "SimpleBits" else {}  # fewer steps on the perturbed copies
        attr = explainer.attribute(inputs, target=target)
        maps[name] = attr
        scores[name] = {
            "infidelity": infidelity(normalised_model, perturb, inputs, attr, target=target, n_perturb_samples=4).mean().item(),
            "sensitivity_max": sensitivity_max(
                explainer.attribute, inputs[:2], target=target[:2], n_perturb_samples=2, perturb_radius=0.02, **extra
            )
            .mean()
            .item(),
        }
        print(f"{name:>20}: infidelity {scores[name]['infidelity']:.4f}  sensitivity_max {scores[name]['sensitivity_max']:.4f}")

    fig, axes = plt.subplots(len(maps), n_images, figsize=(2.2 * n_images, 2.2 * len(maps)), squeeze=False)
    for row, (name, attr) in enumerate(maps.items()):
        for col in range(n_images):
            if not bool(attr[col].any()):
                # An empty SimpleBits map: the flat reference kept the answer (the model needed nothing of
                # this image for this target). Captum's visualisation cannot normalise an all-zero map.
                axes[row, col].imshow(data.images[col].permute(1, 2, 0).numpy())
                axes[row, col].set_title(f"{name[:10]} y={int(target[col])}: empty", fontsize=8)
                axes[row, col].axis("off")
                continue
            viz.visualize_image_attr(
                attr[col].permute(1, 2, 0).detach().numpy(), data.images[col].permute(1, 2, 0).numpy(),
                method="blended_heat_map", sign="absolute_value", plt_fig_axis=(fig, axes[row, col]), use_pyplot=False,
                title=f"{name[:10]} y={int(target[col])}",
            )
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")
    return scores


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="captum_workflow.png")
    main(parser.parse_args().out)
