"""Loading the user's classifier from a file or a name, safely.

Accepted forms of ``spec``:

* a TorchScript file (``torch.jit.save``);
* a ``torch.export`` archive (``.pt2``);
* ``"package.module:factory"`` -- the factory is called without arguments, then ``weights``
  (a state dict) is loaded with ``weights_only=True``;
* a torchvision architecture name (``"resnet18"``) plus ``weights`` (a state dict);
* ``"testbed:NAME"`` -- the small CNN shipped for an offline testbed;
* a fully pickled ``nn.Module`` only with ``trust_pickle=True``: unpickling runs arbitrary code.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._helpers import check_logits, export_hint, exported_in_training_mode, last_line


def _load_state_dict(weights: str | Path | None, spec: str) -> dict:
    if weights is None:
        raise ValueError(f"weights: {spec!r} builds an architecture; give its trained weights (a state dict file)")
    path = Path(weights)
    if not path.is_file():
        raise ValueError(f"weights: {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or corrupt files
        raise ValueError(f"weights: {str(path)!r} is not a state dict loadable with weights_only=True ({err.__class__.__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights: {str(path)!r} does not hold a state dict")
    return state


def _pickled_parts(path: Path) -> str | None:
    """The first part of a ``torch.export`` archive that loading would unpickle with ``weights_only=False``, or None.

    ``torch.export.load`` unpickles weights and constants marked ``use_pickle``, custom and opaque
    objects, and sample inputs that a weights-only load refuses: any of them can run code.
    """
    from torch.export.pt2_archive.constants import CUSTOM_OBJ_FILENAME_PREFIX, OPAQUE_OBJ_FILENAME_PREFIX

    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith("_config.json") and "/data/" in name:
                    for key, entry in json.loads(archive.read(name)).get("config", {}).items():
                        part = str(entry.get("path_name", ""))
                        if entry.get("use_pickle") or part.startswith((CUSTOM_OBJ_FILENAME_PREFIX, OPAQUE_OBJ_FILENAME_PREFIX)):
                            return key
                elif "/sample_inputs/" in name:
                    try:
                        torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                    except Exception:  # torch.export.load would retry it with weights_only=False
                        return name
    except (zipfile.BadZipFile, ValueError, AttributeError):
        return None  # not a readable archive: torch.export.load says so
    return None


def _from_file(path: Path, trust_pickle: bool) -> nn.Module:
    if path.suffix == ".pt2":
        if not trust_pickle and (part := _pickled_parts(path)) is not None:
            raise ValueError(f"model: {str(path)!r} holds pickled data ({part!r}); loading it runs code from the file: pass "
                             "trust_pickle=True (--trust-pickle) only if you trust its source")
        try:
            module = torch.export.load(str(path)).module()
        except Exception as err:
            raise ValueError(f"model: {str(path)!r} is not a readable torch.export archive ({err.__class__.__name__}: {err})") from None
        if not exported_in_training_mode(module):
            # A reloaded export says training=True whatever it was exported in, and eval() is not supported on it; its
            # graph fixes the behaviour, so the flags are set to what the graph does.
            for m in module.modules():
                m.training = False
        return module
    if zipfile.is_zipfile(path):
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated upstream but still what many users have
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(str(path), map_location="cpu")
        except RuntimeError:
            pass  # a zip written by torch.save: a pickle
    if not trust_pickle:
        raise ValueError(
            f"model: {str(path)!r} is not TorchScript or a torch.export archive; if it is a pickled model, "
            "loading it runs code from the file: pass trust_pickle=True (--trust-pickle) only if you trust its source"
        )
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"model: {str(path)!r} could not be unpickled ({err.__class__.__name__}: {err})") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: {str(path)!r} holds a {type(model).__name__}, not an nn.Module (a state dict needs an architecture)")
    return model


def _import_here_too(module_name: str) -> Any:
    """Import ``module_name``; if it is not on the path, also from the current folder, which then stays on
    ``sys.path`` last (the user named the module; the ``simplebits`` command, unlike ``python -m``, does not
    put the current folder on ``sys.path``)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        here = str(Path.cwd())
        if err.name != module_name.split(".")[0] or here in sys.path:
            raise
        # appended and, once the module is found there, left there: the factory may import its neighbours when called
        sys.path.append(here)
        try:
            return importlib.import_module(module_name)
        except ImportError:
            sys.path.remove(here)
            raise


