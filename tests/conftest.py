"""Shared fixtures: a small classifier trained on the spot and a few photo crops."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from simplebits_audit.photos import held_out_crops
from simplebits_audit.testbeds import SmallCNN


@pytest.fixture(scope="session")
def photos16() -> torch.Tensor:
    """Eight 16x16 crops of held-out photos, pixel space."""
    return held_out_crops(8, size=16, seed=3)


@pytest.fixture(scope="session")
def bright_dark_model() -> SmallCNN:
    """A 16x16 classifier: is the image's centre brighter than its border? (trains in seconds)."""
    torch.manual_seed(0)
    x = held_out_crops(512, size=16, seed=11)
    centre = x[..., 4:12, 4:12].mean((1, 2, 3))
    border = (x.sum((1, 2, 3)) - centre * 3 * 64) / (3 * (256 - 64))
    y = (centre > border).long()
    model = SmallCNN(n_classes=2, size=16, width=8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        idx = torch.randint(0, len(x), (64,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


_INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config, items):
    """Everything under ``tests/integration/`` is an integration test; ``cuda`` tests skip without CUDA."""
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if _INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.integration)
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
