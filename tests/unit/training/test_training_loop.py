"""The one resumable-run loop of every training setting (issue #20): resume, refusal, atomic checkpoint, Ctrl-C."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from simplebits_audit.models import build_architecture
from simplebits_audit.training import loop
from simplebits_audit.training.loop import ResumableRun, changed_settings, channels_last_fits, step_seed

SETTINGS = {"lr": 0.1, "seed": 3, "sizes": (2, 3)}


def toy_run(checkpoint, total=10, settings=SETTINGS, fail_at=None, sigint_at=None, boundary=None, signal_number=signal.SIGINT):
    """A seeded random walk of one tensor: every step's draw follows from (seed, step) alone."""
    run = ResumableRun(checkpoint, settings, total=total, checkpoint_every=3600)
    weights = torch.zeros(4)
    trace: list[float] = []
    state = run.resume()
    if state is not None:
        weights, trace = state["weights"].clone(), list(state["trace"])

    def take_step(step: int) -> str:
        if step == fail_at:
            raise KeyboardInterrupt  # an interrupt raised inside a step, before it changes anything
        if step == sigint_at:
            os.kill(os.getpid(), signal_number)  # a real Ctrl-C while the step runs: it finishes, then the run stops
        generator = torch.Generator().manual_seed(step_seed(settings["seed"], step, 0))
        weights.add_(settings["lr"] * torch.randn(4, generator=generator))
        trace.append(float(weights.sum()))
        return f"sum {trace[-1]:.3f}"

    run.run(take_step, lambda: {"weights": weights.clone(), "trace": list(trace)}, description="toy", boundary=boundary)
    return weights, trace, run


def test_resume_after_an_interruption_equals_the_uninterrupted_run(tmp_path):
    straight, straight_trace, _ = toy_run(None)
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        toy_run(ckpt, fail_at=4)
    assert torch.load(ckpt, weights_only=True)["step"] == 4  # every finished step, nothing of the interrupted one
    with pytest.raises(KeyboardInterrupt):
        toy_run(ckpt, sigint_at=6)
    assert torch.load(ckpt, weights_only=True)["step"] == 7  # the step running at Ctrl-C finished first
    with pytest.raises(KeyboardInterrupt):  # a polite kill (SIGTERM: kill, timeout, a scheduler) saves the same way
        toy_run(ckpt, sigint_at=8, signal_number=signal.SIGTERM)
    assert torch.load(ckpt, weights_only=True)["step"] == 9
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handlers are put back
    resumed, trace, run = toy_run(ckpt)
    assert torch.equal(resumed, straight) and trace == straight_trace
    assert run.step == 10 and torch.load(ckpt, weights_only=True)["step"] == 10
    # Training longer from the checkpoint equals training longer from the start.
    longer, _, _ = toy_run(ckpt, total=12)
    assert torch.equal(longer, toy_run(None, total=12)[0])


def test_another_setting_refuses_to_resume_naming_it(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    toy_run(ckpt, total=3)
    with pytest.raises(ValueError, match=r"checkpoint: .*\['lr'\]") as err:
        toy_run(ckpt, settings={**SETTINGS, "lr": 0.2})
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"\['extra'\]"):
        toy_run(ckpt, settings={**SETTINGS, "extra": 1})
    # A tuple saved as JSON reads back as a list: the same settings.
    toy_run(ckpt, total=4, settings={**SETTINGS, "sizes": [2, 3]})
    with pytest.raises(ValueError, match="steps: the checkpoint .* already at step 4"):
        toy_run(ckpt, total=2)
    assert changed_settings({"a": 1, "b": 2}, {"a": 1, "c": 3}) == ["b", "c"]


