"""The package's layers: each module imports only from its own layer or the layers below (issue #10).

Every import counts, including those inside functions (lazy imports hide a dependency, they do
not remove it). The top-level ``__init__`` (lazy public exports) is the one module above all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "simplebits_audit"

#: lowest first; a name is a module or a package (everything inside it)
LAYERS: list[tuple[str, ...]] = [
    ("_validation",),
    ("_helpers", "_io", "spaces", "images", "photos", "codecs", "preprocessing"),
    ("estimators", "testbeds", "entropy_coding"),
    ("models", "simplification"),
    ("metrics",),
    ("results",),
    ("training",),
    ("explainers", "baselines", "explainer"),
    ("report",),
    ("jobs", "audit", "compare"),
    ("cli",),
]
LAYER = {name: rank for rank, names in enumerate(LAYERS) for name in names}
#: known upward imports, each with its reason (a new one needs one too)
EXCEPTIONS = {
    ("simplebits_audit.photos", "simplebits_audit.estimators.analytic"):
        "training_photos() rates wallpapers with the analytic coder (lazy, only when building a training corpus)",
    # codecs.encode/decode (the estimator as a real codec) live beside the classic codecs, where users
    # look for them; they import the estimator and its entropy coder lazily, only when called.
    ("simplebits_audit.codecs", "simplebits_audit.estimators"): "encode/decode take an estimator (lazy, only when called)",
    ("simplebits_audit.codecs", "simplebits_audit.entropy_coding"): "encode/decode run the entropy coder (lazy, only when called)",
}


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


def _imports(module: str, path: Path) -> set[str]:
    """Absolute names of the simplebits_audit modules ``module`` imports (``from X import y``: ``X.y`` if that is a module)."""
    known = _modules()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            submodules = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known or f"{base}.{a.name}.__init__" in known}
            found.update(submodules)
            if node.module or len(submodules) < len(node.names):  # ``from .. import photos`` imports the module only
                found.add(base)
    return {name for name in found if name == "simplebits_audit" or name.startswith("simplebits_audit.")}


def _part(module: str) -> str:
    """The layer name of a module: its first component below the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_has_a_layer():
    parts = {_part(m) for m in _modules()} - {"__init__"}
    assert parts <= set(LAYER), parts - set(LAYER)


@pytest.mark.parametrize("module", sorted(m for m in _modules() if _part(m) not in ("__init__", "")))
def test_imports_point_down(module):
    path = _modules()[module]
    rank = LAYER[_part(module)]
    for name in _imports(module, path):
        other = _part(name)
        if other in ("", "__init__"):
            pytest.fail(f"{module} imports the package root (lazy exports only); import the module itself")
        if (module, name) not in EXCEPTIONS:
            assert LAYER[other] <= rank, f"{module} (layer {_part(module)}) imports {name} (layer {other}, above it)"
        private = [p for p in name.split(".")[2:] if p.startswith("_") and p != "__init__"]
        if private and other != _part(module):
            pytest.fail(f"{module} imports {name}, a private module of another package: move it down to simplebits_audit/_helpers.py")


def test_report_reads_results_and_never_a_job():
    for module, path in _modules().items():
        if _part(module) == "report":
            assert not {_part(n) for n in _imports(module, path)} & {"jobs", "audit", "compare"}, module


def test_explainers_never_import_training():
    # Explaining needs a trained simplifier's network (simplification.learned), never the code that trains it.
    for module, path in _modules().items():
        if _part(module) == "explainers":
            assert "training" not in {_part(n) for n in _imports(module, path)}, module