def _from_factory(spec: str, weights: str | Path | None) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(_import_here_too(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"model: cannot import {spec!r} ({err})") from None
    model = factory()
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: {spec!r} returned a {type(model).__name__}, not an nn.Module")
    _load_into(model, _load_state_dict(weights, spec), weights, spec)
    return model


def _load_into(model: nn.Module, state: dict, weights: str | Path | None, spec: str) -> None:
    """``model.load_state_dict(state)``, with torch's many-line mismatch report as one line naming ``weights``."""
    try:
        model.load_state_dict(state)
    except RuntimeError:
        own = model.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(getattr(state[k], "shape", ())))
        parts = [f"{len(keys)} {what} (e.g. {keys[0]!r})" for keys, what in
                 ((missing, "missing keys"), (unexpected, "unexpected keys"), (shapes, "tensors of another shape")) if keys]
        raise ValueError(f"weights: {str(weights)!r} does not fit {spec!r}: {', '.join(parts) or 'torch refused it'}") from None


def _from_torchvision(name: str, weights: str | Path | None, num_classes: int | None) -> nn.Module:
    import torchvision

    state = _load_state_dict(weights, name)
    if num_classes is None:  # read it off the classifier's last bias
        biases = [v for k, v in state.items() if k.endswith("bias") and v.dim() == 1]
        num_classes = int(biases[-1].numel()) if biases else 1000
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    _load_into(model, state, weights, name)
    return model


