"""``SimpleBits``: the simplification explainer as a Captum ``Attribution``, and its registry entry.

It plugs into Captum's own tools (``NoiseTunnel``, ``captum.metrics.infidelity`` and
``sensitivity_max``, ``visualize_image_attr``) and returns maps shaped like the inputs.

What the map means (``attribution=``):

``"auto"`` (default)
    ``"mask"`` for the mask engine (the default engine), ``"retained"`` for the others. Chosen on
    a separate sample (seed 1) before the final benchmark, when the map was the last optimised
    mask: at 100 steps the mask localised the shortcut marker at AUROC 0.999 and the digits at
    0.939; ``"retained"`` scored 0.995 and 0.983, but on ``digits-on-photos`` most of that comes
    from the image's contrast alone (the trivial map ``|x - mean colour|`` scores 0.978 there), so
    the mask is the honest default. The map is now the returned image's mask with its ties ranked
    (below); on the 256-image benchmark (seed 0, 30 steps) it scores 0.876 and 0.924.
``"mask"``
    The mask of the returned image, in [0, 1]: 1 where the classifier asked for the original's
    pixel, 0 where the flat reference sufficed (other engines have none: a ``ValueError``). Pixels
    the mask ties (an insertion snapshot's mask is binary) are ranked by the mean mask along the
    path, moving no value by more than 0.001 and never reordering what the mask orders
    (:func:`~simplebits_audit.simplification.result.refine_ties`); a constant mask (nothing
    needed, or everything) stays constant. With a learned simplifier that has an order head (the
    default of :func:`~simplebits_audit.training.train_simplifier`), the pixels whose mask is below
    half an 8-bit level (the returned image has the reference's value there) are one tie, ranked
    by the head: what else the answer rests on, by the deletion game. Still below every kept pixel.
``"retained"``
    How much of each pixel the simplified image still shows: ``m * |x - r|`` (max over channels)
    for the engines with a mask (mask m; r the simple reference they blend towards, the
    ``reference`` option: the mean colour by default, and its luminance for the factorised
    engine's region), ``|x' - r|`` for the other engines (r the image's mean colour). Zero where
    the classifier let the pixel fall back to the simple image, large where it asked to keep a
    pixel that differs from it. Non-negative, at pixel resolution.
``"ablation"``
    Occlusion of the *simplified* image over SLIC superpixels (Captum ``FeatureAblation``, each
    segment replaced by its mean colour): how much the target's probability falls without each
    segment of what survived. Simplification first removes what the classifier does not need;
    ablating what is left then says which of the survivors carry the decision. Of the four maps
    it localised best on ``digits-on-photos`` (``benchmarks/attribution_maps.py``).
``"survival"``
    For each pixel, the share of the knob's path (lambda growing) along which the simplified image
    still agrees with the original there (max channel difference below ``survival_tolerance``).
    Regions the classifier needs survive to large lambda; regions it does not are simplified away
    early. Values in [0, 1].
``"bits_removed"``
    The bit-reduction map: bits per pixel under the estimator before minus after simplification
    (positive where information was removed).
``"kept"``
    ``1 - |x - x'|`` (max over channels): where the simplified image equals the original. It
    confuses regions that were already flat with regions that were kept (SPEC section 6).
``"region"``, ``"colour"``, ``"detail"``
    The factorised engine's maps (``parameterization="factorised"``), in [0, 1]. ``"region"``: the
    region mask (the mask engine's mask for ``"mask"``; ``"auto"`` picks it). ``"colour"`` and
    ``"detail"``: that axis's mask times the region mask, how much of that kind of information the
    returned image still shows at each pixel (where the region was removed, none is left, whatever
    the axis mask there). Other engines have no colour or detail map: a ``ValueError``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from captum.attr import Attribution, FeatureAblation
from captum.log import log_usage

from .._helpers import Transform, as_tuple, blur, model_guard, resolve_target, segment_means, superpixels
from .._validation import RANGE_TOLERANCE
from ..estimators import BitEstimator, resolve_estimator
from ..simplification import SimplificationResult, Simplifier, SimplifyConfig, simplify
from ..simplification.common import round_8bit
from ..simplification.config import config_options, make_config
from ..simplification.factorised import AXES, kept_axis_maps, region_reference
from ..simplification.heads import probabilities
from ..simplification.learned import load_simplifier
from ..simplification.mask import reference_image
from ..simplification.result import HALF_LEVEL, refine_ties
from ..spaces import Spaces, make_spaces

ATTRIBUTIONS = ("auto", "mask", "retained", "ablation", "survival", "bits_removed", "kept", *AXES)
#: The parameterisations whose result has a mask (the ``mask`` and ``region`` maps).
MASKED = ("mask", "factorised")
#: What ``out_of_range="auto"`` tolerates: the image's smooth part (Gaussian blur, this sigma in
#: pixels) must stay within [-margin, 1 + margin] on all but 2% of the pixels. Zero-mean noise
#: (NoiseTunnel, sensitivity_max) averages out under the blur; a wrong normalisation does not.
CLAMP_BLUR_SIGMA, CLAMP_MARGIN = 1.5, 0.5


def attribution_map(
    result: SimplificationResult,
    kind: str = "auto",
    *,
    forward_func: Callable[..., torch.Tensor] | None = None,
    to_model: Transform | None = None,
    additional_forward_args: Any = None,
    survival_tolerance: float = 8 / 255,
    n_segments: int = 40,
    input_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A per-pixel map (B, 1, H, W) read off a :class:`SimplificationResult`.

    ``kind`` is one of :data:`ATTRIBUTIONS` (see the module docstring). ``"ablation"`` needs the
    classifier (``forward_func``, ``to_model``), which gets its images in ``input_dtype`` (the
    model's: float16, bfloat16, float64).
    """
    if kind == "auto":
        kind = "mask" if result.mask is not None else "retained"
    if kind == "retained":
        if result.mask is not None:
            return result.mask * (result.original - _mask_reference(result)).abs().amax(1, keepdim=True)
        return (result.simplified - result.original.mean((2, 3), keepdim=True)).abs().amax(1, keepdim=True)
    if kind in AXES:
        if result.axis_masks is None and (kind != "region" or result.mask is None):
            raise ValueError(f"attribution: {kind!r} needs " + ("a mask (parameterization 'mask' or 'factorised')" if kind == "region"
                             else "parameterization='factorised'") + f", got parameterization={result.settings.get('parameterization')!r}")
        if kind == "colour" and result.original.shape[1] != 3:  # no colour axis: the map would be the region's
            raise ValueError(f"attribution: 'colour' needs 3-channel images, got {result.original.shape[1]} channel(s)")
        if kind == "region" or result.axis_masks is None:
            return _mask_map(result)
        return kept_axis_maps(result.axis_masks)[kind]
    if kind == "mask":
        if result.mask is None:
            raise ValueError(f"attribution: 'mask' needs the mask engine, got parameterization={result.settings.get('parameterization')!r}")
        return _mask_map(result)
    if kind == "bits_removed":
        return result.bit_reduction_map
    if kind == "kept":
        return 1 - (result.original - result.simplified).abs().amax(1, keepdim=True)
    if kind == "survival":
        path = result.path_images[1:].to(result.original.dtype) / 255  # (S, B, C, H, W), without the original
        close = (path - result.original.unsqueeze(0)).abs().amax(2, keepdim=True) <= survival_tolerance + 1e-6
        return close.to(result.original.dtype).mean(0)
    if kind == "ablation":
        if forward_func is None:
            raise ValueError("forward_func: needed for attribution='ablation'")
        return _segment_ablation(result, forward_func, to_model or (lambda x: x), additional_forward_args, n_segments, input_dtype)
    raise ValueError(f"attribution: expected one of {ATTRIBUTIONS}, got {kind!r}")


