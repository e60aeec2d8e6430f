"""compare(): every method on the same batch, one metric table, CSV/JSON round trip."""

from __future__ import annotations

import copy
import csv
import json
import math

import pytest
import torch

from simplebits_audit.explainers import SIMPLEBITS
from simplebits_audit.jobs.comparison import METRICS, Comparison, all_methods, compare

METHODS = (SIMPLEBITS, "ig", "gradcam", "centre", "random")
FAST = {
    "method_options": {SIMPLEBITS: {"steps": 4, "n_snapshots": 2}, "ig": {"n_steps": 8}},
    "deletion_steps": 4,
    "fractions": (0.0, 0.5, 1.0),
    "infidelity_samples": 2,
    "sensitivity_images": 2,
    "sensitivity_samples": 2,
    "estimator": "analytic",
}


@pytest.fixture(scope="module")
def centre_masks():
    """The bright/dark model compares the centre with the border: the centre square is what matters."""
    m = torch.zeros(4, 1, 16, 16, dtype=torch.bool)
    m[..., 4:12, 4:12] = True
    return m


@pytest.fixture(scope="module")
def comparison(bright_dark_model, photos16, centre_masks):
    return compare(bright_dark_model, photos16[:4], methods=METHODS, masks=centre_masks, **FAST)


def test_table_structure(comparison):
    c = comparison
    assert c.methods == list(METHODS)
    for m in METHODS:
        assert c.maps[m].shape == (4, 1, 16, 16) and torch.isfinite(c.maps[m]).all()
        assert c.seconds_per_image[m] >= 0
    assert c.reference == {SIMPLEBITS: False, "ig": False, "gradcam": False, "centre": True, "random": True}
    rows = c.to_rows()
    assert [r["method"] for r in rows] == list(METHODS)
    for r in rows:
        for key in ("bits_auc", "bits_needed", "bits_auc_map", "auroc", "pointing_game", "relevance_mass", "relevance_rank",
                    "deletion_auc", "insertion_auc", "infidelity", "sensitivity"):
            assert r[key] is not None and math.isfinite(r[key]), (r["method"], key)
        assert 0 <= r["auroc"] <= 1 and 0 <= r["bits_auc"] <= 1
    by = {r["method"]: r for r in rows}
    assert by["ig"]["x_ig"] == pytest.approx(1.0)
    # simplicity and codec columns only where there is a simplified image
    assert by[SIMPLEBITS]["webp_bpd_after"] is not None and by["ig"]["webp_bpd_after"] is None
    assert by[SIMPLEBITS]["jxl_bpd_after"] < by[SIMPLEBITS]["jxl_bpd_before"] and by["ig"]["jxl_bpd_after"] is None
    assert by[SIMPLEBITS]["bits_removed"] >= 0
    assert min(r["rank"] for r in rows) == 1 and all(1 <= r["rank"] <= len(rows) for r in rows)
    assert list(rows[0])[:4] == ["method", "reference", "seconds_per_image", "x_ig"] and list(rows[0])[-1] == "rank"
    # per-image values: (B,), sensitivity only on the first two images
    assert c.per_image["ig"]["auroc"].shape == (4,)
    assert torch.isnan(c.per_image["ig"]["sensitivity"][2:]).all() and not torch.isnan(c.per_image["ig"]["sensitivity"][:2]).any()
    # SimpleBits' bits curve is its lambda path, its map's curve is kept too
    assert c.curves[SIMPLEBITS].lambdas is not None and c.curves[f"{SIMPLEBITS} (map)"].fractions is not None
    assert c.result is not None and len(c.result) == 4


def test_the_scored_target_is_recorded(bright_dark_model, photos16):
    """No target: the prediction (under a sigmoid head, the most probable label); a given target as given."""
    x = photos16[:3]
    with torch.no_grad():
        predicted = bright_dark_model(x).argmax(1)
    fast = {k: v for k, v in FAST.items() if k != "method_options"}
    assert compare(bright_dark_model, x, methods=("centre",), **fast).targets.tolist() == predicted.tolist()
    other = (1 - predicted).tolist()
    assert compare(bright_dark_model, x, other, methods=("centre",), **fast).to_dict()["targets"] == other


def test_localisation_only_with_masks(bright_dark_model, photos16):
    c = compare(bright_dark_model, photos16[:2], methods=("gradcam", "centre"), **{k: v for k, v in FAST.items() if k != "method_options"})
    assert "auroc" not in c.to_rows()[0] and "deletion_auc" in c.to_rows()[0]


