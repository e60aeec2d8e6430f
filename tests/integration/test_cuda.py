"""CUDA readiness (issue #21): every path runs on the inputs' device and agrees with the CPU.

All tests here carry the ``cuda`` marker: they skip without a CUDA device (``tests/conftest.py``)
and run with ``pytest -m cuda`` where one exists (``benchmarks/gpu_check.sh``). All passed on one
H200 on 2026-12-04 (torch 2.11.0+cu130; docs/benchmarks.md, "GPU").
"""

from __future__ import annotations

import pytest
import torch

from simplebits_audit import SimpleBits, testbeds
from simplebits_audit.estimators import load_estimator
from simplebits_audit.simplification import simplify
from simplebits_audit.simplification.config import ENGINE_DEFAULTS
from simplebits_audit.simplification.learned import Simplifier

from ..helpers import assert_unchanged, cli_in_process, snapshot

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")
FAST = {"steps": 4, "n_snapshots": 2}


@pytest.fixture(scope="module")
def bed():
    """The ``digits-on-photos`` classifier on the GPU and 6 of its test images (pixel space, on the GPU)."""
    data = testbeds.load("digits-on-photos", "test", n=6, seed=0)
    return testbeds.load_classifier("digits-on-photos").to(CUDA), data.images.to(CUDA)


def _on_cuda(result) -> None:
    for name in ("original", "simplified", "mask", "bits_before", "bits_after", "kept", "probs_after"):
        value = getattr(result, name, None)
        if isinstance(value, torch.Tensor):
            assert value.device.type == "cuda", name


def test_simplebits_attribute_on_cuda(bed):
    model, x = bed
    before = snapshot(model)
    attr, result = SimpleBits(model, estimator="analytic").attribute(x, return_result=True, **FAST)
    assert attr.device.type == "cuda" and attr.shape == x.shape and torch.isfinite(attr).all()
    _on_cuda(result)
    with torch.no_grad():
        again = model(result.simplified_inputs).argmax(1)
    assert torch.equal(again[result.kept], result.pred_before[result.kept])  # kept means kept, checked on the GPU
    assert_unchanged(before, model)
    assert next(model.parameters()).device.type == "cuda"


@pytest.mark.parametrize("engine", list(ENGINE_DEFAULTS))
def test_each_engine_on_cuda(bed, engine):
    model, x = bed
    estimator = load_estimator("glow") if engine == "latent" else "analytic"
    result = simplify(model, x[:2], estimator=estimator, parameterization=engine, **FAST)
    _on_cuda(result)
    assert result.simplified.shape == x[:2].shape and torch.isfinite(result.bits_after).all()


def test_information_profile_with_a_cpu_estimator_on_cuda(bed):
    from simplebits_audit.metrics import information_profile

    model, x = bed
    result = simplify(model, x[:2], estimator="analytic", parameterization="factorised", **FAST)
    glow = load_estimator("glow")  # on the CPU: rated where the images are, the caller's object stays put
    profile = information_profile(result, estimator=glow, codec=None)
    assert set(profile["region"]) == {"kept_inside", "bits_removed"} and next(glow.parameters()).device.type == "cpu"


@pytest.mark.parametrize("name", ["analytic", "glow", "pixelcnn"])
def test_estimator_bits_on_cuda_equal_cpu(name):
    x = testbeds.load("digits-on-photos", "test", n=4, seed=0).images
    estimator = load_estimator(name)
    cpu = estimator.bits(x)
    gpu = load_estimator(name).to(CUDA).bits(x.to(CUDA))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu().double(), cpu.double(), rtol=1e-3, atol=0)


def test_learned_simplifier_on_cuda(bed):
    model, x = bed
    on_gpu = Simplifier.pretrained("digits-on-photos", device=CUDA)
    result = simplify(model, x, simplifier=on_gpu)
    _on_cuda(result)
    # A CPU simplifier with CUDA images: a copy follows the images, the caller's stays on the CPU.
    on_cpu = Simplifier.pretrained("digits-on-photos")
    again = simplify(model, x, simplifier=on_cpu)
    assert next(on_cpu.parameters()).device.type == "cpu"
    torch.testing.assert_close(again.simplified, result.simplified)


def test_explain_job_on_cuda(bed, tmp_path):
    from simplebits_audit.jobs import explain_images

    model, x = bed
    out = explain_images(model, x[:2].cpu(), tmp_path / "out", device="cuda", estimator="analytic", baselines=["ig", "gradcam"],
                         simplify_options={"steps": 4})
    assert len(out.records) == 2 and out.report_path.is_file()


def test_cli_explain_on_cuda(tmp_path, capsys):
    from PIL import Image

    image = testbeds.load("digits-on-photos", "test", n=1, seed=0).images[0]
    png = tmp_path / "digit.png"
    Image.fromarray(image.mul(255).round().byte().permute(1, 2, 0).numpy()).save(png)
    code, err = cli_in_process(capsys, "--device", "cuda", "explain", str(png), "--model", "testbed:digits-on-photos",
                               "--baselines", "ig", "--steps", "2", "--quiet", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert (tmp_path / "out" / "report.html").is_file()
