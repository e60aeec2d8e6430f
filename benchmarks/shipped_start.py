"""Start ``simplebits train --arch`` from a shipped testbed classifier: training with simplification as a fine-tune.

``--arch`` takes ``module:factory`` (:func:`simplebits_audit.models.build_architecture`); run from
``benchmarks/`` (or with it on the path), e.g.

    python benchmarks/tradeoff.py --testbeds photo-objects --budgets 1,0.3 --testbed-n 2000 --arch shipped_start:photo_objects

Each call returns a fresh copy of the shipped weights, so every run of a curve starts from the same
classifier, and the shipped model itself is never changed.
"""

from __future__ import annotations

from torch import nn

from simplebits_audit import testbeds


def photo_objects(num_classes: int = 5) -> nn.Module:
    """The shipped ``photo-objects`` classifier (torchvision ``mobilenet_v3_small``, 5 classes), in training mode."""
    classes = len(testbeds.TESTBEDS["photo-objects"][1])
    if num_classes != classes:
        raise ValueError(f"num_classes: the shipped photo-objects classifier has {classes} classes, got {num_classes}")
    return testbeds.load_classifier("photo-objects").train()
