"""Loading users' classifiers: every supported form, and refusals that say why."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from simplebits_audit import simplify
from simplebits_audit.models import check_classifier_output, check_not_training, load_model
from simplebits_audit.testbeds import SmallCNN


def tiny() -> nn.Module:
    """Factory used by the ``module:factory`` test."""
    torch.manual_seed(0)
    return SmallCNN(n_classes=3, width=4, size=16)


@pytest.fixture(scope="module")
def reference():
    model = tiny().eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        return model, x, model(x)


def _same(model, x, expected, check_mode=True):
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    if check_mode:
        assert not model.training


def test_torchscript(reference, tmp_path):
    model, x, y = reference
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.trace(model, x), path)
    _same(load_model(path), x, y)


def test_torch_export(reference, tmp_path):
    model, x, y = reference
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(model, (x,)), path)
    _same(load_model(path), x, y)  # exported in eval mode: loads in eval mode (its graph fixes the behaviour)
    # exported for a batch of len(x): one image fails, and the error says how to export it
    with pytest.raises(ValueError, match=r"model: failed on an input of shape .*exported for a fixed batch size.*dynamic_shapes"):
        check_classifier_output(load_model(path), x[:1])


class _RunsCode:
    """Unpickling it leaves a file behind (the marker), then yields a tensor: what a hostile archive could do."""

    def __init__(self, marker, shape) -> None:
        self.marker, self.shape = str(marker), shape

    def __reduce__(self):
        return (_touch_then_zeros, (self.marker, self.shape))


def _touch_then_zeros(marker, shape):
    open(marker, "w").close()
    return torch.nn.Parameter(torch.zeros(shape))


def test_torch_export_with_pickled_weights_needs_explicit_trust(reference, tmp_path):
    """``torch.export.load`` unpickles a weight whose config says ``use_pickle`` (weights_only=False): refused without trust."""
    import io
    import json
    import zipfile

    model, x, _ = reference
    clean, hostile, marker = tmp_path / "m.pt2", tmp_path / "hostile.pt2", tmp_path / "code-ran"
    torch.export.save(torch.export.export(model, (x,)), clean)
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(hostile, "w") as dst:
        config_name = next(n for n in src.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(src.read(config_name))
        key, entry = next(iter(config["config"].items()))
        entry["use_pickle"] = True
        payload = io.BytesIO()
        torch.save(_RunsCode(marker, tuple(model.state_dict()[key].shape)), payload)
        for name in src.namelist():
            data = src.read(name)
            if name == config_name:
                data = json.dumps(config).encode()
            elif name.endswith("/weights/" + entry["path_name"]):
                data = payload.getvalue()
            dst.writestr(name, data)
    with pytest.raises(ValueError, match=r"holds pickled data .*trust_pickle"):
        load_model(hostile)
    assert not marker.exists()
    load_model(clean)  # an ordinary archive needs no trust


def test_factory_with_weights(reference, tmp_path):
    model, x, y = reference
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    _same(load_model("tests.unit.base.test_models:tiny", weights=weights), x, y)
    with pytest.raises(ValueError, match="weights"):
        load_model("tests.unit.base.test_models:tiny")
    with pytest.raises(ValueError, match="cannot import"):
        load_model("tests.unit.base.test_models:missing", weights=weights)


def test_torchvision_name_with_weights(tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.get_model("squeezenet1_1", weights=None, num_classes=5).eval()
    weights = tmp_path / "sq.pt"
    torch.save(net.state_dict(), weights)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        _same(load_model("squeezenet1_1", weights=weights), x, net(x))


def test_pickle_needs_explicit_trust(reference, tmp_path):
    model, x, y = reference
    path = tmp_path / "m.pkl"
    torch.save(model, path)
    with pytest.raises(ValueError, match="trust_pickle"):
        load_model(path)
    _same(load_model(path, trust_pickle=True), x, y)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        load_model("no_such_model_name")
    with pytest.raises(ValueError, match="directory"):
        load_model(tmp_path)
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"junk")
    with pytest.raises(ValueError, match="torch.export"):
        load_model(bad)


def test_weights_that_do_not_fit_are_one_line_naming_weights(tmp_path):
    import torchvision

    state = torchvision.models.resnet18(num_classes=3).state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4")}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"^weights: .*does not fit 'resnet18': 30 missing keys \(e\.g\. 'layer4\.") as err:
        load_model("resnet18", weights=tmp_path / "partial.pt")
    assert "\n" not in str(err.value)


def test_a_channel_mismatch_says_so_once_and_suggests_the_fix():
    from simplebits_audit.models import check_classifier_output

    one_channel = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    with pytest.raises(ValueError, match=r"\(RuntimeError: Given groups.*--grayscale") as err:
        check_classifier_output(one_channel, torch.rand(1, 3, 32, 32))
    assert str(err.value).count("RuntimeError") == 1


def test_an_export_made_in_eval_mode_loads_as_eval_mode_and_one_made_in_training_mode_does_not(tmp_path):
    """A reloaded torch.export module says training=True whatever it was exported in; the graph decides."""
    for mode in ("eval", "train"):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        getattr(net, mode)()
        torch.export.save(torch.export.export(net, (torch.rand(2, 3, 8, 8),)), tmp_path / f"{mode}.pt2")
        assert load_model(tmp_path / f"{mode}.pt2").training == (mode == "train")
    # the job's check refuses the training-mode export (it only warned: eval() cannot change an exported graph, and its
    # answers depended on the batch); the library warns with a remedy that works, and not for an eval-mode export
    check_not_training(load_model(tmp_path / "eval.pt2"))
    # a batch norm without running statistics runs on batch statistics in eval mode too: no export can change it, not refused
    untracked = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.Flatten(), nn.LazyLinear(2))
    untracked(torch.rand(2, 3, 8, 8))
    torch.export.save(torch.export.export(untracked.eval(), (torch.rand(2, 3, 8, 8),)), tmp_path / "untracked.pt2")
    check_not_training(load_model(tmp_path / "untracked.pt2"))
    with pytest.raises(ValueError, match=r"^model: was exported in training mode .*; export it again after model\.eval\(\)$"):
        check_not_training(load_model(tmp_path / "train.pt2"))
    x = torch.rand(2, 3, 8, 8)
    with pytest.warns(UserWarning, match="need the model exported again after model.eval"):
        simplify(load_model(tmp_path / "train.pt2"), x, target=0, steps=1)
    eval_export = torch.export.load(str(tmp_path / "eval.pt2")).module()  # as a library user gets it: training=True flags
    assert eval_export.training
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simplify(eval_export, x, target=0, steps=1)


def test_a_factory_in_the_current_folder_is_found(tmp_path, monkeypatch):
    """The simplebits command does not put the current folder on sys.path (python -m does): the factory is still found."""
    (tmp_path / "my_factory_net.py").write_text(
        "from simplebits_audit.testbeds import SmallCNN\n\ndef build():\n    return SmallCNN(n_classes=3, width=4, size=16)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    torch.save(tiny().state_dict(), tmp_path / "w.pt")
    model = load_model("my_factory_net:build", weights=tmp_path / "w.pt")
    assert isinstance(model, SmallCNN)
    with pytest.raises(ValueError, match="model: cannot import 'no_such_module_here:build'"):
        load_model("no_such_module_here:build", weights=tmp_path / "w.pt")


def test_weights_or_class_count_with_a_whole_model_are_refused(reference, tmp_path):
    """A model file (or a testbed classifier) is whole: ``weights`` / ``num_classes`` given with it were silently ignored."""
    model, x, _ = reference
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.trace(model, x), path)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"^weights: only for a factory"):
        load_model(path, weights=tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"^num_classes: only for a factory"):
        load_model("testbed:stripes", num_classes=3)
