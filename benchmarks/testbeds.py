"""Are the testbeds valid? Per testbed: the shipped classifier's accuracy, trivial maps' and Captum's
localisation AUROC against the ground-truth masks.

A testbed is valid for localisation claims only when the real methods (Integrated Gradients,
Occlusion) beat every trivial reference map (brightness, maximum over channels, a centred Gaussian,
random) and the trivial maps stay near 0.5. Captum explains the classifier's predicted class (the
decision, which on ``shortcut`` is the marker's class) (SPEC sections 5 and 6). ``stripes`` has no localisation
mask (the stripes cover the image), so only its accuracy is printed; ``shortcut`` is scored on its
test split (marker colour shuffled), and its classifier's accuracy with consistent, shuffled and
absent markers shows how much it relies on the marker.

The sigmoid-head testbeds (``testbeds.SIGMOID_HEADS``) are scored on their logits: a prediction is
``logit > 0``, accuracy is per label (``digits-stripes``: averaged over its two labels), and the
explanations' target is logit 0 (``radiograph``: the effusion logit; ``digits-stripes``: the
digit logit), whatever the prediction. Their masks are empty on negative images (no opacity, no
digit), where AUROC is undefined: the localisation numbers average over the positive images only.
``radiograph``'s classifier is also scored with each marker variant (how much it reads the
laterality marker), and the maps' AUROC against the marker's mask (``aux_masks["marker"]``).

The single-cue testbeds (``testbeds.CUE_AXES``: ``colour-cue``, ``texture-cue``, ``shape-cue``,
``cue-conflict-shape``, ``cue-conflict-colour``) add three trivial maps that read the object's
pop-out (``contrast``, ``edges``, ``saturation``) and, per factor (colour, texture, shape), the
share of predictions that change when only that factor of the object is redrawn
(:func:`cue_swaps`): a classifier that reads its cue changes its answer with the cue and not
with the other factors.

    python benchmarks/testbeds.py [--n 200] [--testbeds digits-on-photos shortcut radiograph]
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


def cue_trivial_maps(x: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """:func:`trivial_maps` plus three maps of what pops out (the single-cue testbeds' object is a
    saturated blob on a desaturated photo): ``contrast`` and ``edges`` (the explainers' reference
    maps) and ``saturation`` (max minus min over channels)."""
    from simplebits_audit.explainers import reference

    # the reference maps come expanded to the input's channels: one channel is the map
    return {**trivial_maps(x, seed), "contrast": reference.contrast(None, x)[:, :1], "edges": reference.edges(None, x)[:, :1],
            "saturation": x.amax(1, keepdim=True) - x.amin(1, keepdim=True)}


def cue_swaps(model: torch.nn.Module, name: str, n: int = 500, seed: int = EVAL_SEED) -> dict[str, float]:
    """On ``n`` test images of single-cue testbed ``name``: per factor (``colour``, ``texture``,
    ``shape``), the share of predictions that change when only that factor of the object is redrawn
    (``testbeds.cues.swap``: a labelled factor moves to another class, a random one is redrawn), and
    for the label's factor the share of predictions that follow the new label."""
    from simplebits_audit.testbeds import cues

    scene = cues.testbed_scene(name, n, "test", seed)
    before = predict(model, cues.render(scene)[0])
    out: dict[str, float] = {}
    for factor in ("colour", "texture", "shape"):
        swapped = cues.swap(scene, factor, seed)
        after = predict(model, cues.render(swapped)[0])
        out[f"{factor} swapped: prediction changed"] = float((after != before).float().mean())
        if factor == cues.TESTBED_CUES[name][0]:
            out[f"{factor} swapped: prediction = new label"] = float((after == cues.scene_labels(swapped, factor)).float().mean())
    return out


#: the blur that removes the ``texture-cue`` grating (sigma in px; kernel 9 px)
AXIS_BLUR_SIGMA = 1.5


@torch.no_grad()
def axis_removal(model: torch.nn.Module, name: str, n: int = 500, seed: int = EVAL_SEED) -> dict[str, float]:
    """Accuracy of a single-cue testbed's classifier on ``n`` test images with one information
    axis removed from the whole image: ``"colour"`` = Rec. 601 luminance in all three channels,
    ``"detail"`` = a Gaussian blur of sigma :data:`AXIS_BLUR_SIGMA` px (torchvision). The axis
    that carries the label should drop it to about chance (1/3); the others should not."""
    from torchvision.transforms.functional import gaussian_blur

    from simplebits_audit.testbeds import cues

    data = testbeds.load(name, "test", n=n, seed=seed)
    x = data.images
    grey = cues.luminance(x).unsqueeze(1).expand_as(x)
    return {"original": accuracy(model, x, data.labels), "colour removed (luminance)": accuracy(model, grey, data.labels),
            f"detail removed (blur sigma {AXIS_BLUR_SIGMA})": accuracy(model, gaussian_blur(x, 9, AXIS_BLUR_SIGMA), data.labels)}


