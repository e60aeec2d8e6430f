"""Private helpers shared by the engine, the explainers, the metrics and the jobs.

This module sits below everything that uses it (it imports only torch and ``_validation``):
tuples of forward arguments, type aliases, the logits check, target resolution, the model guard,
and the image operations several methods share (blur, superpixels, segment means).
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ._validation import check_finite

#: The classifier: model-space images (B, C, H, W) plus extra arguments -> logits (B, K).
ForwardFunc = Callable[..., torch.Tensor]
#: A differentiable conversion of image batches (B, C, H, W), e.g. pixel space -> model space.
Transform = Callable[[torch.Tensor], torch.Tensor]
#: Captum-style target: None (the prediction), an int, a sequence of ints or a tensor of indices.
TargetLike = int | Sequence[int] | torch.Tensor | None


def as_tuple(args: Any) -> tuple:
    """``additional_forward_args`` as a tuple: ``None`` -> ``()``, a single object -> ``(obj,)``."""
    if args is None:
        return ()
    return args if isinstance(args, tuple) else (args,)


def slice_args(args: Any, rows: slice, batch: int) -> Any:
    """The rows ``rows`` of ``additional_forward_args``: tensors whose dim 0 is the batch are sliced.

    The result has the form of ``args`` (a tuple stays a tuple, one object stays one object).
    """
    if args is None:
        return None
    sliced = tuple(a[rows] if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == batch else a for a in as_tuple(args))
    return sliced if isinstance(args, tuple) else sliced[0]


def check_inputs(inputs: object, name: str = "inputs") -> torch.Tensor:
    """Check an image batch (B, C, H, W), floating point and finite; return it detached."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, C, H, W), got {type(inputs).__name__}")
    if inputs.dim() != 4 or 0 in inputs.shape:
        raise ValueError(f"{name}: expected a non-empty tensor of shape (B, C, H, W), got {tuple(inputs.shape)}")
    if not torch.is_floating_point(inputs):
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {inputs.dtype}")
    check_finite(inputs, name)
    return inputs.detach()


def check_logits(out: object, batch: int, name: str = "forward_func") -> torch.Tensor:
    """``out`` if it is a logits tensor of shape (``batch``, K); otherwise a ``ValueError`` naming ``name``."""
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != batch:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{name}: output must be logits of shape (B, classes) = ({batch}, K), got {got}")
    return out


