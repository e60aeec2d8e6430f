"""The one preflight: every bad input a new user tried fails before any work, in one clear line.

Each case runs the command line in-process (``main()``, as the console script does) so that the
exit code and the exact stderr are checked without paying for a new Python per case.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from simplebits_audit import testbeds
from simplebits_audit._helpers import run_device
from simplebits_audit._io import save_json
from simplebits_audit.jobs.checks import MAX_PIXELS, job_device, preflight
from simplebits_audit.preprocessing import Preprocessing, load_images

from ...helpers import cli_in_process as cli


class _Vector(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((1, 2, 3))


class _Fixed32(torch.nn.Module):
    """A classifier made for 32 x 32 images only (a flatten into a linear layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3 * 32 * 32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class _Pair(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], 1)
        return logits, logits


class _NaN(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 3), float("nan")) + x.mean()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Models (TorchScript, as users save them) and image files, good and bad."""
    root = tmp_path_factory.mktemp("preflight")
    torch.jit.save(torch.jit.script(testbeds.load_classifier("digits-on-photos")), str(root / "model.ts"))
    for name, module in (("vector", _Vector()), ("pair", _Pair()), ("nan", _NaN()), ("fixed32", _Fixed32())):
        torch.jit.save(torch.jit.script(module.eval()), str(root / f"{name}.ts"))
    image = testbeds.load("digits-on-photos", "test", n=1, seed=2).images[0]
    rgb = (image.permute(1, 2, 0) * 255).round().byte().numpy()
    Image.fromarray(rgb).save(root / "ok.png")
    Image.fromarray(rgb).convert("RGBA").save(root / "rgba.png")
    Image.fromarray(rgb).convert("L").save(root / "gray.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(root / "sixteen.png")  # 16-bit grayscale
    Image.new("RGB", (1, 1), (200, 30, 30)).save(root / "tiny.png")
    Image.new("RGB", (64, 64), (200, 30, 30)).save(root / "big.png")
    Image.new("RGB", (1100, 1000), (90, 90, 90)).save(root / "huge.png")  # 1.1 megapixels
    data = (root / "ok.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("not an image")
    return root


@pytest.mark.parametrize(
    "image, model, extra, expected",
    [
        ("tiny.png", "model.ts", [], "images: 1 x 1 pixels is too small for the model (it runs on 32 x 32); resize the images (--size 32)"),
        ("ok.png", "nan.ts", [], "model: output is NaN or infinite"),
        ("big.png", "fixed32.ts", [], "images: the model fails on 64 x 64 pixels and runs on 32 x 32 (RuntimeError: mat1 and mat2 "),
        ("big.png", "fixed32.ts", [], "; resize the images (--size 32 --crop 32)"),
        ("huge.png", "model.ts", [], "images: 1000 x 1100 pixels (1.1 megapixels) is far larger than classifiers take"),
        ("truncated.png", "model.ts", [], "is not a readable image (image file is truncated)"),
        ("empty.png", "model.ts", [], "is not a readable image"),
        ("notes.png", "model.ts", [], "is not a readable image"),
        ("ok.png", "vector.ts", [], "model: output must be logits of shape (B, classes) = (1, K), got (1,)"),
        ("ok.png", "pair.ts", [], "model: output must be logits of shape (B, classes) = (1, K), got tuple"),
        ("ok.png", "model.ts", ["--target", "12"], "target: class indices must be in [0, 9], got [12]"),
        ("ok.png", "missing.ts", [], "model: 'missing.ts' is not a file"),
        ("ok.png", "model.ts", ["--baselines", "ig,nope"], "baselines: unknown method 'nope'"),
    ],
)
def test_bad_input_is_one_line_before_any_work(files, tmp_path, capsys, monkeypatch, image, model, extra, expected):
    monkeypatch.chdir(files)
    out = tmp_path / "out"
    code, err = cli(capsys, "--quiet", "explain", image, "--model", model, "--out", str(out), "--steps", "2", *extra)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not out.exists()  # nothing half-written


def test_a_chosen_size_lets_a_large_image_through(files):
    pixels = load_images([files / "huge.png"], Preprocessing(size=1000))
    assert pixels.shape[-2] * pixels.shape[-1] > MAX_PIXELS
    any_size = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    checked = preflight(any_size, pixels, preprocessing=Preprocessing(size=1000), explainer=None, methods=("centre",))
    assert checked.n_classes == 3 and checked.methods == ["centre"]


def test_rgba_grayscale_and_16_bit_files_are_read_as_rgb(files):
    with pytest.warns(UserWarning, match="16-bit pixels"):  # said, not silent: the 8 bits the estimators rate
        pixels = load_images([files / "rgba.png", files / "gray.png", files / "sixteen.png"])
    assert pixels.shape == (3, 3, 32, 32) and 0 <= float(pixels.min()) and float(pixels.max()) <= 1
    # the 16-bit file holds the red channel times 257: it reads as exactly that channel (Pillow alone clips it to white)
    red = torch.from_numpy(np.asarray(Image.open(files / "ok.png").convert("RGB"))[..., 0].copy()).float() / 255
    assert torch.equal(pixels[2], red.expand(3, -1, -1))
    checked = preflight(testbeds.load_classifier("digits-on-photos"), pixels)
    assert checked.methods == ["simplebits"] and checked.targets is None


def test_floating_point_and_out_of_range_pixels_are_refused(tmp_path):
    Image.fromarray(np.random.rand(8, 8).astype(np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match="images: .*floating-point pixels"):
        load_images([tmp_path / "float.tif"])
    Image.fromarray(np.full((8, 8), 200, dtype=np.int32)).save(tmp_path / "wide.tif")  # 8-bit values, 32-bit file: range unknown
    with pytest.raises(ValueError, match="images: .*32-bit integer pixels, whose range is unknown"):
        load_images([tmp_path / "wide.tif"])


def test_preflight_checks_every_image_the_job_holds(files):
    """A model that answers NaN for one image out of several: refused before any work, naming the batch."""
    model = testbeds.load_classifier("digits-on-photos")
    pixels = load_images([files / "ok.png", files / "gray.png"])

    def nan_for_gray(x):
        logits = model(x)
        grey = (x[:, 0] == x[:, 1]).flatten(1).all(1)
        return torch.where(grey[:, None], torch.full_like(logits, float("nan")), logits)

    with pytest.raises(ValueError, match=r"model: output is NaN or infinite on images of shape \(1, 3, 32, 32\)"):
        preflight(nan_for_gray, pixels)


def test_preflight_refusals_name_the_argument(files):
    model = testbeds.load_classifier("digits-on-photos")
    pixels = load_images([files / "ok.png"])
    with pytest.raises(ValueError, match="class_names: 2 class names"):
        preflight(model, pixels, class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"labels: labels \[10\] are outside the model's classes \[0, 9\]"):
        preflight(model, pixels, labels=[10])
    with pytest.raises(ValueError, match="target_name: 'zebra' is not a class name"):
        preflight(model, pixels, class_names=[str(d) for d in range(10)], target_name="zebra")
    with pytest.raises(ValueError, match="target and target_name"):
        preflight(model, pixels, target=1, target_name="1")
    with pytest.raises(ValueError, match="explainer: 'ig' is not an explainer that simplifies"):
        preflight(model, pixels, explainer="ig")
    with pytest.raises(TypeError, match=r"options: 'ig' does not take \['n_stepz'\]"):
        preflight(model, pixels, methods=("ig",), method_options={"ig": {"n_stepz": 3}})
    with pytest.raises(ValueError, match="name_or_path"):
        preflight(model, pixels, estimator="no-such-estimator")
    with pytest.raises(ValueError, match="training mode"):
        preflight(testbeds.load_classifier("digits-on-photos").train(), pixels)
    with pytest.raises(TypeError, match="forward_func: 'gradcam' needs a torch.nn.Module"):
        preflight(lambda x: model(x), pixels, methods=("gradcam",))  # a method that cannot run on this model: now, not later
    assert preflight(model, pixels, target=3).targets.tolist() == [3]


def test_one_device_rule():
    """A job runs where the model's weights are; an explicit device must agree."""
    model = torch.nn.Linear(2, 2)
    assert job_device(model) == torch.device("cpu") and job_device(lambda x: x) == torch.device("cpu")
    assert job_device(model, "cpu") == torch.device("cpu")
    assert job_device(lambda x: x, "meta") == torch.device("meta")  # no weights: the given device
    with pytest.raises(ValueError, match="model: its weights are on cpu but the job runs on meta"):
        job_device(model, "meta")
    # the training settings share the rule but move their networks: an explicit device wins
    assert run_device(model, "meta", must_agree=False) == torch.device("meta")
    assert run_device(torch.nn.BatchNorm2d(2, affine=False)) == torch.device("cpu")  # buffers only
    assert run_device(model.to("meta")) == torch.device("meta")


