"""The package's layers: each module imports only from its own layer or the layers below (issue #10).

Every import counts, including those inside functions (lazy imports hide a dependency, they do
not remove it). The top-level ``__init__`` (lazy public exports) is the one module above all.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "simplebits_audit"

#: lowest first; a name is a module or a package (everything inside it)
LAYERS: list[tuple[str, ...]] = [
    ("_validation",),
    ("_helpers", "_io", "_progress", "spaces", "images", "photos", "codecs", "preprocessing"),
    ("estimators", "testbeds", "entropy_coding"),
    ("models", "simplification"),
    ("metrics",),
    ("results",),
    ("training",),
    ("explainers",),
    ("report",),
    ("jobs",),
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
            assert "jobs" not in {_part(n) for n in _imports(module, path)}, module


#: the import paths from before ``jobs/`` and ``explainers/`` (issue #20): gone, not aliased
OLD_MODULES = ("baselines", "compare", "explainer", "audit")
# ``simplebits_audit.<old>`` (a module) or ``simplebits_audit/<old>`` (a path), or ``from simplebits_audit import
# <old>`` (not ``compare`` there, nor a call ``simplebits_audit.compare(...)``: that is the public
# function); built from the names, so that this file passes its own scan.
_OLD_PATH = re.compile(rf"\bsimplebits_audit[./](?:{'|'.join(OLD_MODULES)})\b(?!\()")
_OLD_FROM = re.compile(r"\bfrom\s+simplebits_audit\s+import\s+[^#\n]*\b(?:baselines|explainer|audit)\b")
#: text files of the repository that could name an import path
_SCANNED = {".py", ".md", ".toml", ".sh", ".cfg", ".txt", ".yml", ".yaml"}


@pytest.mark.parametrize("name", OLD_MODULES)
def test_old_modules_are_gone(name):
    import simplebits_audit

    stale = [p for p in (PACKAGE / name, PACKAGE / f"{name}.py") if p.exists()]
    assert not stale, f"{stale[0]} is left over from the old import path: delete it"
    # what ``import simplebits_audit.<name>`` finds in this checkout
    assert importlib.machinery.PathFinder.find_spec(f"simplebits_audit.{name}", simplebits_audit.__path__) is None
    try:
        module = importlib.import_module(f"simplebits_audit.{name}")
    except ModuleNotFoundError:
        return
    # Only another checkout's editable install (a shared virtual environment's path finder) can still find it.
    assert PACKAGE not in Path(module.__file__).resolve().parents, module.__file__


def _repository_files() -> list[Path]:
    """The repository's text files, without hidden folders (``.git``, a ``.venv``; ``.ci`` and ``.github`` kept) and build output."""
    out = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if (not d.startswith(".") or d in (".ci", ".github"))
                   and d not in ("build", "dist", "__pycache__", "node_modules") and not d.endswith(".egg-info")]
        ci = Path(folder).relative_to(ROOT).parts[:1] in ((".ci",), (".github",))
        out += [Path(folder, f) for f in files if ci or Path(f).suffix in _SCANNED or f == "Makefile"]
    return out


def test_no_file_names_an_old_import_path():
    files = _repository_files()
    # the scan sees what it should, and its patterns catch what they should
    assert Path(__file__).resolve() in files and (ROOT / "pyproject.toml") in files
    for old in OLD_MODULES:
        assert _OLD_PATH.search(f"from simplebits_audit.{old} import x") and _OLD_PATH.search(f"simplebits_audit/{old}")
    assert _OLD_FROM.search(f"from simplebits_audit import testbeds, {OLD_MODULES[0]} as bl")
    for fine in ("from simplebits_audit.explainers import x", "from simplebits_audit.jobs.comparison import x",
                 "from simplebits_audit import compare, run_audit", "simplebits_audit.compare(model, x)"):
        assert not _OLD_PATH.search(fine) and not _OLD_FROM.search(fine), fine
    found = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if _OLD_PATH.search(line) or _OLD_FROM.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "old import paths (use simplebits_audit.explainers / simplebits_audit.jobs):\n" + "\n".join(found)


def test_every_public_name_resolves():
    """The top-level lazy exports point at the modules that define them (none at an old import path)."""
    import simplebits_audit

    for name in simplebits_audit.__all__:
        assert getattr(simplebits_audit, name) is not None, name
    assert not {m.lstrip(".").split(".")[0] for m in simplebits_audit._EXPORTS.values()} & set(OLD_MODULES)


def test_explainers_never_import_training():
    # Explaining needs a trained simplifier's network (simplification.learned), never the code that trains it.
    for module, path in _modules().items():
        if _part(module) == "explainers":
            assert "training" not in {_part(n) for n in _imports(module, path)}, module


def test_no_package_exports_a_name_that_shadows_its_own_module():
    # ``from .compare import compare`` in a package's __init__ makes ``package.compare`` the function:
    # the module can then only be reached through sys.modules (ARCHITECTURE.md, "what must never be").
    found = []
    for init in PACKAGE.rglob("__init__.py"):
        modules = {p.stem for p in init.parent.glob("*.py")} | {p.name for p in init.parent.iterdir() if (p / "__init__.py").is_file()}
        for node in ast.walk(ast.parse(init.read_text(encoding="utf-8"))):
            # ``from . import x`` imports the module x itself: fine
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                found += [f"{init.relative_to(ROOT)}: {a.asname or a.name}" for a in node.names
                          if (a.asname or a.name) in modules]
    assert not found, "exported names that shadow a module of the same package:\n" + "\n".join(found)