def _mask_reference(result: SimplificationResult) -> torch.Tensor:
    """The simple image (B, C, H, W) a mask engine blended ``result``'s original towards (its ``reference`` setting)."""
    original_8bit = round_8bit(result.original, False)
    if result.settings.get("parameterization") == "factorised":
        return region_reference(original_8bit, result.settings.get("reference", "mean"))
    return reference_image(original_8bit, result.settings.get("reference", "mean"))


def _mask_map(result: SimplificationResult) -> torch.Tensor:
    """The returned image's mask, its ties ranked by the mean mask along the path (:func:`refine_ties`).

    With a learned simplifier's order head, the pixels the returned image takes from the reference
    (mask below :data:`HALF_LEVEL`) are one tie, ranked by ``removed_order``: still below every kept pixel.
    """
    if result.removed_order is not None:
        unkept = result.mask < HALF_LEVEL
        # the head orders only the unkept pixels; ties among kept ones (e.g. at exactly 1) keep the path's order
        kept_order = result.mask if result.mask_mean is None else result.mask_mean
        floored = torch.where(unkept, torch.zeros_like(result.mask), result.mask)
        return refine_ties(floored, torch.where(unkept, result.removed_order, kept_order))
    return result.mask if result.mask_mean is None else refine_ties(result.mask, result.mask_mean)