def test_json_is_strict(tmp_path):
    path = save_json({"a": float("nan"), "b": [1.5, float("inf")], "c": (float("-inf"),)}, tmp_path / "x.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.5, None], "c": [None]}


def test_the_large_image_message_gives_a_measured_estimate(files):
    pixels = load_images([files / "huge.png"])
    seen = []

    class Recording(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3),
            )

        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return self.net(x)

    with pytest.raises(ValueError) as err:
        preflight(Recording().eval(), pixels, explainer=None, methods=("centre",))
    message = str(err.value)
    assert message.startswith("images: 1000 x 1100 pixels (1.1 megapixels)") and "\n" not in message
    assert "measured here would take" in message and "per image at the default 30 steps" in message
    assert "--size 1000" in message
    # timed on a copy of about a quarter megapixel, never the full image
    assert seen and all(h * w <= 300_000 for h, w in seen)


def test_measure_step_scales_by_the_pixel_count():
    from simplebits_audit.estimators import load_estimator
    from simplebits_audit.jobs.checks import measure_step

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    step, forward = measure_step(model, torch.rand(1, 1, 64, 64), Preprocessing(), load_estimator("analytic"))
    assert 0 < forward and 0 < step


def test_16_bit_colour_and_grey_with_alpha_files_are_told_apart(tmp_path):
    """Pillow opens a 16-bit RGB PNG as 8-bit RGB and a 16-bit grey + alpha PNG as RGBA: the file's own sample format decides."""
    import imagecodecs

    from simplebits_audit.images import image_facts, load_image

    rgb16 = (np.arange(8 * 8 * 3).reshape(8, 8, 3) * 300).astype(np.uint16)
    (tmp_path / "rgb16.png").write_bytes(imagecodecs.png_encode(rgb16))
    la16 = np.dstack([np.arange(64).reshape(8, 8) * 1000, np.full((8, 8), 65535)]).astype(np.uint16)
    (tmp_path / "la16.png").write_bytes(imagecodecs.png_encode(la16))
    assert image_facts(tmp_path / "rgb16.png") == {"grey": False, "transparent": False, "deep": True}
    assert image_facts(tmp_path / "la16.png") == {"grey": True, "transparent": False, "deep": True}
    with pytest.warns(UserWarning, match="16-bit samples"):
        assert load_image(tmp_path / "la16.png", grayscale=None).shape == (1, 1, 8, 8)  # grey, as stored


def test_the_gradient_check_is_for_explainers_that_optimise():
    """A learned simplifier without refinement never takes the model's gradient (also when an audit sets it after the preflight)."""
    from simplebits_audit.jobs.checks import _optimises

    assert _optimises({}) and not _optimises({}, learned=True) and not _optimises({"simplifier": object()})
    assert _optimises({"simplifier": object(), "refine_steps": 10}) and _optimises({"refine_steps": 10}, learned=True)


def test_an_audit_checks_the_simplifiers_option_values_before_any_work(files, tmp_path, capsys):
    """``--steps 0`` passed the names-only check: the audit predicted every image and wrote audit.json, then failed."""
    out = tmp_path / "audit"
    code, err = cli(capsys, "--quiet", "audit", "digits-on-photos", "--model", str(files / "model.ts"), "--testbed-n", "4",
                    "--select", "all", "--steps", "0", "--out", str(out))
    assert code == 2 and err == ["error: --steps: expected at least 1, got 0"]
    assert not out.exists()