def resolve_target(
    target: Any,
    batch: int,
    *,
    n_classes: int | None = None,
    predict: Callable[[], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
    name: str = "target",
) -> torch.Tensor | None:
    """A Captum-style ``target`` as a LongTensor (``batch``,), or None.

    Parameters
    ----------
    target : None, int, list or tuple of int, or Tensor
        One class for every image or one per image.
    batch : int
        Number of images.
    n_classes : int, optional
        When known, every index must lie in [0, n_classes).
    predict : callable, optional
        ``predict() -> logits (batch, K)``; called only when ``target`` is None, whose answer is
        then the predicted class. A given target never costs a forward pass.
    device : optional
        Where the returned tensor lives (default: the CPU, or the logits' device).

    Returns
    -------
    LongTensor (batch,) or None
        None only when ``target`` is None and there is no ``predict``.
    """
    if target is None:
        if predict is None:
            return None
        with torch.no_grad():
            logits = check_logits(predict(), batch)
        return logits.argmax(1) if device is None else logits.argmax(1).to(device)
    if isinstance(target, torch.Tensor):
        if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
            # .long() would truncate 1.7 to 1 and read True as class 1: a silent wrong target
            raise ValueError(f"{name}: expected a tensor of integer class indices, got dtype {target.dtype}")
        t = target.detach().flatten().long().cpu()
    elif isinstance(target, int) and not isinstance(target, bool):
        t = torch.tensor([target])
    elif isinstance(target, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in target):
        t = torch.tensor(list(target), dtype=torch.long)
    else:
        raise ValueError(f"{name}: expected an int, a list of ints or a tensor of class indices, got {type(target).__name__}")
    if t.numel() == 1:
        t = t.expand(batch).clone()
    if t.numel() != batch:
        raise ValueError(f"{name}: {t.numel()} targets for a batch of {batch}")
    if n_classes is not None:
        check_target_range(t, n_classes, name)
    return t if device is None else t.to(device)


def last_line(err: BaseException) -> str:
    """The last non-empty line of an error's message: TorchScript puts its traceback first and the cause last
    (its last line often repeats the error's class, ``RuntimeError: ...``: said once)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    line = lines[-1] if lines else err.__class__.__name__
    return line.removeprefix(f"{err.__class__.__name__}: ")


def export_hint(message: str) -> str | None:
    """How to fix a model call that failed with ``message``, where the cause is known: a ``torch.export`` archive
    traced on one batch size fails on any other with a guard on ``size()[0]``."""
    if "Guard failed" in message and "size()[0]" in message:
        return "the model was exported for a fixed batch size: export it with a dynamic batch dimension (dynamic_shapes)"
    return None


def class_index_of(value: str, names: Sequence[str], name: str, instead: str) -> int:
    """The index of class ``value`` (one of ``names``); ``ValueError`` naming ``name`` when two classes share it
    (ImageNet names two classes "crane"): taking the first would explain, select or label the wrong class silently."""
    found = [i for i, n in enumerate(names) if n == value]
    if len(found) > 1:
        raise ValueError(f"{name}: {value!r} names classes {found}; {instead}")
    return found[0]


def check_target_range(target: torch.Tensor, n_classes: int, name: str = "target") -> None:
    """``ValueError`` naming ``name`` if an index of ``target`` lies outside [0, n_classes)."""
    if bool((target < 0).any()) or bool((target >= n_classes).any()):
        raise ValueError(f"{name}: class indices must be in [0, {n_classes - 1}], got {target.tolist()}")


# Models currently inside a guard: a nested guard (SimpleBits inside a job) neither warns nor snapshots twice.
_GUARDED: set[int] = set()
# Models inside a :func:`guarded` call, which has warned already: its guards still restore, without warning again.
_WARNED: set[int] = set()


#: The attribute by which a model declares the head it was trained with ("softmax" or "sigmoid"; set on the
#: shipped testbed classifiers): explaining it under the other head is refused (``heads.check_outputs``).
DECLARED_HEAD = "simplebits_head"
#: The attribute by which a model declares its class (or label) names, used when the caller gives none.
DECLARED_CLASSES = "simplebits_classes"


def module_of(forward_func: object) -> nn.Module | None:
    """The ``nn.Module`` behind ``forward_func``: the module itself or the module of a bound method
    (``model.forward``); None for any other callable."""
    module = forward_func if isinstance(forward_func, nn.Module) else getattr(forward_func, "__self__", None)
    return module if isinstance(module, nn.Module) else None


def exported_in_training_mode(module: nn.Module) -> bool | None:
    """Whether a ``torch.export`` graph (ATen operators) runs dropout or batch norm in training mode, from the
    ``train`` / ``training`` arguments of its calls; None for any other module (its flags tell).

    An exported module says ``training=True`` whatever it was exported in, and refuses ``eval()``: its
    graph fixes what it does."""
    graph = getattr(module, "graph", None)
    if not isinstance(module, torch.fx.GraphModule) or graph is None:
        return None
    calls = [n for n in graph.nodes if n.op == "call_function"]
    if not any(str(n.target).startswith("aten.") for n in calls):  # a torch.fx trace of torch functions: its modules' flags tell
        return None
    for node in calls:
        name = str(node.target)
        if ("dropout" in name or "batch_norm" in name) and "no_training" not in name:
            key, index = ("train", 2) if "dropout" in name else ("training", 5)
            flag = node.kwargs.get(key, node.args[index] if len(node.args) > index else None)
            # a batch norm without running statistics (track_running_stats=False) uses batch statistics in eval mode too:
            # its training flag is True whatever the model's mode, and exporting again cannot change it
            untracked = "batch_norm" in name and len(node.args) > 3 and node.args[3] is None
            if flag is not False and not untracked:
                return True
    return False


def in_training_mode(module: nn.Module) -> bool:
    """Whether ``module`` computes in training mode: its modules' flags, or an exported graph's own calls."""
    exported = exported_in_training_mode(module)
    return any(m.training for m in module.modules()) if exported is None else exported


@contextlib.contextmanager
def model_guard(forward_func: object) -> Iterator[None]:
    """Restore every parameter's ``requires_grad`` and ``.grad``, every module's mode and, for a
    model with modules in training mode, every buffer on exit (even after an error).

    Every engine and explainer runs the user's model inside this guard: gradients are taken with
    respect to the image only, but hooks and ``requires_grad`` juggling must never leak into the
    user's model, and a forward pass in training mode moves BatchNorm's running statistics (SPEC
    section 4). A model with modules in training mode gets a warning. A bound method of a module
    (``model.forward``) guards that module; any other callable: no-op.
    """
    forward_func = module_of(forward_func)
    if forward_func is None or id(forward_func) in _GUARDED:
        yield
        return
    modes = [(m, m.training) for m in forward_func.modules()]
    training = in_training_mode(forward_func)
    if training and id(forward_func) not in _WARNED:
        _warn_training(forward_func, stacklevel=4)
    params = list(forward_func.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    buffers = [(b, b.detach().clone()) for b in forward_func.buffers()] if training else []
    _GUARDED.add(id(forward_func))
    try:
        yield
    finally:
        _GUARDED.discard(id(forward_func))
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for p, flag, grad in zip(params, flags, grads):
            p.requires_grad_(flag)
            p.grad = grad
        for m, mode in modes:
            if m.training != mode:  # only what changed: a torch.export module refuses train() at all
                m.train(mode)


def _warn_training(module: nn.Module, stacklevel: int) -> None:
    remedy = "the model exported again after model.eval()" if exported_in_training_mode(module) else "model.eval()"
    warnings.warn(f"forward_func is in training mode; explanations of eval-mode behaviour need {remedy}", stacklevel=stacklevel)


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (whose first argument is ``forward_func``) warns about a model in training mode once, at
    its caller's line, instead of once per stage; each stage's own :func:`model_guard` still restores
    the model when it ends (a stage may read the model, e.g. its fingerprint, after another ran it)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        module = module_of(args[0] if args else kwargs.get("forward_func"))
        if module is None or id(module) in _WARNED or id(module) in _GUARDED:
            return func(*args, **kwargs)
        if in_training_mode(module):
            _warn_training(module, stacklevel=3)
        _WARNED.add(id(module))
        try:
            return func(*args, **kwargs)
        finally:
            _WARNED.discard(id(module))

    return wrapper


# ---------------------------------------------------------------------------------------------
# image operations shared by baselines, the SimpleBits map and the metrics


@contextlib.contextmanager
def seeded(seed: int, devices: Sequence[torch.device | str] = ()) -> Iterator[None]:
    """The global RNGs of the CPU and of the CUDA ``devices`` seeded with ``seed`` inside, restored on exit.

    Only the generators it forks are seeded: ``torch.manual_seed`` would also reseed every CUDA
    device (for good, outside the fork) and, before CUDA starts, record a stack trace for its lazy
    call on every call.
    """
    cuda = sorted({torch.device(d) for d in devices if torch.device(d).type == "cuda"}, key=str)
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for device in cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def run_device(module: object, device: str | torch.device | None = None, *, must_agree: bool = True) -> torch.device:
    """Where work with ``module`` runs: ``device``, else the module's (its first parameter's or buffer's; the CPU without any).

    The one device rule of the training settings and the jobs. With ``must_agree`` (the jobs:
    they run the user's model where it is) an explicit ``device`` must be the module's:
    ``ValueError`` naming ``model`` otherwise, and the module's own device (with its index) is
    returned. Without it (the training settings: they copy or move their networks to ``device``)
    an explicit ``device`` wins.
    """
    tensors = [*module.parameters(), *module.buffers()] if isinstance(module, nn.Module) else []
    module_device = tensors[0].device if tensors else None
    if device is None:
        return module_device or torch.device("cpu")
    device = torch.device(device)
    if module_device is None or not must_agree:
        return device
    same = device.type == module_device.type and (
        device.index is None or module_device.index is None or device.index == module_device.index
    )
    if not same:
        raise ValueError(
            f"model: its weights are on {module_device} but the job runs on {device}; "
            f"move the model (model.to(device)) or pass device={str(module_device)!r}"
        )
    return module_device


class ForcedInterrupt(KeyboardInterrupt):
    """A second Ctrl-C while a step runs: raised wherever the code is, so the state may hold half a step and must not be saved."""


class DeferredInterrupt:
    """Ctrl-C (SIGINT) or a polite kill (SIGTERM, as sent by ``kill``, ``timeout``, a batch scheduler or a
    container's stop) inside ``with DeferredInterrupt() as stop`` only sets ``stop.requested``.

    A training loop checks it between steps, saves a consistent checkpoint and raises
    ``KeyboardInterrupt`` itself, so that an interrupt in the middle of a step (between the
    optimiser's update and the step counter, or during validation) cannot save a torn state, and a
    terminated job loses no finished step. A second signal acts at once, as it would without the
    guard (a step that never ends can still be stopped). SIGTERM is taken only where nobody else
    handles it (its default action): a caller's own handler (a scheduler's requeue) is left alone.
    Off the main thread (where signal handlers cannot be set) it does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> DeferredInterrupt:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._handle)
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        import os
        import signal

        if not self.requested:
            self.requested = True
            return
        self._restore()  # the second one: what the signal does without the guard, now
        if signum == signal.SIGINT:
            raise ForcedInterrupt
        os.kill(os.getpid(), signum)

    def _restore(self) -> None:
        import signal

        for number, previous in self._previous.items():
            # None: a handler not set from Python, which cannot be put back: the default rather than ours
            signal.signal(number, signal.SIG_DFL if previous is None else previous)
        self._previous = {}

    def __exit__(self, *exc: Any) -> None:
        self._restore()


#: ITU-R BT.601 luma weights of R, G, B
LUMA = (0.299, 0.587, 0.114)


def luminance(rgb: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Rec. 601 luminance of RGB values along ``dim`` (size 3), which is summed away."""
    w = torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device)
    return (rgb * w.view([-1 if d == dim % rgb.dim() else 1 for d in range(rgb.dim())])).sum(dim)


def blur(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Gaussian blur of an image batch (B, C, H, W) with reflect padding; same shape.

    ``sigma`` defaults to a tenth of the longer side. The kernel sums to one, so blurring commutes
    with a per-channel affine normalisation: blurring model-space inputs equals normalising the
    blurred pixels.
    """
    from torchvision.transforms.functional import gaussian_blur

    h, w = x.shape[-2:]
    sigma = max(h, w) / 10 if sigma is None else float(sigma)
    if sigma <= 0:
        return x.clone()
    # reflect padding needs the half-width below the image side
    half = min(math.ceil(2 * sigma), h - 1, w - 1)
    if half < 1:
        return x.clone()
    return gaussian_blur(x, [2 * half + 1, 2 * half + 1], [sigma, sigma])


def unit_range(x: torch.Tensor) -> torch.Tensor:
    """Each image (B, C, H, W) rescaled to [0, 1] by its own min and max (a monotone stand-in for pixel space)."""
    lo = x.flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = x.flatten(1).amax(1).view(-1, 1, 1, 1)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def superpixels(pixels: torch.Tensor, n_segments: int = 40, compactness: float = 10.0) -> torch.Tensor:
    """SLIC superpixels (scikit-image) of pixel images (B, C, H, W) in [0, 1]: LongTensor (B, 1, H, W).

    Labels start at 0 and are contiguous per image.
    """
    from skimage.segmentation import slic

    out = []
    for img in pixels.detach().cpu().double():
        channel_axis = -1
        arr = img.permute(1, 2, 0).numpy()
        if arr.shape[-1] == 1:
            arr, channel_axis = arr[..., 0], None
        seg = slic(arr, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=channel_axis)
        seg = torch.from_numpy(seg).long()
        out.append(torch.unique(seg, return_inverse=True)[1])  # contiguous labels
    return torch.stack(out).unsqueeze(1).to(pixels.device)


def segment_means(x: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Every segment of ``x`` (B, C, H, W) replaced by its mean colour; ``segments`` (B, 1, H, W)."""
    out = torch.empty_like(x)
    for b in range(len(x)):
        flat = segments[b, 0].flatten()
        n = int(flat.max()) + 1
        sums = torch.zeros(x.shape[1], n, dtype=x.dtype, device=x.device).index_add_(1, flat, x[b].flatten(1))
        counts = torch.bincount(flat, minlength=n).clamp_min(1).to(x.dtype)
        out[b] = (sums / counts)[:, flat].view_as(x[b])
    return out


def expand_map(amap: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A map (B, 1, H, W) repeated over the channels of ``like`` (B, C, H, W), contiguous."""
    return amap.to(like.dtype).expand_as(like).contiguous()
