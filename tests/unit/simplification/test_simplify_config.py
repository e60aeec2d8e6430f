"""SimplifyConfig: the engine options declared once, checked when made, resolved per engine; simplify(config=...) and keywords agree."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from simplebits_audit import SimpleBits, SimplifyConfig, simplify
from simplebits_audit.explainers import explain, get_spec
from simplebits_audit.simplification import ENGINE_DEFAULTS
from simplebits_audit.simplification.common import PathRecorder

FAST = {"steps": 6, "n_snapshots": 3}


def _same(a, b) -> None:
    """Two results agree exactly (the images, the bits, the path, what they record)."""
    for name in ("simplified", "bits_after", "probs_after", "path_bits", "path_images", "mask"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert torch.equal(x, y), name
    assert a.settings == b.settings and a.status == b.status and a.path_labels == b.path_labels


@pytest.mark.parametrize(
    "options, error, field",
    [
        ({"objective": "mse"}, ValueError, "objective"),
        ({"head": "tanh"}, ValueError, "head"),
        ({"head": "sigmoid", "threshold": 1.0}, ValueError, "threshold"),
        ({"parameterization": "wavelets"}, ValueError, "parameterization"),
        ({"latent_init": "zero"}, ValueError, "latent_init"),
        ({"keep": 1.5}, ValueError, "keep"),
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.5}, TypeError, "steps"),
        ({"n_snapshots": 0}, ValueError, "n_snapshots"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"adam_eps": 0.0}, ValueError, "adam_eps"),
        ({"lambda_start": 0.0}, ValueError, "lambda_start"),
        # the mask engine's default start is 1: an end below it is refused although the start was not given
        ({"lambda_end": 0.5}, ValueError, "lambda_end"),
        ({"mask_size": 0}, ValueError, "mask_size"),
        ({"mask_init": 1.5}, ValueError, "mask_init"),
        ({"reference": "sky"}, ValueError, "reference"),
        ({"temperature": (2.0, 1.0)}, ValueError, "temperature"),
        ({"temperature": 1.0}, ValueError, "temperature"),
        ({"refine_steps": -1}, ValueError, "refine_steps"),
        ({"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_a_bad_option_fails_in_one_line_naming_the_field(options, error, field):
    with pytest.raises(error, match=field) as info:
        SimplifyConfig(**options)
    assert "\n" not in str(info.value)
    # replace() checks again: a valid config cannot be turned into an invalid one
    with pytest.raises(error, match=field):
        dataclasses.replace(SimplifyConfig(), **options)


@pytest.mark.parametrize("engine", sorted(ENGINE_DEFAULTS))
def test_resolution_fills_each_engines_defaults_and_keeps_given_values(engine):
    config = SimplifyConfig(parameterization=engine)
    resolved = config.resolved()
    assert None not in (resolved.steps, resolved.lr, resolved.lambda_start, resolved.lambda_end)
    assert {k: getattr(resolved, k) for k in ENGINE_DEFAULTS[engine]} == ENGINE_DEFAULTS[engine]
    assert resolved.resolved() == resolved
    given = SimplifyConfig(parameterization=engine, steps=7, lr=0.5, lambda_start=2.0, lambda_end=3.0).resolved()
    assert (given.steps, given.lr, given.lambda_start, given.lambda_end) == (7, 0.5, 2.0, 3.0)
    # a start above the engine's default end is used as the end too
    high = SimplifyConfig(parameterization=engine, lambda_start=100.0).resolved()
    assert high.lambda_end == 100.0
    # every other field passes through unchanged
    others = [f.name for f in dataclasses.fields(SimplifyConfig) if f.name not in ENGINE_DEFAULTS[engine]]
    assert all(getattr(resolved, n) == getattr(config, n) for n in others)


def test_the_config_is_frozen_hashable_and_stores_a_temperature_list_as_a_tuple():
    config = SimplifyConfig(temperature=[1.0, 2.0])
    assert config.temperature == (1.0, 2.0) and config == SimplifyConfig(temperature=(1.0, 2.0))
    assert hash(config) == hash(SimplifyConfig(temperature=(1.0, 2.0)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 3


def test_simplify_signature_lists_every_config_field_with_its_default():
    """The CLI's help texts and the explainer registry read the defaults off simplify's signature."""
    params = inspect.signature(simplify).parameters
    for f in dataclasses.fields(SimplifyConfig):
        assert params[f.name].kind is inspect.Parameter.KEYWORD_ONLY and params[f.name].default == f.default, f.name
    assert params["config"].default is None
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def test_keywords_equal_the_same_config_and_override_its_fields(bright_dark_model, photos16):
    x = photos16[:3]
    by_keywords = simplify(bright_dark_model, x, estimator="analytic", mask_size=4, objective="ce", seed=2, **FAST)
    config = SimplifyConfig(mask_size=4, objective="ce", seed=2, **FAST)
    _same(by_keywords, simplify(bright_dark_model, x, estimator="analytic", config=config))
    # a keyword overrides the config's field, exactly as dataclasses.replace would
    base = SimplifyConfig(mask_size=4, objective="ce", seed=5, steps=3, n_snapshots=2)
    _same(by_keywords, simplify(bright_dark_model, x, estimator="analytic", config=base, seed=2, steps=6, n_snapshots=3))
    # the pixels engine, its own defaults resolved the same way
    pixels = SimplifyConfig(parameterization="pixels", steps=4, n_snapshots=2)
    _same(simplify(bright_dark_model, x, estimator="analytic", parameterization="pixels", steps=4, n_snapshots=2),
          simplify(bright_dark_model, x, estimator="analytic", config=pixels))


def test_a_reused_config_gives_identical_results(bright_dark_model, photos16):
    config = SimplifyConfig(seed=3, **FAST)
    first = simplify(bright_dark_model, photos16[:2], estimator="analytic", config=config)
    second = simplify(bright_dark_model, photos16[:2], estimator="analytic", config=config)
    _same(first, second)
    assert first.settings["steps"] == 6 and first.settings["lr"] == ENGINE_DEFAULTS["mask"]["lr"]
    # and another seed is another run (the comparison above can fail)
    other = simplify(bright_dark_model, photos16[:2], estimator="analytic", config=config, seed=4, objective="ce")
    assert other.settings != first.settings


def test_an_unknown_option_is_refused_before_any_work(photos16):
    def never_called(x):
        raise AssertionError("the model ran")

    with pytest.raises(TypeError, match="simplify: unknown option 'stepz'; options are SimplifyConfig fields: objective") as info:
        simplify(never_called, photos16, stepz=3)
    assert "\n" not in str(info.value)
    with pytest.raises(TypeError, match="'nsteps', 'stepz'"):
        simplify(never_called, photos16, stepz=3, nsteps=2)
    with pytest.raises(TypeError, match="config: expected a SimplifyConfig"):
        simplify(never_called, photos16, config={"steps": 3})
    with pytest.raises(ValueError, match="mask_init"):
        simplify(never_called, photos16, config=SimplifyConfig(), mask_init=2.0)


def test_simplebits_takes_a_config_and_checks_its_options_when_made(bright_dark_model, photos16):
    x = photos16[:2]
    config = SimplifyConfig(seed=1, **FAST)
    by_config = SimpleBits(bright_dark_model, "analytic", config=config).attribute(x, return_result=True)
    by_keywords = SimpleBits(bright_dark_model, "analytic", seed=1, **FAST).attribute(x, return_result=True)
    assert torch.equal(by_config[0], by_keywords[0])
    _same(by_config[1], by_keywords[1])
    # per call: keywords override the explainer's config; a config replaces it
    explainer = SimpleBits(bright_dark_model, "analytic", steps=2, n_snapshots=1)
    _, result = explainer.attribute(x, return_result=True, config=config)
    _same(result, by_config[1])
    _, result = explainer.attribute(x, return_result=True, seed=1, **FAST)
    _same(result, by_config[1])
    with pytest.raises(TypeError, match="SimpleBits: unknown option 'stepz'"):
        SimpleBits(bright_dark_model, "analytic", stepz=3)
    with pytest.raises(ValueError, match="keep"):
        SimpleBits(bright_dark_model, "analytic", keep=2.0)
    with pytest.raises(TypeError, match="SimpleBits.attribute: unknown option 'stepz'"):
        explainer.attribute(x, stepz=3)
    params = inspect.signature(SimpleBits).parameters
    assert all(params[f.name].default == f.default for f in dataclasses.fields(SimplifyConfig))


def test_the_registry_reads_simplebits_options_from_the_config(bright_dark_model, photos16):
    options = get_spec("simplebits").options
    assert set(SimplifyConfig.fields()) <= set(options) and "config" in options
    assert options["objective"] == SimplifyConfig().objective
    config = SimplifyConfig(seed=2, **FAST)
    from simplebits_audit.explainers import Context

    by_config = explain("simplebits", bright_dark_model, photos16[:2], estimator="analytic", config=config)
    by_keywords = explain("simplebits", bright_dark_model, photos16[:2], context=Context(estimator="analytic"), seed=2, **FAST)
    assert torch.equal(by_config.attributions, by_keywords.attributions)
    with pytest.raises(TypeError, match="stepz"):
        explain("simplebits", bright_dark_model, photos16[:2], stepz=3)


def test_the_path_recorder_refuses_a_path_that_gives_masks_or_labels_for_some_snapshots_only(photos16):
    x = torch.round(photos16[:2] * 255) / 255
    probs, bits, ones = torch.full((2, 2), 0.5), torch.full((2,), 256.0), torch.ones(2, 1, 16, 16)
    path = PathRecorder(x, ones, probs)
    path.add(x, bits, probs, 1.0)
    with pytest.raises(ValueError, match="mask: given for some snapshots"):
        path.add(x, bits, probs, 1.0, mask=ones)
    with pytest.raises(ValueError, match="label"):
        path.add(x, bits, probs, 1.0, label="step 2")
    with_maps = PathRecorder(x, ones, probs, mask=ones, label="original")
    with_maps.add(x, bits, probs, 1.0, mask=ones, label="step 1", bits_map=ones)
    with pytest.raises(ValueError, match="bits_map"):
        with_maps.add(x, bits, probs, 2.0, mask=ones, label="step 2")
    assert len(path) == 2 and len(with_maps) == 2