def captum_maps(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor | int) -> dict[str, torch.Tensor]:
    """|Integrated Gradients| summed over channels (n_steps=50) and Occlusion (window side/8, stride
    side/16: 4x4 and 2 on 32 px images, 16x16 and 8 on the 128 px radiographs)."""
    from captum.attr import IntegratedGradients, Occlusion

    c, side = x.shape[1], x.shape[-1]
    k, stride = max(side // 8, 1), max(side // 16, 1)
    ig = IntegratedGradients(model).attribute(x, target=target, n_steps=50, internal_batch_size=512)
    occ = Occlusion(model).attribute(
        x, target=target, sliding_window_shapes=(c, k, k), strides=(c, stride, stride), perturbations_per_eval=64,
    )
    return {"IntegratedGradients |attr|": ig.abs().sum(1, keepdim=True), f"Occlusion {k}x{k}": occ.sum(1, keepdim=True)}


def mean_auroc(maps: torch.Tensor, masks: torch.Tensor) -> float:
    """Per-image AUROC, averaged over images where it is defined."""
    return float(auroc(maps.float(), masks).nanmean())


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(b).argmax(1) for b in x.split(500)])


@torch.no_grad()
def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(b) for b in x.split(250)])


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy for class indices; for a sigmoid head (one output, or (N, K) multi-hot labels)
    the share of labels with ``(logit > 0) == label``, averaged over the K labels."""
    out = logits(model, x)
    if y.dim() == 2 or out.shape[1] == 1:
        return float(((out > 0).long() == y.view(len(y), -1)).float().mean())
    return float(out.argmax(1).eq(y).float().mean())


def label_auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """ROC AUC of one logit (N,) against 0/1 labels (N,) (ties count one half)."""
    return float(auroc(scores.view(1, 1, -1, 1), labels.view(1, 1, -1, 1).bool())[0])


def sigmoid_scores(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """A sigmoid-head classifier on labelled images: per-label accuracy and AUROC of the logits (and,
    for multi-hot labels, the share of images with every label right)."""
    out = logits(model, x)
    y = y.view(len(y), -1)
    right = (out > 0).long() == y
    scores = {"accuracy": float(right.float().mean())}
    if y.shape[1] > 1:
        scores["exact_match"] = float(right.all(1).float().mean())
    for j in range(y.shape[1]):
        suffix = f" [{j}]" if y.shape[1] > 1 else ""
        if y.shape[1] > 1:
            scores[f"accuracy{suffix}"] = float(right[:, j].float().mean())
        scores[f"auroc{suffix}"] = label_auroc(out[:, j], y[:, j])
    return scores


def radiograph_marker_reliance(model: torch.nn.Module, n: int = 500, seed: int = EVAL_SEED) -> dict[str, float]:
    """How much a ``radiograph`` classifier reads the laterality marker: test accuracy with each marker
    variant, and on the very same images (the variants share everything but the marker) the mean
    change of P(effusion) and the share of flipped predictions when only the marker's letter changes
    from "L" (no effusion) to "R" (effusion)."""
    out: dict[str, float] = {}
    probs = {}
    for variant in ("consistent", "correlated", "shuffled", "opposite", "absent"):
        data = testbeds.load("radiograph", "test", n=n, seed=seed, variant=variant)
        p = torch.sigmoid(logits(model, data.images)[:, 0])
        probs[variant] = p
        out[f"accuracy, marker {variant}"] = float(((p > 0.5).long() == data.labels).float().mean())
    labels = data.labels
    # consistent: letter = label, opposite: letter = 1 - label; so "R" minus "L" is their difference with the label's sign
    sign = 2 * labels.float() - 1
    shift = sign * (probs["consistent"] - probs["opposite"])
    out["P(effusion) shift, marker R minus L"] = float(shift.mean())
    out["predictions flipped by the letter"] = float(((probs["consistent"] > 0.5) != (probs["opposite"] > 0.5)).float().mean())
    out["P(effusion) shift, marker absent minus shuffled (mean |.|)"] = float((probs["absent"] - probs["shuffled"]).abs().mean())
    return out


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


def photo_objects_stamp_reliance(model: torch.nn.Module, n: int = 1000, seed: int = EVAL_SEED) -> dict:
    """How much a ``photo-objects`` classifier reads the "STOCK" stamp: accuracy per stamp variant on the
    same ``n`` test images (the variants share everything but the stamp), and how often adding the
    stamp to every image (``"absent"`` -> ``"everywhere"``) changes a prediction (to the stamp's class)."""
    from simplebits_audit.testbeds import photo_objects

    preds, out = {}, {"images": n, "seed": seed, "split": "test"}
    for variant in ("absent", "shuffled", "consistent", "everywhere"):
        data = testbeds.load("photo-objects", "test", n=n, seed=seed, variant=variant)
        preds[variant] = predict(model, data.images)
        out[f"accuracy, stamp {variant}"] = round(float(preds[variant].eq(data.labels).float().mean()), 4)
    name = photo_objects.STAMP_CLASS
    stamp_class = photo_objects.CLASSES.index(name)
    others = data.labels != stamp_class
    changed = preds["absent"] != preds["everywhere"]
    to_stamp_class = changed & (preds["everywhere"] == stamp_class)

    def share(t: torch.Tensor) -> float:
        return round(float(t.float().mean()), 4)

    out["predictions changed by adding the stamp"] = share(changed)
    out[f"predictions changed by adding the stamp, to {name}"] = share(to_stamp_class)
    out[f"non-{name} images predicted {name}, stamp absent"] = share(preds["absent"][others] == stamp_class)
    out[f"non-{name} images predicted {name}, stamp everywhere"] = share(preds["everywhere"][others] == stamp_class)
    return out


def photo_objects_localisation(model: torch.nn.Module, n: int = 100, seed: int = EVAL_SEED) -> dict:
    """Mean AUROC of the trivial maps (:func:`cue_trivial_maps`) and of Captum's Saliency, Integrated
    Gradients (50 steps, internal batch 250) and Grad-CAM (last block, upsampled) explaining the
    predicted class, against the object masks and, on the stamped images, the stamp masks of ``n``
    ``photo-objects`` test images (stamps shuffled); with the Captum maps' seconds."""
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

    data = testbeds.load("photo-objects", "test", n=n, seed=seed)
    x = data.images
    target = predict(model, x)
    t0 = time.perf_counter()
    gradcam = LayerGradCam(model, model.features[-1]).attribute(x, target=target, relu_attributions=True)
    maps = {
        "Saliency |grad| (max over channels)": Saliency(model).attribute(x, target=target, abs=True).amax(1, keepdim=True),
        "IntegratedGradients |attr| (n_steps 50)": IntegratedGradients(model).attribute(
            x, target=target, n_steps=50, internal_batch_size=250).abs().sum(1, keepdim=True),
        "GradCAM (last block, upsampled)": LayerAttribution.interpolate(gradcam, tuple(x.shape[-2:]), "bilinear"),
    }
    seconds = time.perf_counter() - t0
    stamped = data.aux_masks["stamp"].flatten(1).any(1)
    out = {"images": n, "split": "test", "seed": seed, "variant": "shuffled", "target": "predicted class",
           "captum_seconds": round(seconds, 1), "object": {}, "stamp": {"images": int(stamped.sum())}}
    for k, v in {**{f"trivial: {k}": v for k, v in cue_trivial_maps(x).items()}, **maps}.items():
        out["object"][k] = round(mean_auroc(v, data.masks), 3)
        out["stamp"][k] = round(mean_auroc(v[stamped], data.aux_masks["stamp"][stamped]), 3)
    return out


def trivial_aurocs(name: str, n: int = 200, seed: int = EVAL_SEED, mask: str | None = None) -> dict[str, float]:
    """Trivial maps' mean AUROC against the masks (``mask``: an ``aux_masks`` entry instead) of ``n``
    test images (images with an empty mask do not count)."""
    data = testbeds.load(name, "test", n=n, seed=seed)
    if not data.has_localisation:
        return {}
    masks = data.masks if mask is None else data.aux_masks[mask]
    maps = cue_trivial_maps(data.images) if name in testbeds.CUE_AXES else trivial_maps(data.images)
    return {k: round(mean_auroc(v, masks), 3) for k, v in maps.items()}


def explanation_target(name: str, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor | int:
    """What the Captum maps explain: the predicted class, or logit 0 for a sigmoid-head testbed."""
    return 0 if name in testbeds.SIGMOID_HEADS else predict(model, x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="test images for the AUROCs")
    shipped = testbeds.list_testbeds(None, shipped_classifier=True)
    parser.add_argument("--testbeds", nargs="+", default=shipped, choices=shipped)
    args = parser.parse_args()
    for name in args.testbeds:
        model = testbeds.load_classifier(name)
        card = testbeds.classifier_card(name)
        full = testbeds.load(name, "test", seed=EVAL_SEED)
        chance = 0.5 if name in testbeds.SIGMOID_HEADS else 1 / len(full.classes)
        print(f"\n== {name}: classifier test accuracy {accuracy(model, full.images, full.labels):.3f} "
              f"on {len(full)} test images (card: {card['test_accuracy']:.3f}; chance {chance:.2f})")
        if name == "shortcut":
            for k, v in shortcut_reliance(model).items():
                print(f"   accuracy, marker {k}: {v:.3f}")
        if name in testbeds.SIGMOID_HEADS:
            for k, v in sigmoid_scores(model, full.images, full.labels).items():
                print(f"   {k}: {v:.3f}")
        if name == "radiograph":
            for k, v in radiograph_marker_reliance(model).items():
                print(f"   {k}: {v:.3f}")
        if name in testbeds.CUE_AXES:
            print(f"   cue axis {testbeds.CUE_AXES[name]!r}; on 500 test images, when only one factor of the object is redrawn:")
            for k, v in cue_swaps(model, name).items():
                print(f"   {k}: {v:.3f}")
            print("   accuracy on 500 test images with one information axis removed from the whole image:")
            for k, v in axis_removal(model, name).items():
                print(f"   {k}: {v:.3f}")
        if name == "photo-objects":  # 128 px, a mobilenet: its own maps (Grad-CAM, no Occlusion), object and stamp masks
            for k, v in photo_objects_stamp_reliance(model).items():
                print(f"   {k}: {v}")
            scores = photo_objects_localisation(model, args.n)
            for mask in ("object", "stamp"):
                print(f"   localisation AUROC vs {mask} mask ({scores[mask].get('images', args.n)} of {args.n} test images; "
                      f"Captum {scores['captum_seconds']:.0f} s):")
                for k, v in scores[mask].items():
                    if k != "images":
                        print(f"   {k:<40s} {v:.3f}")
            continue
        data = testbeds.load(name, "test", n=args.n, seed=EVAL_SEED)
        if not data.has_localisation:
            print("   no localisation mask (the evidence covers the whole image): localisation AUROC does not apply")
            continue
        keep = data.masks.flatten(1).any(1)  # images with an empty mask (negatives) do not count
        x, masks = data.images[keep], data.masks[keep]
        t0 = time.perf_counter()
        maps = {f"trivial: {k}": v for k, v in (cue_trivial_maps(x) if name in testbeds.CUE_AXES else trivial_maps(x)).items()}
        maps.update(captum_maps(model, x, explanation_target(name, model, x)))
        target = "logit 0" if name in testbeds.SIGMOID_HEADS else "predicted class"
        print(f"   localisation AUROC vs mask, mean over {len(x)} of {args.n} test images with a non-empty mask "
              f"(target = {target}; Captum {time.perf_counter() - t0:.0f} s):")
        results = {k: mean_auroc(v, masks) for k, v in maps.items()}
        for k, v in results.items():
            print(f"   {k:<30s} {v:.3f}")
        if data.aux_masks:
            for aux, aux_masks in data.aux_masks.items():
                scores = ", ".join(f"{k} {mean_auroc(v, aux_masks[keep]):.3f}" for k, v in maps.items())
                print(f"   AUROC vs aux mask {aux!r} (same images): {scores}")
        best_trivial = max(v for k, v in results.items() if k.startswith("trivial") and not math.isnan(v))
        best_real = max(v for k, v in results.items() if not k.startswith("trivial"))
        verdict = "valid" if best_real > best_trivial else "FLAWED (a trivial map wins)"
        if name in testbeds.CUE_AXES and best_real <= best_trivial:
            # by design: the object pops out, the question is which of its information the model reads
            verdict = "not a localisation testbed (the object pops out by design; it tests which information, not where)"
        print(f"   best method {best_real:.3f} vs best trivial map {best_trivial:.3f}: {verdict}")


if __name__ == "__main__":
    main()
