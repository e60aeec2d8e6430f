"""The model-parameter randomisation sanity check (Adebayo et al. 2018): maps under a re-initialised copy of the model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from simplebits_audit import metrics as M
from simplebits_audit.explainers import explain
from simplebits_audit.jobs.comparison import RANKED_METRICS, compare
from simplebits_audit.photos import held_out_crops

from ...helpers import assert_unchanged, snapshot


class _Scaled(nn.Module):
    """A layer without reset_parameters(): its weight must be shuffled instead."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.arange(1.0, 9.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.mean()


def _tiny_cnn(custom: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
              nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 3)]
    return nn.Sequential(*layers, *([_Scaled()] if custom else [])).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return held_out_crops(6, size=16, seed=3)


def _map(name: str):
    return lambda model, inputs, target: explain(name, model, inputs, target).map


def test_a_map_that_ignores_the_model_correlates_fully(images):
    model = _tiny_cnn()
    rho = M.model_randomisation(_map("brightness"), model, images, None)
    assert rho.shape == (len(images),) and rho.dtype == torch.float64
    assert torch.allclose(rho, torch.ones_like(rho))


def test_saliency_changes_with_the_weights_and_the_model_is_untouched(images):
    model = _tiny_cnn()
    before = snapshot(model)
    rho = M.model_randomisation(_map("saliency"), model, images, None, seed=0)
    assert_unchanged(before, model)
    assert not torch.isnan(rho).any()
    assert float(rho.mean()) < 0.6, rho  # brightness: 1.0
    # seeded: the same seed, the same numbers
    assert torch.equal(rho, M.model_randomisation(_map("saliency"), model, images, None, seed=0))


def test_randomised_copy_resets_every_weight_and_shuffles_the_rest():
    model = _tiny_cnn(custom=True)
    with torch.no_grad():  # "trained": no weight at its initial value (BatchNorm starts at ones and zeros)
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        model[1].running_mean.add_(1.0)
    before = snapshot(model)
    rng = torch.get_rng_state()
    clone = M.randomised_copy(model, seed=1)
    assert torch.equal(rng, torch.get_rng_state())  # the caller's random state is untouched
    assert_unchanged(before, model)
    for (name, p), q in zip(model.named_parameters(), clone.parameters()):
        assert not torch.equal(p, q), name
    assert torch.equal(clone[1].running_mean, torch.zeros(8))  # BatchNorm's statistics reset too
    custom = model[-1].weight
    shuffled = clone[-1].weight
    assert torch.equal(custom.sort().values, shuffled.sort().values) and not torch.equal(custom, shuffled)
    again = M.randomised_copy(model, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(clone.state_dict().values(), again.state_dict().values()))
    assert not clone.training  # eval mode kept
    with pytest.raises(TypeError, match="model: the randomisation test"):
        M.randomised_copy(lambda x: x, seed=0)


def test_a_constant_map_gives_nan_and_is_counted(images):
    model = _tiny_cnn()

    def half_constant(net, inputs, target):
        maps = explain("saliency", net, inputs, target).map
        maps[0] = 0.0  # all zeros: Spearman is undefined
        return maps

    rho = M.model_randomisation(half_constant, model, images, None)
    assert math.isnan(float(rho[0])) and not torch.isnan(rho[1:]).any()
    assert M.sanity.undefined(rho).tolist() == [1.0] + [0.0] * (len(images) - 1)
    assert M.rank_correlation(torch.zeros(2, 5), torch.rand(2, 5)).isnan().all()


def test_compare_reports_the_column(images, tmp_path):
    model = _tiny_cnn()
    before = snapshot(model)
    kw = dict(
        methods=["saliency", "brightness"], estimator="analytic", infidelity_samples=0, sensitivity_images=0, codecs=False, deletion_steps=4
    )
    cmp = compare(model, images, **kw)
    assert_unchanged(before, model)
    rows = {r["method"]: r for r in cmp.to_rows()}
    assert rows["brightness"]["randomisation_spearman"] == pytest.approx(1.0)
    assert rows["saliency"]["randomisation_spearman"] < 0.6
    assert rows["saliency"]["randomisation_undefined"] == 0.0
    assert "randomisation_spearman" not in RANKED_METRICS  # a sanity check, not a quality score
    assert cmp.settings["randomisation"] is True
    # NaN per image is written as null
    cmp.per_image["saliency"]["randomisation_spearman"][0] = float("nan")
    cmp.to_json(tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["per_image"]["saliency"]["randomisation_spearman"][0] is None
    off = compare(model, images, randomisation=False, **kw)
    assert "randomisation_spearman" not in off.columns() and off.settings["randomisation"] is False


def test_compare_skips_the_check_for_a_plain_function(images):
    model = _tiny_cnn()
    with pytest.warns(UserWarning, match="randomisation: the model is not a torch.nn.Module"):
        cmp = compare(lambda x: model(x), images, methods=["brightness"], estimator="analytic", infidelity_samples=0,
                      sensitivity_images=0, codecs=False, deletion_steps=2)
    assert "randomisation_spearman" not in cmp.columns()