def test_csv_and_json_round_trip(comparison, tmp_path):
    rows = comparison.to_rows()
    comparison.to_csv(tmp_path / "c.csv")
    with open(tmp_path / "c.csv", newline="", encoding="utf-8") as f:
        back = list(csv.DictReader(f))
    assert [r["method"] for r in back] == [r["method"] for r in rows]
    for r, b in zip(rows, back):
        assert list(b) == list(r)
        for k, v in r.items():
            if v is None:
                assert b[k] == ""
            elif isinstance(v, bool):
                assert b[k] == str(v)
            elif isinstance(v, (int, float)):
                assert float(b[k]) == pytest.approx(v, rel=1e-12)
    comparison.to_json(tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    assert data["rows"] == rows
    assert data["settings"]["methods"] == list(METHODS)
    assert len(data["per_image"]["ig"]["auroc"]) == 4
    assert data["targets"] == comparison.targets.tolist() and len(data["targets"]) == 4  # what each image's scores explained
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_errors_before_long_work(bright_dark_model, photos16, centre_masks):
    x = photos16[:4]
    with pytest.raises(ValueError, match=r"methods: unknown method 'foo'; choose from \['simplebits'"):
        compare(bright_dark_model, x, methods=("ig", "foo"))
    with pytest.raises(ValueError, match="methods: listed twice"):
        compare(bright_dark_model, x, methods=("ig", "ig"))
    with pytest.raises(ValueError, match="masks"):
        compare(bright_dark_model, x, methods=("ig",), masks=centre_masks[:2])
    with pytest.raises(TypeError, match=r"options: 'ig' does not take"):
        compare(bright_dark_model, x, methods=("ig",), method_options={"ig": {"n_stepz": 2}})
    with pytest.raises(ValueError, match="method_options"):
        compare(bright_dark_model, x, methods=("ig",), method_options={"lime": {}})
    with pytest.raises(TypeError, match=r"options: 'simplebits' does not take \['stepz'\]"):
        compare(bright_dark_model, x, methods=(SIMPLEBITS,), method_options={SIMPLEBITS: {"stepz": 2}})
    with pytest.raises(ValueError, match="inputs"):
        compare(bright_dark_model, x * 3, methods=("ig",))
    with pytest.raises(ValueError, match="target"):
        compare(bright_dark_model, x, [0, 1], methods=("ig",))


def test_model_unchanged(bright_dark_model, photos16):
    model = copy.deepcopy(bright_dark_model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    compare(model, photos16[:2], methods=(SIMPLEBITS, "ig", "gradcam"),
        **{**FAST, "method_options": {SIMPLEBITS: {"steps": 4, "n_snapshots": 2}}})
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert flags == [p.requires_grad for p in model.parameters()] and not model.training
    assert all(p.grad is None for p in model.parameters())


def _fake(values: dict[str, dict[str, float]], reference: dict[str, bool]) -> Comparison:
    per_image = {m: {k: torch.tensor([v, v], dtype=torch.double) for k, v in d.items()} for m, d in values.items()}
    methods = list(values)
    return Comparison(methods, {}, {m: 0.1 for m in methods}, per_image, reference=reference)


def test_ranks_and_reference_verdict():
    c = _fake(
        {"a": {"auroc": 0.9, "deletion_auc": 0.1}, "b": {"auroc": 0.6, "deletion_auc": 0.3}, "ref": {"auroc": 0.95, "deletion_auc": 0.5}},
        {"a": False, "b": False, "ref": True},
    )
    assert c.ranks() == {"a": 1, "b": 3, "ref": 2}
    assert c.best("auroc") == "a" and c.best("auroc", reference=None) == "ref" and c.best("deletion_auc") == "a"
    assert c.reference_beats_real() == [("auroc", "ref", "a")]
    assert c.columns() == [m for m in METRICS if m in ("auroc", "deletion_auc")]
    with pytest.raises(ValueError, match="metric"):
        c.best("png_bpd_after")


def test_default_methods_are_known():
    from simplebits_audit.jobs.comparison import DEFAULT_METHODS

    assert set(DEFAULT_METHODS) <= set(all_methods())
    assert {"simplebits", "ig", "occlusion", "gradcam", "brightness", "max_channel", "centre", "random"} <= set(DEFAULT_METHODS)


def test_a_simplifying_variant_is_scored_like_simplebits(bright_dark_model, photos16, monkeypatch):
    """compare() knows no explainer by name: a second registry entry that simplifies gets the same columns."""
    from simplebits_audit.explainers import EXPLAINERS, get_spec, spec

    base = get_spec(SIMPLEBITS)
    variant = spec("simplebits_ce", base.fn, simplifies=True, map_reduce="first",
        forwards_to=base.forwards_to, defaults={"objective": "ce"})
    monkeypatch.setitem(EXPLAINERS, "simplebits_ce", variant)
    fast = {**FAST, "method_options": {"simplebits_ce": {"steps": 4, "n_snapshots": 2}}, "sensitivity_images": 0}
    c = compare(bright_dark_model, photos16[:2], methods=("simplebits_ce", "centre"), **fast)
    row = c.to_rows()[0]
    assert row["method"] == "simplebits_ce" and row["bits_removed"] is not None and row["webp_bpd_after"] is not None
    assert c.results["simplebits_ce"].settings["objective"] == "ce" and c.result is c.results["simplebits_ce"]
    assert c.curves["simplebits_ce"].lambdas is not None and "simplebits_ce (map)" in c.curves


def test_compare_module_has_no_simplebits_branch():
    """The issue's rule: explainers are peers in compare; no comparison asks for SimpleBits by name."""
    import ast
    import importlib
    import inspect

    module = importlib.import_module("simplebits_audit.jobs.comparison")

    def names_simplebits(node: ast.AST) -> bool:
        return (isinstance(node, ast.Name) and node.id in ("SIMPLEBITS", "SimpleBits")) or (
            isinstance(node, ast.Constant) and node.value == "simplebits")

    tree = ast.parse(inspect.getsource(module))
    branches = [n for n in ast.walk(tree) if isinstance(n, ast.Compare) and any(names_simplebits(o) for o in [n.left, *n.comparators])]
    uses = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in ("SIMPLEBITS", "SimpleBits")]
    assert branches == []
    assert len(uses) == 1  # DEFAULT_METHODS names it once, as the first method of the default table
