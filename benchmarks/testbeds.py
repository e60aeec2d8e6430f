"""Are the testbeds valid? Per testbed: the shipped classifier's accuracy, trivial maps' and Captum's
localisation AUROC against the ground-truth masks.

A testbed is valid for localisation claims only when the real methods (Integrated Gradients,
Occlusion) beat every trivial reference map (brightness, maximum over channels, a centred Gaussian,
random) and the trivial maps stay near 0.5. Captum explains the classifier's predicted class (the
decision, which on ``shortcut`` is the marker's class) (SPEC sections 5 and 6). ``stripes`` has no localisation
mask (the stripes cover the image), so only its accuracy is printed; ``shortcut`` is scored on its
test split (marker colour shuffled), and its classifier's accuracy with consistent, shuffled and
absent markers shows how much it relies on the marker.

    python benchmarks/testbeds.py [--n 200] [--testbeds digits-on-photos shortcut]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from simplebits_audit import testbeds

try:  # the metrics package owns auroc: batched (B, 1, H, W) maps and masks -> (B,), NaN where undefined
    from simplebits_audit.metrics import auroc
except ImportError:  # pragma: no cover - a local copy for checkouts without simplebits_audit.metrics

    def auroc(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Per image: probability that a random mask pixel scores above a random background pixel (ties 1/2)."""
        s, m = maps.detach().flatten(1).double(), masks.flatten(1).bool()
        ordered = s.sort(1).values
        ranks = (torch.searchsorted(ordered, s, right=False) + torch.searchsorted(ordered, s, right=True) + 1).double() / 2
        pos, neg = m.sum(1).double(), (~m).sum(1).double()
        out = ((ranks * m).sum(1) - pos * (pos + 1) / 2) / (pos * neg)
        return torch.where((pos > 0) & (neg > 0), out, torch.full_like(out, float("nan")))


#: seed of the evaluation images (the test split; the cards use the same)
EVAL_SEED = 11


def trivial_maps(x: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Reference maps (N, 1, H, W) that know nothing about the model."""
    n, _, h, w = x.shape
    yy, xx = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    return {
        "brightness": x.mean(1, keepdim=True),
        "max channel": x.amax(1, keepdim=True),
        "centre Gaussian": torch.exp(-(yy**2 + xx**2) / (2 * (h / 4) ** 2)).expand(n, 1, h, w),
        "random": torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(seed)),
    }


def captum_maps(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """|Integrated Gradients| summed over channels (n_steps=50) and Occlusion (4x4 window, stride 2)."""
    from captum.attr import IntegratedGradients, Occlusion

    ig = IntegratedGradients(model).attribute(x, target=target, n_steps=50, internal_batch_size=512)
    occ = Occlusion(model).attribute(x, target=target, sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2), perturbations_per_eval=64)
    return {"IntegratedGradients |attr|": ig.abs().sum(1, keepdim=True), "Occlusion 4x4": occ.sum(1, keepdim=True)}


def mean_auroc(maps: torch.Tensor, masks: torch.Tensor) -> float:
    """Per-image AUROC, averaged over images where it is defined."""
    return float(auroc(maps.float(), masks).nanmean())


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(b).argmax(1) for b in x.split(500)])


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.cat([model(b).argmax(1) for b in x.split(500)]).eq(y).float().mean())


def shortcut_reliance(model: torch.nn.Module, n: int = 1000, seed: int = EVAL_SEED) -> dict[str, float]:
    """Test-split accuracy of a ``shortcut`` classifier with each marker variant."""
    out = {}
    for variant in ("consistent", "shuffled", "absent"):
        data = testbeds.load("shortcut", "test", n=n, seed=seed, variant=variant)
        out[variant] = accuracy(model, data.images, data.labels)
    data = testbeds.load("shortcut", "test", n=n, seed=seed, variant="shuffled")
    with torch.no_grad():
        pred = model(data.images).argmax(1)
    out["shuffled: prediction = marker's class"] = float((pred == testbeds.shortcut.marker_classes(data.images)).float().mean())
    return out


def trivial_aurocs(name: str, n: int = 200, seed: int = EVAL_SEED) -> dict[str, float]:
    data = testbeds.load(name, "test", n=n, seed=seed)
    if not data.has_localisation:
        return {}
    return {k: round(mean_auroc(v, data.masks), 3) for k, v in trivial_maps(data.images).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="test images for the AUROCs")
    parser.add_argument("--testbeds", nargs="+", default=testbeds.list_testbeds(), choices=testbeds.list_testbeds())
    args = parser.parse_args()
    for name in args.testbeds:
        model = testbeds.load_classifier(name)
        card = testbeds.classifier_card(name)
        full = testbeds.load(name, "test", seed=EVAL_SEED)
        print(f"\n== {name}: classifier test accuracy {accuracy(model, full.images, full.labels):.3f} "
              f"on {len(full)} test images (card: {card['test_accuracy']:.3f}; chance {1 / len(full.classes):.2f})")
        if name == "shortcut":
            for k, v in shortcut_reliance(model).items():
                print(f"   accuracy, marker {k}: {v:.3f}")
        data = testbeds.load(name, "test", n=args.n, seed=EVAL_SEED)
        if not data.has_localisation:
            print("   no localisation mask (the evidence covers the whole image): localisation AUROC does not apply")
            continue
        t0 = time.perf_counter()
        maps = {f"trivial: {k}": v for k, v in trivial_maps(data.images).items()}
        maps.update(captum_maps(model, data.images, predict(model, data.images)))
        print(f"   localisation AUROC vs mask, mean over {args.n} test images (target = predicted class; Captum {time.perf_counter() - t0:.0f} s):")
        results = {k: mean_auroc(v, data.masks) for k, v in maps.items()}
        for k, v in results.items():
            print(f"   {k:<30s} {v:.3f}")
        best_trivial = max(v for k, v in results.items() if k.startswith("trivial") and not math.isnan(v))
        best_real = max(v for k, v in results.items() if not k.startswith("trivial"))
        verdict = "valid" if best_real > best_trivial else "FLAWED (a trivial map wins)"
        print(f"   best method {best_real:.3f} vs best trivial map {best_trivial:.3f}: {verdict}")


if __name__ == "__main__":
    main()
