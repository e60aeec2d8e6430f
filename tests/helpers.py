"""What several test modules share: running the command line as users do, and snapshots of a model's state."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from torch import nn

#: The command line, run the way ``torchrun -m`` runs it: no console script needed, so the tests never skip for want of one.
CLI = [sys.executable, "-m", "simplebits_audit.cli.main"]
#: Under CI (``CI`` set, as ``.ci/run`` does) or with ``SIMPLEBITS_REQUIRE_BROWSER=1`` a missing tool is a failure, not a skip.
REQUIRED = bool(os.environ.get("CI")) or os.environ.get("SIMPLEBITS_REQUIRE_BROWSER") == "1"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``simplebits ARGS`` in a subprocess; text output captured."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


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