def load_model(
    spec: str | Path,
    *,
    weights: str | Path | None = None,
    trust_pickle: bool = False,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Load a classifier (in eval mode) from a file, a factory or a torchvision name.

    Parameters
    ----------
    spec : str or Path
        A TorchScript file, a ``.pt2`` export archive, ``"package.module:factory"``, a
        torchvision architecture name, or (with ``trust_pickle``) a pickled ``nn.Module``.
    weights : path, optional
        State dict for factory and torchvision specs (loaded with ``weights_only=True``); refused
        with a model file or a testbed classifier, which are whole.
    trust_pickle : bool
        Allow unpickling a full model (runs code from the file).
    num_classes : int, optional
        Output classes of a torchvision architecture (default: read off the weights); refused
        with a model file or a testbed classifier.
    device : str or torch.device, optional
    """
    spec_str = str(spec)
    path = Path(spec_str)
    testbed = spec_str.startswith("testbed:") and not path.exists()
    # A file or a shipped testbed classifier is whole: weights or a class count given with it would be silently ignored.
    if testbed or path.is_file():
        for name, value in (("weights", weights), ("num_classes", num_classes)):
            if value is not None:
                raise ValueError(f"{name}: only for a factory or a torchvision architecture name; {spec_str!r} is a whole model")
    if testbed:
        from . import testbeds

        name = spec_str.removeprefix("testbed:")
        if name not in testbeds.list_testbeds(head=None):
            raise ValueError(f"model: no shipped classifier for testbed {name!r}; choose from {testbeds.list_testbeds(head=None)}")
        return testbeds.load_classifier(name, device)
    if path.is_file():
        model = _from_file(path, trust_pickle)
    elif path.is_dir():
        raise ValueError(f"model: {spec_str!r} is a directory, expected a model file")
    elif ":" in spec_str and not spec_str.startswith((".", "/")):
        model = _from_factory(spec_str, weights)
    else:
        import torchvision

        if spec_str in torchvision.models.list_models():
            model = _from_torchvision(spec_str, weights, num_classes)
        else:
            raise ValueError(
                f"model: {spec_str!r} is not a file, a 'package.module:factory' or a torchvision architecture name"
            )
    model = model.to(device or "cpu")
    try:
        model.eval()
    except NotImplementedError:  # torch.export modules keep the mode they were exported in
        pass
    return model


#: square sizes tried when a model fails on a small image, to tell "too small" from other failures
PROBE_SIDES = (32, 64, 128, 224)


def check_classifier_output(model, inputs: torch.Tensor, *, name: str = "model", images: str = "images", min_outputs: int = 2) -> int:
    """Call ``model`` on a small batch (B, C, H, W); return its number of classes or raise a clear one-line error.

    The output must be finite logits of shape (B, classes) with at least ``min_outputs`` classes (1 for
    a sigmoid head's single logit, whose head check is the caller's); anything
    else (a tuple, a feature map, a detection dict, NaN) is refused before any long work starts.
    When the model fails on an image smaller than a size it runs on, the error says the image is
    too small (``images`` names the images in that message).
    """
    try:
        with torch.no_grad():
            out = model(inputs)
    except Exception as err:  # the user's model may raise anything
        if isinstance(err, torch.cuda.OutOfMemoryError):  # not a size the model refuses: no other size to suggest
            raise
        h, w = inputs.shape[-2:]
        if (side := _working_side(model, inputs)) is not None:
            raise ValueError(
                f"{images}: {h} x {w} pixels is too small for the model (it runs on {side} x {side}); resize the images (--size {side})"
            ) from None
        if (side := _working_side(model, inputs, below=True)) is not None:  # a model made for one size, say
            raise ValueError(f"{images}: the model fails on {h} x {w} pixels and runs on {side} x {side} "
                             f"({err.__class__.__name__}: {last_line(err)}); resize the images (--size {side} --crop {side})") from None
        channels = inputs.shape[1]
        hint = ""
        if "channels" in str(err) and channels in (1, 3):  # the usual cause: grey images and an RGB model, or the reverse
            hint = ("; a one-channel model needs grey images (--grayscale)" if channels == 3
                    else "; an RGB model needs RGB images (drop --grayscale)")
        elif fix := export_hint(str(err)):
            hint = f"; {fix}"
        raise ValueError(
            f"{name}: failed on an input of shape {tuple(inputs.shape)} ({err.__class__.__name__}: {last_line(err)}){hint}"
        ) from None
    check_logits(out, inputs.shape[0], name)
    if out.shape[1] < min_outputs:
        raise ValueError(f"{name}: output has {out.shape[1]} class; a classifier needs at least 2")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            f"{name}: output is NaN or infinite on {images} of shape {tuple(inputs.shape)}; check the model and its preprocessing"
        )
    return int(out.shape[1])


def _working_side(model, inputs: torch.Tensor, below: bool = False) -> int | None:
    """The smallest of :data:`PROBE_SIDES` above the image's sides on which ``model`` runs (``below``: the largest
    under its larger side, the nearest size the model takes), or None."""
    for side in (reversed(PROBE_SIDES) if below else PROBE_SIDES):
        if (side >= max(inputs.shape[-2:])) if below else (side <= min(inputs.shape[-2:])):
            continue
        try:
            with torch.no_grad():
                model(torch.zeros(1, inputs.shape[1], side, side, dtype=inputs.dtype, device=inputs.device))
        except Exception:  # noqa: BLE001 -- any failure means: not this size either
            continue
        return side
    return None


def check_not_training(model, *, name: str = "model") -> None:
    """Refuse a model whose forward pass would change it: BatchNorm layers in training mode update
    their running statistics on every call (other train-mode layers are only noisy, and simplify warns)."""
    if not isinstance(model, nn.Module):
        return
    if exported_in_training_mode(model):  # eval() cannot change an exported graph: the export itself must be redone
        raise ValueError(f"{name}: was exported in training mode (its graph runs dropout or batch norm in training mode: "
                         "answers that are random or depend on the batch); export it again after model.eval()")
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats for m in model.modules()):
        raise ValueError(
            f"{name}: has BatchNorm layers in training mode, whose statistics every call would change; call model.eval() first"
        )


#: Architectures :func:`build_architecture` knows by name (others: ``"package.module:factory"``).
ARCHITECTURE_NAMES = ("smallcnn", "resnet18")


def build_architecture(arch: str, n_classes: int, in_channels: int = 3, size: int = 32) -> nn.Module:
    """A fresh, untrained classifier for training from scratch (``simplebits train --arch``).

    ``"smallcnn"``: the testbeds' :class:`~simplebits_audit.testbeds.SmallCNN` (square images, side
    a multiple of 8); ``"resnet18"``: torchvision's, with ``n_classes`` outputs (3-channel input);
    ``"package.module:factory"``: ``factory(num_classes=n_classes)`` if it takes that argument (or
    ``**kwargs``, as torchvision's builders do), else
    ``factory()``. The factory is the user's code: name only modules you trust.
    """
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"arch: expected one of {ARCHITECTURE_NAMES} or 'package.module:factory', got {arch!r}")
    if arch == "smallcnn":
        from .testbeds import SmallCNN

        if size % 8:
            raise ValueError(f"arch: smallcnn needs square images with a side divisible by 8, got {size} (resize with --size)")
        return SmallCNN(n_classes, in_channels, size=size, early_pool=True)
    if arch == "resnet18":
        import torchvision

        if in_channels != 3:
            raise ValueError(f"arch: resnet18 takes 3-channel images, the data has {in_channels}")
        return torchvision.models.resnet18(num_classes=n_classes)
    if ":" in arch:
        module_name, _, attr = arch.partition(":")
        try:
            factory = getattr(_import_here_too(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"arch: cannot import {arch!r} ({err})") from None
        import inspect

        try:
            params = inspect.signature(factory).parameters
            takes_classes = "num_classes" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            takes_classes = False
        model = factory(num_classes=n_classes) if takes_classes else factory()
        if not isinstance(model, nn.Module):
            raise ValueError(f"arch: {arch!r} returned a {type(model).__name__}, not an nn.Module")
        return model
    raise ValueError(f"arch: expected one of {ARCHITECTURE_NAMES} or 'package.module:factory', got {arch!r}")
