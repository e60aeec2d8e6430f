"""What several test modules share: running the command line as users do, and snapshots of a model's state."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

#: The command line, run the way ``torchrun -m`` runs it: no console script needed, so the tests never skip for want of one.
CLI = [sys.executable, "-m", "simplebits_audit.cli.main"]
#: Under CI (``CI`` set, as ``.ci/run`` does) or with ``SIMPLEBITS_REQUIRE_BROWSER=1`` a missing tool is a failure, not a skip.
REQUIRED = bool(os.environ.get("CI")) or os.environ.get("SIMPLEBITS_REQUIRE_BROWSER") == "1"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``simplebits ARGS`` in a subprocess; text output captured."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


def cli_in_process(capsys, *args: str) -> tuple[int, list[str]]:
    """Exit code and non-empty stderr lines of ``simplebits ARGS`` run in this process."""
    from simplebits_audit.cli.main import main

    argv, sys.argv = sys.argv, ["simplebits", *args]
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code
    finally:
        sys.argv = argv
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def snapshot(model: nn.Module) -> dict:
    """Everything a call must leave as it found it: state (buffers included), flags, gradients, modes, hooks."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "hooks": [(len(m._forward_hooks), len(m._backward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
    }


def assert_unchanged(before: dict, model: nn.Module) -> None:
    """``model`` is as :func:`snapshot` found it, to the bit."""
    after = snapshot(model)
    assert before["state"].keys() == after["state"].keys()
    for k in before["state"]:
        assert torch.equal(before["state"][k], after["state"][k]), k
    assert before["requires_grad"] == after["requires_grad"]
    assert before["modes"] == after["modes"]
    assert before["hooks"] == after["hooks"]
    for ga, gb in zip(before["grads"], after["grads"]):
        assert (ga is None and gb is None) or torch.equal(ga, gb)


def assert_same_json(actual, expected, *, ignore: Collection[str] = (), where: str = "") -> None:
    """Equal JSON values, keys in ``ignore`` skipped at any depth; floats to a relative 1e-4
    (thread counts change the last bits of a float, nothing else may differ)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), (where, set(actual) ^ set(expected))
        for key in expected:
            if key not in ignore:
                assert_same_json(actual[key], expected[key], ignore=ignore, where=f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_json(a, e, ignore=ignore, where=f"{where}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-4, abs=1e-6), where
    else:
        assert actual == expected, where


def assert_same_arrays(actual_dir: Path, expected_dir: Path, records: list[dict]) -> None:
    """Every record's ``arrays.npz`` holds the same arrays in both output folders (to a relative 1e-4)."""
    for record in records:
        rel = record["files"]["arrays"]
        with np.load(actual_dir / rel) as new, np.load(expected_dir / rel) as old:
            assert sorted(new.files) == sorted(old.files), rel
            for key in old.files:
                np.testing.assert_allclose(new[key], old[key], rtol=1e-4, atol=1e-5, err_msg=f"{rel}:{key}")


def assert_refines(attr: torch.Tensor, mask: torch.Tensor) -> None:
    """The map is the mask with its ties broken: within 0.001 of it, never ordered against it, constant where it is."""
    assert float((attr - mask).abs().max()) <= 1e-3 + 1e-7
    for a, m in zip(attr.flatten(1), mask.flatten(1)):
        assert bool((m[a.argsort()].diff() >= 0).all()), "the map reorders pixels the mask orders"
        if m.unique().numel() == 1:
            assert torch.equal(a, m)