def test_the_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    ckpt = tmp_path / "run.ckpt"
    toy_run(ckpt, total=2)
    real_save = torch.save

    def torn(obj, path, *args, **kwargs):  # a crash halfway through writing the file
        with open(path, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(OSError, match="disk full"):
        toy_run(ckpt, total=5)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(ckpt, weights_only=True)["step"] == 2  # the previous checkpoint, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]  # no temporary file left behind


def test_boundaries_checkpoint_and_only_rank_0_writes(tmp_path, monkeypatch):
    ckpt = tmp_path / "run.ckpt"
    seen = []

    def boundary(step: int) -> bool:
        if step == 5 and ckpt.is_file():
            seen.append(torch.load(ckpt, weights_only=True)["step"])
        return step == 3

    toy_run(ckpt, total=6, boundary=boundary)
    assert seen == [3]  # written at the boundary, not only at the end
    other = tmp_path / "rank1.ckpt"
    monkeypatch.setattr("simplebits_audit.training.loop.rank_and_world", lambda: (1, 2))
    toy_run(other, total=2)
    assert not other.exists()


def test_step_seeds_do_not_change():
    # Checkpoints of earlier runs resume only if a step's draws are the same: the derivation is fixed.
    assert step_seed(4, 7, 0, 1) == hash((4, 7, 0, 1)) % 2**63
    assert step_seed(0, 1, 2) == 2187946392326065592
    assert len({step_seed(0, s, r) for s in range(50) for r in range(4)}) == 200
    with pytest.raises(ValueError, match="checkpoint_every"):
        ResumableRun(None, {}, total=1, checkpoint_every=0)


class Viewing(torch.nn.Module):
    """A classifier whose forward flattens with ``view``: it fails on channels-last activations."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        return self.head(self.conv(x).view(len(x), -1))


def test_channels_last_only_where_the_classifier_answers_alike_and_the_model_is_left_as_it_was(monkeypatch):
    torch.manual_seed(0)
    probe = torch.rand(2, 3, 8, 8)
    small, viewing = build_architecture("smallcnn", 3, 3, 8).train(), Viewing().eval()
    small.features[1].eval()  # a submodule left in eval mode on purpose: the check must not switch it
    before = {k: v.clone() for k, v in small.state_dict().items()}
    assert channels_last_fits(small, probe)
    assert small.training and not small.features[1].training and all(p.is_contiguous() for p in small.parameters())
    assert all(torch.equal(v, before[k]) for k, v in small.state_dict().items())  # no BatchNorm statistics moved
    assert not channels_last_fits(viewing, probe) and not viewing.training
    with pytest.raises(RuntimeError):  # what the check guards against (if torch ever accepts this, the test is moot)
        viewing.to(memory_format=torch.channels_last)(probe.contiguous(memory_format=torch.channels_last))
    patchify = lambda x: x.view(len(x), -1).view(x.shape)  # noqa: E731 (a transform that needs the contiguous layout)
    assert not channels_last_fits(small, probe, patchify)  # the transform runs inside the trial
    assert not channels_last_fits(small, probe.flatten(2))  # not images
    monkeypatch.setattr(loop, "CHANNELS_LAST", False)
    assert not channels_last_fits(small, probe)


def test_without_a_terminal_a_training_run_prints_plain_lines(capsys, monkeypatch):
    # rich's bar draws nothing into a log file (nohup, CI): a long run said nothing until it ended
    from simplebits_audit import _progress

    monkeypatch.setattr(_progress, "PLAIN_PROGRESS_SECONDS", 0.0)
    run = ResumableRun(None, SETTINGS, total=3, checkpoint_every=3600)
    run.run(lambda step: f"loss {step}", lambda: {}, description="toy", show_progress=True)
    lines = [line.rsplit(" (", 1)[0] for line in capsys.readouterr().out.splitlines()]
    assert lines == ["toy: 1 / 3 (loss 0)", "toy: 2 / 3 (loss 1)", "toy: 3 / 3 (loss 2)"]
    monkeypatch.setattr(_progress, "PLAIN_PROGRESS_SECONDS", 3600.0)  # the default spacing: the last line only
    ResumableRun(None, SETTINGS, total=3, checkpoint_every=3600).run(lambda step: "", lambda: {}, description="toy", show_progress=True)
    assert [line.rsplit(" (", 1)[0] for line in capsys.readouterr().out.splitlines()] == ["toy: 3 / 3"]
    ResumableRun(None, SETTINGS, total=3, checkpoint_every=3600).run(lambda step: "", lambda: {}, description="toy")  # quiet
    assert capsys.readouterr().out == ""


def test_in_a_terminal_the_bar_alone_no_plain_lines():
    import io

    from rich.console import Console

    from simplebits_audit._progress import JobProgress

    buffer = io.StringIO()
    with JobProgress(console=Console(file=buffer, force_terminal=True), every=0) as progress:
        task = progress.add_task("toy", total=2)
        progress.advance(task)
        progress.advance(task)
    assert not progress.plain and "toy: 2 / 2" not in buffer.getvalue()


def _interrupted_rank(rank: int, store: str, checkpoint: str, steps_file: str) -> None:
    from datetime import timedelta

    import torch.distributed as dist

    # a regression fails in a minute, not after gloo's 30-minute default
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2, timeout=timedelta(seconds=60))
    try:
        run = ResumableRun(checkpoint, SETTINGS, total=20, checkpoint_every=3600)
        stop_at = {1: 3}.get(rank)  # only rank 1 is interrupted (one rank's Ctrl-C, or SIGTERM reaching it first)

        def take_step(step: int) -> str:
            if step == stop_at:
                os.kill(os.getpid(), signal.SIGINT)
            flag = torch.ones(1)
            dist.all_reduce(flag)  # what DDP's backward does every step: a rank that stopped alone would hang the other
            return ""

        try:
            run.run(take_step, lambda: {}, description="toy")
        except KeyboardInterrupt:
            pass
        with open(f"{steps_file}.{rank}", "w") as f:
            f.write(str(run.step))
    finally:
        dist.destroy_process_group()


def test_under_torchrun_every_rank_stops_at_the_same_step(tmp_path):
    import torch.multiprocessing as mp

    ckpt, steps = tmp_path / "run.ckpt", tmp_path / "steps"
    mp.start_processes(_interrupted_rank, args=(str(tmp_path / "store"), str(ckpt), str(steps)), nprocs=2, start_method="fork")
    stopped = [int((tmp_path / f"steps.{r}").read_text()) for r in (0, 1)]
    assert stopped == [4, 4], stopped  # rank 1 finished its step 3; rank 0 stopped with it instead of waiting in step 4
    assert torch.load(ckpt, weights_only=True)["step"] == 4  # and rank 0 saved it


def test_a_second_signal_acts_at_once_and_a_caller_s_sigterm_handler_is_left_alone():
    from simplebits_audit._helpers import DeferredInterrupt

    with pytest.raises(KeyboardInterrupt), DeferredInterrupt() as stop:  # a step that never ends can still be stopped
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        pytest.fail("the second Ctrl-C was deferred too")
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda *a: seen.append("caller"))  # a scheduler's requeue handler, say
    try:
        with DeferredInterrupt() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
        assert seen == ["caller"] and not stop.requested
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_plain_progress_says_every_task_s_last_line_and_leaves_notebooks_their_bar():
    import io

    from rich.console import Console

    from simplebits_audit._progress import JobProgress

    buffer = io.StringIO()
    with JobProgress(console=Console(file=buffer), every=3600) as progress:
        endless = progress.add_task("reading", total=None)  # no total: never "complete"
        progress.advance(endless, 2)
        progress.add_task("resumed", total=5, completed=5)  # already done when resumed: never advanced
        stopped = progress.add_task("interrupted", total=10)
        progress.advance(stopped, 3)
    assert [line.rsplit(" (", 1)[0] for line in buffer.getvalue().splitlines()] == ["reading: 2", "resumed: 5 / 5", "interrupted: 3 / 10"]
    assert not JobProgress(console=Console(file=io.StringIO(), force_jupyter=True)).plain  # a notebook shows rich's own bar
    assert JobProgress(console=Console(file=io.StringIO(), force_terminal=True, _environ={"TERM": "dumb"})).plain  # draws nothing


def test_a_second_ctrl_c_inside_a_step_keeps_the_last_whole_checkpoint(tmp_path):
    # the forced interrupt lands mid-step: saving then wrote a state holding half a step (its update, not its count)
    from simplebits_audit._helpers import ForcedInterrupt

    ckpt = tmp_path / "run.ckpt"
    run = ResumableRun(ckpt, SETTINGS, total=10, checkpoint_every=3600)
    trace: list[int] = []

    def take_step(step: int) -> str:
        trace.append(step)  # the update
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the second one acts at once, here, after the update
        return ""

    with pytest.raises(ForcedInterrupt):
        run.run(take_step, lambda: {"trace": list(trace)}, description="toy", boundary=lambda step: True)  # saved before every step
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] == 3 and saved["trace"] == [0, 1, 2]  # whole steps only
