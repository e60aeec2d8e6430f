"""Real sizes (issue #21): the mask grid follows the image size, and a batch is simplified in bounded parts."""

from __future__ import annotations

import pytest
import torch

from simplebits_audit import SimpleBits, SimplificationResult, simplify
from simplebits_audit.simplification.config import MAX_BATCH_PIXELS, images_per_chunk, mask_grid

FAST = {"steps": 4, "n_snapshots": 2}


@pytest.mark.parametrize(
    "size, shape, grid",
    [(None, (32, 32), (16, 16)), (None, (128, 128), (16, 16)), (None, (256, 256), (16, 16)), (None, (512, 512), (32, 32)),
     (None, (1024, 1024), (64, 64)), (None, (1024, 300), (64, 64)), (None, (8, 8), (8, 8)), (12, (1024, 1024), (12, 12)),
     (40, (20, 1000), (20, 40))],
)
def test_the_mask_grid_follows_the_image_size(size, shape, grid):
    assert mask_grid(size, shape) == grid


def test_the_default_part_size_bounds_the_pixels_simplified_together():
    assert images_per_chunk(None, (1024, 1024)) * 1024 * 1024 <= MAX_BATCH_PIXELS
    assert images_per_chunk(None, (4096, 4096)) == 1  # one image at least, whatever its size
    assert images_per_chunk(None, (32, 32)) >= 1000  # small images: one batch, as before
    assert images_per_chunk(3, (32, 32)) == 3


def test_a_large_image_gets_a_finer_grid_and_records_it():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x = torch.rand(1, 3, 520, 520, generator=torch.Generator().manual_seed(0))
    result = simplify(model, x, steps=1, n_snapshots=1)
    assert result.settings["mask_size"] == 33  # ceil(520 / 16)
    assert simplify(model, x, steps=1, n_snapshots=1, mask_size=16).settings["mask_size"] == 16


def test_a_batch_in_parts_is_the_parts_joined(bright_dark_model, photos16):
    x = photos16[:5]
    whole = simplify(bright_dark_model, x, internal_batch_size=2, **FAST)
    # chunks of 2, the last image joining the chunk before it (a chunk of one image is refused by train-mode BatchNorm)
    parts = SimplificationResult.cat([simplify(bright_dark_model, x[i:j], **FAST) for i, j in ((0, 2), (2, 5))])
    assert len(whole) == 5 and whole.path_images.shape[1] == 5 and whole.path_bits.shape == parts.path_bits.shape
    for name in ("simplified", "bits_after", "probs_after", "path_bits", "path_images", "mask", "kept", "target"):
        assert torch.equal(getattr(whole, name), getattr(parts, name)), name
    assert whole.status == parts.status and whole.settings == parts.settings
    # the returned images keep the decision when the model is asked again
    again = bright_dark_model(whole.simplified_inputs).argmax(1)
    assert torch.equal(again[whole.kept], whole.pred_before[whole.kept])


def test_per_image_forward_arguments_are_split_with_the_images(photos16):
    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())

        def forward(self, x, scale, offset):
            return self.net(x) * scale[:, None] + offset  # scale: one per image; offset: shared

    model = Scaled().eval()
    scale = torch.linspace(0.5, 2.0, 5)
    result = simplify(model, photos16[:5], additional_forward_args=(scale, 0.1), internal_batch_size=2, **FAST)
    assert len(result) == 5
    with torch.no_grad():
        assert torch.equal(result.pred_before, model(photos16[:5], scale, 0.1).argmax(1))


def test_joining_results_of_different_settings_is_refused(bright_dark_model, photos16):
    a = simplify(bright_dark_model, photos16[:2], **FAST)
    b = simplify(bright_dark_model, photos16[2:4], **{**FAST, "steps": 5})
    with pytest.raises(ValueError, match="parts"):
        SimplificationResult.cat([a, b])


def test_simple_bits_takes_the_bound_and_refuses_a_bad_one(bright_dark_model, photos16):
    explainer = SimpleBits(bright_dark_model)
    attr = explainer.attribute(photos16[:3], internal_batch_size=1, **FAST)
    assert attr.shape == photos16[:3].shape
    with pytest.raises(ValueError, match="internal_batch_size"):
        explainer.attribute(photos16[:3], internal_batch_size=0)