def _segment_ablation(result, forward_func, to_model, additional_forward_args, n_segments, input_dtype) -> torch.Tensor:
    simplified = result.simplified
    mask = superpixels(simplified, n_segments=n_segments)  # (B, 1, H, W)
    baseline = segment_means(simplified, mask)  # every segment replaced by its mean colour

    head = result.settings.get("head", "softmax")

    def prob(x: torch.Tensor, *args: Any) -> torch.Tensor:
        return probabilities(forward_func(to_model(x).to(input_dtype), *args).float(), head)

    ablation = FeatureAblation(prob)
    attr = ablation.attribute(
        simplified, baselines=baseline, target=result.target, additional_forward_args=additional_forward_args,
        feature_mask=mask.expand_as(simplified),
    )
    return attr.mean(1, keepdim=True)


class SimpleBits(Attribution):
    """Explain predictions by simplification: what survives is what the classifier needs.

    Parameters
    ----------
    forward_func : callable
        The classifier (model space in, logits (B, K) out). Never modified.
    estimator : BitEstimator, str or path, optional
        The bit estimator (default: the package default), loaded once.
    normalization : (mean, std), optional
        The model takes ``(pixels - mean) / std``; pixels are in [0, 1].
    transforms : (to_pixels, to_model), optional
        Differentiable conversions instead of ``normalization``.
    simplifier : Simplifier or path, optional
        A learned simplifier for this classifier (:func:`~simplebits_audit.train_simplifier`): each
        explanation is then one forward pass (plus ``refine_steps`` per-image steps if given). A
        file is loaded once, weights-only; one trained against another classifier warns.
    config : SimplifyConfig, optional
        The simplification options (:class:`~simplebits_audit.simplification.SimplifyConfig`).
    show_progress : bool
        Show a progress bar while simplifying.
    **options
        :class:`~simplebits_audit.simplification.SimplifyConfig` fields (``steps``, ``objective``,
        ``keep``, ...) overriding ``config``'s; checked here (a bad or unknown option fails at
        construction), overridable per call.

    Examples
    --------
    >>> sb = SimpleBits(model, normalization=([0.5] * 3, [0.25] * 3))
    >>> attr = sb.attribute(inputs, target=labels)             # like inputs, (B, C, H, W)
    >>> attr, result = sb.attribute(inputs, target=labels, return_result=True)
    >>> result.simplified                                       # the simplified images (pixels)
    >>> config = SimplifyConfig(steps=60, objective="ce")
    >>> careful = SimpleBits(model, config=config)              # the same options as simplify(..., config=config)
    >>> fast = SimpleBits(model, simplifier=train_simplifier(model, train_images))
    >>> attr = fast.attribute(inputs)                           # one forward pass per image
    """

    @config_options
    def __init__(
        self,
        forward_func: Callable[..., torch.Tensor],
        estimator: BitEstimator | str | Path | None = None,
        *,
        normalization: tuple | None = None,
        transforms: tuple[Transform, Transform] | None = None,
        simplifier: Simplifier | str | Path | None = None,
        config: SimplifyConfig | None = None,
        show_progress: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(forward_func)
        self.config = make_config(config, options, caller="SimpleBits")
        self.estimator = resolve_estimator(estimator)
        self.spaces = make_spaces(normalization, transforms)
        self.simplifier = None if simplifier is None else load_simplifier(simplifier, forward_func=forward_func)
        self.show_progress = show_progress
        self._warned_clamp = False

    def has_convergence_delta(self) -> bool:
        return False

    @property
    def multiplies_by_inputs(self) -> bool:
        return False

    @log_usage()
    @config_options
    def attribute(
        self,
        inputs: torch.Tensor | tuple[torch.Tensor, ...],
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        attribution: str = "auto",
        out_of_range: str = "auto",
        return_result: bool = False,
        config: SimplifyConfig | None = None,
        simplifier: Simplifier | str | Path | None = None,
        show_progress: bool | None = None,
        **options: Any,
    ):
        """Simplify the inputs and return a map shaped like them.

        Parameters
        ----------
        inputs : Tensor (B, C, H, W) or tuple of tensors
            Model-space images. With a tuple, the first tensor is simplified and explained; the
            others are passed to the model unchanged and receive zero attribution.
        target : int, list, tuple or Tensor, optional
            Captum-style target: one class for all, or one per example. Default: the prediction.
        additional_forward_args : any, optional
            Extra arguments for ``forward_func`` after the inputs.
        attribution : {"auto", "mask", "retained", "ablation", "survival", "bits_removed", "kept", "region", "colour", "detail"}
            Which map to return (see the module docstring); ``"colour"`` and ``"detail"`` need
            ``parameterization="factorised"`` (a ``ValueError`` naming ``attribution`` before any work otherwise).
        out_of_range : {"auto", "clamp", "error"}
            Pixels outside [0, 1]: ``"auto"`` clamps what looks like added noise (Captum's
            ``NoiseTunnel`` and ``sensitivity_max`` with their default arguments), with one warning,
            and refuses images whose smooth part is out of range too (a wrong normalisation);
            ``"clamp"`` always clamps; ``"error"`` always refuses.
        return_result : bool
            Also return the :class:`SimplificationResult`.
        config : SimplifyConfig, optional
            This call's options instead of the explainer's ``config``.
        simplifier : Simplifier or path, optional
            This call's learned simplifier instead of the explainer's.
        show_progress : bool, optional
            This call's choice instead of the explainer's.
        **options
            :class:`~simplebits_audit.simplification.SimplifyConfig` fields overriding the config's
            for this call; an unknown name is a ``TypeError`` naming it.

        Returns
        -------
        Tensor or tuple of Tensors (, SimplificationResult)
            Same type and shapes as ``inputs``.
        """
        config = make_config(self.config if config is None else config, options, caller="SimpleBits.attribute")
        is_tuple = isinstance(inputs, tuple)
        tensors = inputs if is_tuple else (inputs,)
        if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
            raise TypeError("inputs: expected a tensor or a tuple of tensors")
        if attribution not in ATTRIBUTIONS:
            raise ValueError(f"attribution: expected one of {ATTRIBUTIONS}, got {attribution!r}")
        if attribution in ("colour", "detail") and config.parameterization != "factorised":
            raise ValueError(f"attribution: {attribution!r} needs parameterization='factorised', got {config.parameterization!r}")
        if attribution in ("mask", "region") and config.parameterization not in MASKED:
            raise ValueError(f"attribution: {attribution!r} needs a mask (parameterization 'mask' or 'factorised'), "
                             f"got parameterization={config.parameterization!r}")
        if out_of_range not in ("auto", "clamp", "error"):
            raise ValueError(f"out_of_range: expected 'auto', 'clamp' or 'error', got {out_of_range!r}")
        image, rest = tensors[0], tensors[1:]
        if attribution == "colour" and (image.dim() != 4 or image.shape[1] != 3):
            raise ValueError(f"attribution: 'colour' needs 3-channel images (B, 3, H, W), got {tuple(image.shape)}")
        forward_args = tuple(rest) + as_tuple(additional_forward_args) or None
        if image.numel() == 0:
            raise ValueError(f"inputs: an empty batch, shape {tuple(image.shape)}")
        if out_of_range != "error":
            image = self._clamp(image, strict=out_of_range == "auto")
        if isinstance(target, tuple):
            target = list(target)
        resolve_target(target, image.shape[0])  # shape errors before any work
        # One guard around the simplification and the ablation map, which calls the model too.
        # The explainer's own estimator follows the images once (a copy: the caller's object never moves),
        # rather than simplify() copying it on every call.
        self.estimator = resolve_estimator(self.estimator, device=image.device)
        with model_guard(self.forward_func):
            result = simplify(
                self.forward_func, image.detach(), target, config=config, estimator=self.estimator, additional_forward_args=forward_args,
                transforms=(self.spaces.to_pixels, self.spaces.to_model), simplifier=self.simplifier if simplifier is None else simplifier,
                show_progress=self.show_progress if show_progress is None else show_progress,
            )
            attr_map = attribution_map(
                result, attribution, forward_func=self.forward_func, to_model=self.spaces.to_model, additional_forward_args=forward_args,
                input_dtype=image.dtype if image.is_floating_point() else torch.float32,
            )
        attr = attr_map.expand_as(image).to(image.dtype).contiguous()
        out = (attr, *(torch.zeros_like(t) for t in rest)) if is_tuple else attr
        return (out, result) if return_result else out

    def _clamp(self, image: torch.Tensor, strict: bool = False) -> torch.Tensor:
        """Images whose pixels leave [0, 1] (beyond round-off) clamped into it; others returned as they are.

        Leaving in-range images untouched keeps their numbers exact (a round trip through the
        normalisation would change the last bits). With ``strict``, only noise-like excursions
        are clamped (see :data:`CLAMP_MARGIN`); anything else is a ``ValueError`` naming ``inputs``.
        """
        with torch.no_grad():
            pixels = self.spaces.to_pixels(image.detach())
            if float(pixels.min()) >= -RANGE_TOLERANCE and float(pixels.max()) <= 1 + RANGE_TOLERANCE:
                return image
            if strict:
                smooth = blur(pixels, CLAMP_BLUR_SIGMA).flatten(1)
                outside = ((smooth < -CLAMP_MARGIN) | (smooth > 1 + CLAMP_MARGIN)).float().mean(1)
                if bool((outside > 0.02).any()):
                    raise ValueError(
                        f"inputs: pixel values from {float(pixels.min()):.2f} to {float(pixels.max()):.2f} are far outside [0, 1], "
                        "more than added noise would explain; give the model's normalization=(mean, std) or transforms "
                        "(or out_of_range='clamp')"
                    )
                if not self._warned_clamp:
                    warnings.warn("SimpleBits: pixels slightly outside [0, 1] (e.g. NoiseTunnel's noise) were clamped", stacklevel=4)
                    self._warned_clamp = True
            return self.spaces.to_model(pixels.clamp(0, 1))


def simplebits(
    forward_func: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    target: torch.Tensor | None,
    additional_forward_args: Any = None,
    *,
    spaces: Spaces | None = None,
    estimator: BitEstimator | str | None = None,
    attribution: str = "auto",
    out_of_range: str = "clamp",
    **simplify_options: Any,
) -> tuple[torch.Tensor, SimplificationResult]:
    """SimpleBits: simplify, then read a map off the simplified image (registry entry).

    ``spaces`` converts between pixel and model space (default: the model takes pixels);
    ``attribution`` picks the map (:data:`ATTRIBUTIONS`); every other option goes to
    :func:`~simplebits_audit.simplify` (``config``, ``simplifier``, ``show_progress`` and the
    :class:`~simplebits_audit.simplification.SimplifyConfig` fields: ``steps``, ``objective``,
    ``keep``, ``seed``, ...; the registry reads them off its signature). Returns the attributions
    (B, C, H, W), the map repeated over channels, and the simplification.
    """
    transforms = None if spaces is None else (spaces.to_pixels, spaces.to_model)
    explainer = SimpleBits(forward_func, estimator, transforms=transforms, **simplify_options)
    return explainer.attribute(
        inputs, target, additional_forward_args, attribution=attribution, out_of_range=out_of_range, return_result=True
    )


def simplebits_learned(
    forward_func: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    target: torch.Tensor | None,
    additional_forward_args: Any = None,
    *,
    simplifier: Simplifier | str | Path | None = None,
    refine_steps: int = 0,
    **options: Any,
) -> tuple[torch.Tensor, SimplificationResult]:
    """SimpleBits with a learned simplifier: one forward pass per image (registry entry).

    Needs ``simplifier`` (a :class:`~simplebits_audit.Simplifier` or its file); ``refine_steps``
    adds per-image mask-engine steps warm-started from its mask. Other options as :func:`simplebits`.
    """
    if simplifier is None:
        raise ValueError("simplifier: 'simplebits_learned' needs a trained simplifier (train_simplifier, or simplebits train-simplifier)")
    return simplebits(forward_func, inputs, target, additional_forward_args, simplifier=simplifier, refine_steps=refine_steps, **options)
