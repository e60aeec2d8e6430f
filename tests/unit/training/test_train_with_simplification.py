"""Training with simplification (issue #13): the joint training loop, the trade-off sweep, the train job, CLI and report."""

from __future__ import annotations

import contextlib
import json
import os

import pytest
import torch

from simplebits_audit import testbeds
from simplebits_audit.models import build_architecture
from simplebits_audit.training import joint
from simplebits_audit.training.data import Batches
from simplebits_audit.training.joint import TrainingResult, tradeoff, train_with_simplification

from ...helpers import assert_unchanged, run_cli, snapshot

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TESTBED = "blended-digits"
FAST = {"epochs": 2, "batch_size": 16}


@pytest.fixture(scope="module")
def data():
    return testbeds.load(TESTBED, "train", n=64, seed=3)


@pytest.fixture(scope="module")
def val():
    d = testbeds.load(TESTBED, "test", n=32, seed=4)
    return d.images, d.labels


def fresh() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_architecture("smallcnn", 10)


@contextlib.contextmanager
def interrupted_at(monkeypatch, step: int):
    """Ctrl-C when the run asks for the batch of ``step``; the block must end in that interrupt."""
    real_call = Batches.__call__

    def interrupted(self, at):
        if at == step:
            raise KeyboardInterrupt
        return real_call(self, at)

    monkeypatch.setattr(Batches, "__call__", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(Batches, "__call__", real_call)


def test_training_returns_both_networks_and_a_history_and_leaves_the_classifier_alone(data, val):
    classifier = fresh()
    before = snapshot(classifier)
    result = train_with_simplification(classifier, data, lam=1.0, val_data=val, **FAST)
    assert_unchanged(before, classifier)  # a copy is trained
    assert result.classifier is not classifier and result.lam == 1.0
    assert not result.classifier.training and not result.simplifier.training
    changed = [k for k, v in result.classifier.state_dict().items() if not torch.equal(v, classifier.state_dict()[k])]
    assert changed, "the returned classifier was not trained"
    epochs = FAST["epochs"] + joint.JOINT_DEFAULTS["cooldown"]  # the default cooldown's epochs follow the joint ones
    assert [h["epoch"] for h in result.history] == list(range(1, epochs + 1)) and result.history[-1]["steps"] == 4 * epochs
    for key in ("loss", "train_accuracy", "train_bpd", "val_accuracy_simplified", "val_accuracy_original", "val_bpd_simplified",
                "val_bpd_original", "val_bits_kept", "seconds"):
        assert key in result.final, key
    assert 0 <= result.final["val_accuracy_simplified"] <= 1 and result.final["val_bpd_original"] > 0
    simplified = result.simplify(val[0][:4])
    assert simplified.shape == (4, 3, 32, 32) and torch.equal(simplified, (simplified * 255).round() / 255)
    assert result.predict(val[0][:4]).shape == (4,)
    # held-out scores per image, whose means are what the last epoch reported on the same images
    scores = result.score(*val)
    assert all(v.shape == (len(val[0]),) for v in scores.values())
    for key in ("accuracy_simplified", "accuracy_original", "bits_kept"):
        assert float(scores[key].mean()) == pytest.approx(result.final[f"val_{key}"], abs=1e-6), key
    assert torch.equal(scores["accuracy_simplified"], (result.predict(val[0]) == val[1]).float())
    with pytest.raises(ValueError, match="labels: expected"):
        result.score(val[0], val[1][:-1])
    assert result.settings["lam"] == 1.0 and result.settings["epochs"] == 2 and "training_seconds" in result.settings


def test_training_is_seeded_and_resumes_exactly_after_an_interruption(data, val, tmp_path, monkeypatch):
    straight = train_with_simplification(fresh(), data, lam=1.0, val_data=val, seed=2, **FAST)
    again = train_with_simplification(fresh(), data, lam=1.0, val_data=val, seed=2, **FAST)
    for k, v in straight.classifier.state_dict().items():
        assert torch.equal(v, again.classifier.state_dict()[k]), k
    ckpt = tmp_path / "run.ckpt"
    with interrupted_at(monkeypatch, 5):
        train_with_simplification(fresh(), data, lam=1.0, val_data=val, seed=2, checkpoint=ckpt, **FAST)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 5 and len(json.loads(state["history"])) == 1
    resumed = train_with_simplification(fresh(), data, lam=1.0, val_data=val, seed=2, checkpoint=ckpt, **FAST)
    for k, v in straight.classifier.state_dict().items():
        assert torch.equal(v, resumed.classifier.state_dict()[k]), k
    for k, v in straight.simplifier.state_dict().items():
        assert torch.equal(v, resumed.simplifier.state_dict()[k]), k
    assert _timeless(straight.history) == _timeless(resumed.history)
    with pytest.raises(ValueError, match="checkpoint"):
        train_with_simplification(fresh(), data, lam=0.5, val_data=val, seed=2, checkpoint=ckpt, **FAST)
    # Interrupted while scoring the last epoch: the resumed run closes that epoch and ends like the straight one.
    real_evaluate = joint.evaluate_joint
    calls = {"n": 0}

    def interrupted_evaluation(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    ckpt2 = tmp_path / "during-validation.ckpt"
    monkeypatch.setattr(joint, "evaluate_joint", interrupted_evaluation)
    with pytest.raises(KeyboardInterrupt):
        train_with_simplification(fresh(), data, lam=1.0, val_data=val, seed=2, checkpoint=ckpt2, **FAST)
    monkeypatch.setattr(joint, "evaluate_joint", real_evaluate)
    state = torch.load(ckpt2, weights_only=True)
    assert state["step"] == 8 and len(json.loads(state["history"])) == 1
    closed = train_with_simplification(fresh(), data, lam=1.0, val_data=val, seed=2, checkpoint=ckpt2, **FAST)
    assert _timeless(closed.history) == _timeless(straight.history)


@pytest.mark.slow
def test_the_bits_term_removes_what_lambda_zero_keeps():
    data = testbeds.load(TESTBED, "train", n=256, seed=3)
    val = testbeds.load(TESTBED, "test", n=32, seed=4)
    fast = {"val_data": val, "epochs": 3, "batch_size": 32, "lr": 0.01, "warmup": 0.0, "margin": 0.0}
    # lambda 20, not 5: at 5 the three short epochs leave the mask at the identity or not depending on the
    # thread count's rounding (measured 0.035 with one thread, 1.0 with two); at 20 both move it.
    kept = {lam: train_with_simplification(fresh(), data, lam=lam, **fast).final["val_bits_kept"] for lam in (0.0, 20.0)}
    assert kept[0.0] > 0.99  # the binary mask stays at the identity: nothing asks for less
    assert kept[20.0] < 0.5 * kept[0.0], kept


def _timeless(history: list[dict]) -> list[dict]:
    """A history without its wall-clock ``seconds`` (the one entry two equal runs differ in)."""
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def _lams(result: TrainingResult) -> list[float]:
    return [h["train_lam"] for h in result.history]


def test_a_budget_raises_lambda_while_more_is_kept_and_lowers_it_when_less(data, val):
    # Nothing removed yet (a new simplifier keeps everything): lambda must rise from its start.
    keeps = train_with_simplification(fresh(), data, budget=0.2, val_data=val, warmup=0.0, epochs=2, batch_size=16)
    assert keeps.budget == 0.2 and keeps.settings["budget"] == 0.2 and keeps.settings["lam"] is None
    assert _lams(keeps)[0] > joint.BUDGET_LAMBDA_START and keeps.lam > _lams(keeps)[0]
    # A simplifier whose mask is off everywhere keeps less than the budget: lambda must fall.
    flat = joint.Simplifier(in_channels=3, binary=True)
    with torch.no_grad():
        flat.head.bias.fill_(-30.0)
    drops = train_with_simplification(fresh(), data, budget=0.9, simplifier=flat, val_data=val, warmup=0.0, epochs=2, batch_size=16)
    assert drops.final["val_bits_kept"] < 0.9 and drops.lam < _lams(drops)[0] < joint.BUDGET_LAMBDA_START
    # Budget 1 is the reference: no bits term at all.
    reference = train_with_simplification(fresh(), data, budget=1.0, val_data=val, **FAST)
    assert reference.lam == 0.0 and set(_lams(reference)) == {0.0}
    # Neither lam nor budget: the default budget.
    assert train_with_simplification(fresh(), data, val_data=val, epochs=1, batch_size=32).budget == joint.DEFAULT_BUDGET


def test_the_mask_logit_penalty_keeps_the_logits_small(data, val, monkeypatch):
    # The penalty is what keeps the binary mask movable (docs/design-log.md): without it the logits run off.
    def mean_logit_size(decay: float) -> float:
        monkeypatch.setattr(joint, "MASK_LOGIT_DECAY", decay)
        result = train_with_simplification(fresh(), data, budget=0.2, val_data=val, warmup=0.0, lr=0.01, epochs=3, batch_size=16)
        with torch.no_grad():
            return float(result.simplifier.mask_logits(val[0]).abs().mean())

    assert mean_logit_size(1.0) < 0.5 * mean_logit_size(0.0)


def test_a_reference_run_is_not_penalised(data, val, monkeypatch):
    # Budget 1 and lambda 0 remove nothing: the penalty, which pulls the logits towards the threshold, must not touch them.
    def simplifier_state(decay: float, **strength) -> dict:
        monkeypatch.setattr(joint, "MASK_LOGIT_DECAY", decay)
        return train_with_simplification(fresh(), data, val_data=val, warmup=0.0, **strength, **FAST).simplifier.state_dict()

    for strength in ({"budget": 1.0}, {"lam": 0.0}):
        plain, penalised = simplifier_state(0.0, **strength), simplifier_state(100.0, **strength)
        assert all(torch.equal(v, penalised[k]) for k, v in plain.items()), strength


def test_the_cooldown_stops_the_simplifier_at_its_threshold_and_trains_the_classifier(data, val, monkeypatch):
    # The ``cooldown`` epochs after the joint ones: the mask the classifier sees is the evaluation's threshold, and
    # neither the simplifier nor lambda moves; before them the simplifier trains on sampled masks.
    from simplebits_audit.simplification.learned import Simplifier

    seen = []
    real = Simplifier.simplify_with_logits

    def recording(self, pixels):
        if torch.is_grad_enabled():  # the training steps, not the per-epoch scoring
            seen.append((self.training, [p.detach().clone() for p in self.parameters()]))
        return real(self, pixels)

    monkeypatch.setattr(Simplifier, "simplify_with_logits", recording)
    result = train_with_simplification(fresh(), data, budget=0.2, val_data=val, warmup=0.0, cooldown=1, epochs=1, batch_size=16)
    total = len(seen)
    assert total == 8 and len(result.history) == 2  # 4 joint steps, then 4 in the cooldown; each epoch scored
    sampled, thresholded = seen[: total // 2], seen[total // 2 :]
    assert all(training for training, _ in sampled) and not any(training for training, _ in thresholded)
    moved = lambda a, b: any(not torch.equal(x, y) for x, y in zip(a[1], b[1]))  # noqa: E731
    assert moved(sampled[0], sampled[-1])  # the simplifier trained before the cooldown...
    assert not moved(thresholded[0], thresholded[-1])  # ...and not during it
    assert all(torch.equal(a, b) for a, b in zip(thresholded[-1][1], result.simplifier.parameters()))  # what is returned
    assert _lams(result)[-1] == 0.0 and result.lam > 0  # no bits term in the cooldown; the lambda the budget settled on


def test_the_classifier_also_learns_the_originals_while_the_simplifier_trains(data, monkeypatch):
    # ORIGINALS_WEIGHT: while the simplifier trains (after the warm-up, before the cooldown) the classifier's loss on the
    # original images joins the step, in a forward of their own; never in a reference run, the warm-up or the cooldown.
    monkeypatch.setattr(joint, "ORIGINALS_WEIGHT", 1.0)
    real = joint._Joint.forward
    calls = []

    def recording(self, pixels, originals=False):
        out = real(self, pixels, originals)
        if torch.is_grad_enabled():
            calls.append(originals)
            assert (out[3] is not None) == originals and out[1].shape[0] == pixels.shape[0]
            assert not originals or out[3].shape[0] == pixels.shape[0]
        return out

    monkeypatch.setattr(joint._Joint, "forward", recording)
    with_originals = train_with_simplification(fresh(), data, budget=0.3, warmup=0.5, cooldown=1, **FAST)
    assert calls == [False] * 4 + [True] * 4 + [False] * 4  # 8 joint steps (half warm-up), then 4 in the cooldown
    calls.clear()
    train_with_simplification(fresh(), data, budget=1.0, warmup=0.5, cooldown=1, **FAST)
    assert not any(calls)  # a reference run trains as before
    monkeypatch.setattr(joint, "ORIGINALS_WEIGHT", 0.0)
    without = train_with_simplification(fresh(), data, budget=0.3, warmup=0.5, cooldown=1, **FAST)
    assert any(not torch.equal(a, b) for a, b in zip(without.classifier.parameters(), with_originals.classifier.parameters()))


def test_the_simplifier_optimiser_starts_at_its_first_step(data, tmp_path, monkeypatch):
    # AdamW with a learning rate of 0 still moves its moments: had the simplifier's gradients of the warm-up (the classifier
    # pulling the mask towards the identity) reached them, its first steps would follow that pull; on one report draw the
    # features behind the mask died and the run ended at chance (docs/design-log.md). Nor does the cooldown touch them.
    ckpt = tmp_path / "moments.ckpt"
    options = {"budget": 0.3, "warmup": 0.5, "cooldown": 1, **FAST}  # 4 warm-up steps, 4 simplifier steps, 4 in the cooldown
    with interrupted_at(monkeypatch, 11):
        train_with_simplification(fresh(), data, checkpoint=ckpt, **options)
    saved = torch.load(ckpt, weights_only=True)
    groups, state = saved["optimizer"]["param_groups"], saved["optimizer"]["state"]
    assert saved["step"] == 11
    assert {float(state[i]["step"]) for i in groups[0]["params"]} == {11.0}  # the classifier: every step so far
    assert {float(state[i]["step"]) for i in groups[1]["params"]} == {4.0}  # the simplifier: its own steps only


def test_a_run_interrupted_in_the_warm_up_resumes_exactly(data, tmp_path, monkeypatch):
    # In the warm-up the optimiser holds no state for the simplifier yet: the resumed run must create it as the straight one does.
    options = {"budget": 0.3, "seed": 2, "warmup": 0.5, "cooldown": 1, **FAST}  # 4 warm-up steps
    straight = train_with_simplification(fresh(), data, **options)
    ckpt = tmp_path / "warm.ckpt"
    with interrupted_at(monkeypatch, 2):
        train_with_simplification(fresh(), data, checkpoint=ckpt, **options)
    resumed = train_with_simplification(fresh(), data, checkpoint=ckpt, **options)
    assert resumed.lam == straight.lam and _timeless(resumed.history) == _timeless(straight.history)
    for net in ("classifier", "simplifier"):
        for k, v in getattr(straight, net).state_dict().items():
            assert torch.equal(v, getattr(resumed, net).state_dict()[k]), (net, k)


def test_the_simplifier_learning_rate_ramps_up_from_its_first_step(data, tmp_path, monkeypatch):
    # Its AdamW starts from empty moments, whose first updates are the largest: the rate rises over SIMPLIFIER_LR_RAMP of
    # the joint steps from the simplifier's first step, as the classifier's does from the run's.
    monkeypatch.setattr(joint, "SIMPLIFIER_LR_RAMP", 0.5)  # 8 joint steps: a ramp of 4 from step 4, the warm-up's end
    options = {"budget": 0.3, "warmup": 0.5, "cooldown": 0, **FAST}
    for at, share in [(6, 2 / 4), (7, 3 / 4)]:
        ckpt = tmp_path / f"ramp{at}.ckpt"
        with interrupted_at(monkeypatch, at):
            train_with_simplification(fresh(), data, checkpoint=ckpt, **options)
        classifier_group, simplifier_group = torch.load(ckpt, weights_only=True)["optimizer"]["param_groups"]
        assert simplifier_group["lr"] == pytest.approx(share * classifier_group["lr"]), at  # the rates of step at - 1


@pytest.mark.parametrize("at", [8, 10])  # 8: right after the budget check, which must not be made twice
def test_a_run_interrupted_in_the_cooldown_resumes_exactly(data, tmp_path, monkeypatch, at):
    options = {"budget": 0.3, "seed": 1, "warmup": 0.0, "cooldown": 1, **FAST}  # 8 joint steps, then 4 in the cooldown
    straight = train_with_simplification(fresh(), data, **options)
    ckpt = tmp_path / "cool.ckpt"
    with interrupted_at(monkeypatch, at):
        train_with_simplification(fresh(), data, checkpoint=ckpt, **options)
    assert torch.load(ckpt, weights_only=True)["step"] == at
    resumed = train_with_simplification(fresh(), data, checkpoint=ckpt, **options)
    assert resumed.lam == straight.lam and resumed.simplifier.temperature == straight.simplifier.temperature
    assert resumed.settings["budget_offset"] == straight.settings["budget_offset"] < 0
    for k, v in straight.classifier.state_dict().items():
        assert torch.equal(v, resumed.classifier.state_dict()[k]), k
    for k, v in straight.simplifier.state_dict().items():
        assert torch.equal(v, resumed.simplifier.state_dict()[k]), k


def test_budget_offset_finds_the_largest_shift_within_the_budget(data):
    # A new simplifier's head has zero weights: every mask logit is its bias, so the masks keep every cell above an offset
    # of -bias and none below it, and the largest offset within a budget under 1 is just below -bias.
    from simplebits_audit.estimators import resolve_estimator
    from simplebits_audit.simplification.learned import Simplifier

    simplifier, estimator, images = Simplifier(in_channels=3, binary=True), resolve_estimator(None), data.images[:24]
    bias = float(simplifier.head.bias)
    assert joint.budget_offset(simplifier, images, 1.0, estimator) == 0.0  # already within: no shift
    offset = joint.budget_offset(simplifier, images, 0.5, estimator, batch_size=10)
    assert -bias - 1e-4 < offset < -bias
    flat = simplifier.reference(images)
    expected = float((estimator.bpd(flat) / estimator.bpd(images)).mean())
    assert expected < 0.5
    assert joint.budget_offset(simplifier, images, expected / 2, estimator) <= -bias - 1  # nothing keeps that little: no cell
    assert simplifier.training and float(simplifier.head.bias) == bias  # left as it was


def test_a_budget_run_ends_within_its_budget_on_the_training_images(data, val, monkeypatch):
    # Two epochs cannot bring a mask from the identity down to 0.2 of the bits: the check at the joint epochs' end lowers it.
    from simplebits_audit.estimators import resolve_estimator

    options = {"budget": 0.2, "warmup": 0.0, "cooldown": 1, **FAST}
    result = train_with_simplification(fresh(), data, **options)
    estimator, images = resolve_estimator(None), Batches(data, 16, 0).spread(joint.BUDGET_CHECK_IMAGES)
    assert result.settings["budget_offset"] < 0
    assert joint.budget_offset(result.simplifier, images, 0.2, estimator) == 0.0  # within the budget now
    # With no cooldown the check comes at the very end: the last epoch's scores must be those of the masks returned.
    last = train_with_simplification(fresh(), data, val_data=val, **{**options, "cooldown": 0})
    assert last.settings["budget_offset"] < 0
    rescored = joint.evaluate_joint(last.classifier, last.simplifier, *val, estimator)
    assert rescored["val_bits_kept"] == pytest.approx(last.final["val_bits_kept"], abs=1e-6)
    monkeypatch.setattr(joint, "BUDGET_PROJECTION", False)
    unchecked = train_with_simplification(fresh(), data, **options)
    assert "budget_offset" not in unchecked.settings and joint.budget_offset(unchecked.simplifier, images, 0.2, estimator) < 0


def test_the_cooldown_leaves_the_joint_schedule_as_it_was(data):
    # The cooldown's epochs are added after the joint ones: warm-up, annealing, lambda and the learning rate of the
    # joint steps are those of a run without it, so the simplifier ends the same, and only the classifier moves on.
    without = train_with_simplification(fresh(), data, budget=0.2, cooldown=0, **FAST)
    with_it = train_with_simplification(fresh(), data, budget=0.2, cooldown=1, **FAST)
    assert all(torch.equal(a, b) for a, b in zip(without.simplifier.state_dict().values(), with_it.simplifier.state_dict().values()))
    assert with_it.lam == without.lam
    assert len(with_it.history) == len(without.history) + 1
    assert _timeless(with_it.history[:-1]) == _timeless(without.history)
    assert any(not torch.equal(a, b) for a, b in zip(without.classifier.parameters(), with_it.classifier.parameters()))


def test_the_gate_asks_about_the_thresholded_image(data, monkeypatch):
    # A mask just below the threshold everywhere: thresholded, every image is its flat mean colour, which the trained
    # classifier answers about as often as chance; the training samples keep about half of the cells (no annealing
    # here) and are answered more often. The gate must follow what evaluation sees, so it charges few images.
    from simplebits_audit.simplification.learned import Simplifier

    classifier = testbeds.load_classifier(TESTBED)
    with torch.no_grad():
        flat = float((classifier(data.images.mean((2, 3), keepdim=True).expand_as(data.images)).argmax(1) == data.labels).float().mean())
    monkeypatch.setattr(joint, "ANNEAL_TO", None)

    def charged(on_threshold: bool) -> float:
        monkeypatch.setattr(joint, "GATE_ON_THRESHOLD", on_threshold)
        simplifier = Simplifier(in_channels=3, binary=True, mask_init=0.48)
        result = train_with_simplification(classifier, data, lam=1.0, simplifier=simplifier, warmup=0.0, lr=1e-8, epochs=1, cooldown=0,
                                           batch_size=32)
        return result.history[-1]["train_charged"]

    on_threshold, on_sample = charged(True), charged(False)
    assert on_threshold <= flat + 0.1 and on_sample >= on_threshold + 0.15, (on_threshold, on_sample, flat)


def test_a_classifier_that_needs_the_contiguous_layout_trains_and_results_come_back_contiguous(data, monkeypatch):
    # Convolutions train channels-last where the classifier accepts it; one whose forward flattens with ``view`` does
    # not, and must train as before. Either way the networks come back in the usual layout.
    class Viewing(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.head = torch.nn.Conv2d(3, 8, 3, stride=4, padding=1), torch.nn.Linear(8 * 8 * 8, 10)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).view(len(x), -1))

    layouts = []
    real = joint.channels_last_fits
    monkeypatch.setattr(joint, "channels_last_fits", lambda *args: layouts.append(real(*args)) or layouts[-1])
    torch.manual_seed(0)
    for classifier in (Viewing(), fresh()):
        result = train_with_simplification(classifier, data, budget=0.5, epochs=1, batch_size=32, cooldown=1)
        for net in (result.classifier, result.simplifier):
            assert all(t.is_contiguous() for t in net.state_dict().values())
        assert all(p.is_contiguous() for p in classifier.parameters())  # the caller's module keeps its layout
        assert result.settings["channels_last"] is layouts[-1]
    assert layouts == [False, True]


@pytest.mark.parametrize("binary", [True, False])
def test_the_gates_image_from_the_steps_mask_logits_is_the_thresholded_image(binary):
    # The gate thresholds the mask logits of the step's own (training-mode) forward instead of running the simplifier again:
    # the same image only while the simplifier has no training-only layers besides its sampling.
    from simplebits_audit.simplification.common import round_8bit
    from simplebits_audit.simplification.learned import Simplifier

    torch.manual_seed(0)
    net = Simplifier(in_channels=3, binary=binary, mask_init=0.5).train()
    net.temperature = 0.3
    torch.nn.init.normal_(net.head.weight, std=0.5)  # logits that vary across the cells
    images = round_8bit(torch.rand(4, 3, 32, 32), False)
    _, mask_logits = net.simplify_with_logits(images)
    net.eval()
    assert torch.equal(net.from_logits(images, mask_logits.detach()), net(images))


def test_the_warm_up_charges_no_bits_while_the_simplifier_waits(data, monkeypatch):
    # Through the warm-up the bits term could only move the simplifier, whose gradients are dropped: it is not computed
    # (a trained classifier, so that the gate would charge most images if it were).
    classifier = testbeds.load_classifier(TESTBED)

    def charged() -> float:
        result = train_with_simplification(classifier, data, budget=0.3, warmup=0.9, epochs=1, cooldown=0, batch_size=16)
        return result.history[-1]["train_charged"]

    assert charged() == 0.0
    monkeypatch.setattr(joint, "FREEZE_IDLE_SIMPLIFIER", False)  # then the warm-up's gradients reach AdamW's moments: charged
    assert charged() > 0.5


def test_a_budget_run_resumes_with_its_lambda(data, val, tmp_path, monkeypatch):
    options = {"budget": 0.3, "val_data": val, "seed": 1, "warmup": 0.0, **FAST}
    straight = train_with_simplification(fresh(), data, **options)
    ckpt = tmp_path / "budget.ckpt"
    with interrupted_at(monkeypatch, 6):
        train_with_simplification(fresh(), data, checkpoint=ckpt, **options)
    resumed = train_with_simplification(fresh(), data, checkpoint=ckpt, **options)
    assert resumed.lam == straight.lam and _lams(resumed) == _lams(straight)
    for k, v in straight.simplifier.state_dict().items():
        assert torch.equal(v, resumed.simplifier.state_dict()[k]), k
    with pytest.raises(ValueError, match="checkpoint"):  # another budget is another run
        train_with_simplification(fresh(), data, checkpoint=ckpt, **{**options, "budget": 0.5})


def test_budget_results_save_load_and_name_their_runs(data, val, tmp_path):
    curve = tradeoff(lambda: build_architecture("smallcnn", 10), data, budgets=[1.0, 0.3], val_data=val, directory=tmp_path,
                     epochs=1, batch_size=32)
    assert list(curve.results) == ["budget-1", "budget-0.3"] and curve.reference()["budget"] == 1.0
    assert (tmp_path / "budget-0.3" / "history.json").is_file()
    loaded = TrainingResult.load(tmp_path / "budget-0.3", build_architecture("smallcnn", 10))
    assert loaded.budget == 0.3 and loaded.lam == curve.results["budget-0.3"].lam


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"lam": -1.0}, "lam"),
        ({"lam": float("nan")}, "lam"),
        ({"lam": 1.0, "epochs": 0}, "epochs"),
        ({"lam": 1.0, "batch_size": 1.5}, "batch_size"),
        ({"lam": 1.0, "lr": 0.0}, "lr"),
        ({"lam": 1.0, "margin": -2.0}, "margin"),
        ({"lam": 1.0, "warmup": 1.0}, "warmup"),
        ({"lam": 1.0, "cooldown": -1}, "cooldown"),
        ({"lam": 1.0, "cooldown": 0.2}, "cooldown"),  # epochs now, no longer a share of the steps
        ({"budget": 0.0}, "budget"),
        ({"budget": 1.5}, "budget"),
        ({"budget": True}, "budget"),
        ({"lam": 1.0, "budget": 0.3}, "budget"),
    ],
)
def test_bad_settings_are_refused_naming_the_argument(data, kwargs, argument):
    with pytest.raises(ValueError, match=f"^{argument}"):
        train_with_simplification(fresh(), data, **kwargs)


def test_bad_data_is_refused_before_training(data, val):
    with pytest.raises(ValueError, match="data"):
        train_with_simplification(fresh(), data.images, lam=1.0)  # no labels
    with pytest.raises(ValueError, match="data"):
        train_with_simplification(fresh(), (data.images, data.labels + 10), lam=1.0)  # labels beyond the classifier's outputs
    with pytest.raises(ValueError, match="val_data"):
        train_with_simplification(fresh(), data, lam=1.0, val_data=(val[0][:, :, :16, :16], val[1]))
    with pytest.raises(ValueError, match="val_data"):
        train_with_simplification(fresh(), data, lam=1.0, val_data=(val[0], val[1][:3]))
    with pytest.raises(TypeError, match="classifier"):
        train_with_simplification(lambda x: x, data, lam=1.0)


def test_save_and_load_round_trip(data, val, tmp_path):
    result = train_with_simplification(fresh(), data, lam=1.0, val_data=val, epochs=1, batch_size=16)
    result.save(tmp_path / "run")
    loaded = TrainingResult.load(tmp_path / "run", build_architecture("smallcnn", 10))
    assert loaded.lam == 1.0 and loaded.history == json.loads(json.dumps(result.history))
    assert torch.equal(loaded.predict(val[0]), result.predict(val[0]))
    with pytest.raises(ValueError, match="classifier"):
        TrainingResult.load(tmp_path / "run", build_architecture("smallcnn", 3))
    with pytest.raises(ValueError, match="directory"):
        TrainingResult.load(tmp_path / "nothing", build_architecture("smallcnn", 10))


def test_tradeoff_runs_each_lambda_once_and_reloads_finished_ones(data, val, tmp_path, monkeypatch):
    curve = tradeoff(
        lambda: build_architecture("smallcnn", 10), data, [0.0, 2.0], val_data=val, directory=tmp_path, epochs=1, batch_size=16
    )
    assert [p["lam"] for p in curve.points] == [0.0, 2.0] and curve.reference()["lam"] == 0.0
    assert (tmp_path / "lam-0" / "history.json").is_file() and (tmp_path / "lam-2" / "simplifier.pt").is_file()
    best = curve.simplest_within(1.0)  # every point is within 100 points: the one with the fewest bits
    assert best["val_bits_kept"] == min(p["val_bits_kept"] for p in curve.points)
    monkeypatch.setattr(joint, "train_with_simplification", lambda *a, **k: pytest.fail("retrained a finished lambda"))
    again = tradeoff(
        lambda: build_architecture("smallcnn", 10), data, [0.0, 2.0], val_data=val, directory=tmp_path, epochs=1, batch_size=16
    )
    assert again.points == curve.points
    assert list(again.results) == ["lam-0", "lam-2"]
    assert not any(p.requires_grad for p in again.results["lam-2"].classifier.parameters())
    with pytest.raises(ValueError, match="directory"):  # other settings: the finished runs are not silently reused
        tradeoff(lambda: build_architecture("smallcnn", 10), data, [0.0, 2.0], val_data=val, directory=tmp_path, epochs=1, batch_size=8)
    with pytest.raises(ValueError, match="^lam"):
        tradeoff(fresh, data, [1.0, 1.0000001], val_data=val)  # one run folder for both
    with pytest.raises(ValueError, match="^budget"):
        tradeoff(fresh, data, [1.0], budgets=[0.3], val_data=val)
    with pytest.raises(ValueError, match="^budget"):
        tradeoff(fresh, data, budgets=[0.3, 0.0], val_data=val)
    with pytest.raises(ValueError, match="val_data"):
        tradeoff(fresh, data, [1.0], val_data=None)
    with pytest.raises(TypeError, match="unknown"):
        tradeoff(fresh, data, [1.0], val_data=val, steps=3)


def test_build_architecture_names_the_argument():
    assert build_architecture("resnet18", 4)(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    assert build_architecture("torchvision.models:resnet18", 5).eval()(torch.rand(1, 3, 32, 32)).shape == (1, 5)
    for arch, match in (("nope", "arch"), ("smallcnn", "divisible"), ("no.such.module:f", "import")):
        with pytest.raises(ValueError, match=match):
            build_architecture(arch, 10, size=30)


@pytest.mark.slow
@pytest.mark.integration
def test_cli_train_writes_models_curve_and_report_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["--quiet", "train", TESTBED, "--lam", "0,1", "--out", str(out), "--epochs", "1", "--batch-size", "16",
            "--testbed-n", "48", "--val-n", "24"]
    res = run_cli(*args, env=ENV)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "bits kept" in res.stdout and "report:" in res.stdout
    record = json.loads((out / "tradeoff.json").read_text())
    assert [p["lam"] for p in record["points"]] == [0.0, 1.0] and record["has_masks"]
    for p in record["points"]:
        assert 0 < p["webp_kept"] <= 1.5 and 0 <= p["bits_inside_mask"] <= 1 and p["inside_ratio"] > 0
    for lam in ("0", "1"):
        assert (out / f"lam-{lam}" / "classifier.pt").is_file() and (out / f"lam-{lam}" / "simplifier.pt").is_file()
    # Δ's standard error: paired over the same 24 validation images (test split, the job's seed + 1), 0 for the reference itself
    val = testbeds.load(TESTBED, "test", n=24, seed=1)
    right = {lam: TrainingResult.load(out / f"lam-{lam}", build_architecture("smallcnn", 10)).score(val.images, val.labels)
             for lam in ("0", "1")}
    assert record["points"][0]["val_delta_se"] == 0.0
    d = right["1"]["accuracy_simplified"] - right["0"]["accuracy_simplified"]
    assert record["points"][1]["val_delta_se"] == pytest.approx(float(d.std() / 24**0.5), abs=1e-6)
    assert float(right["1"]["accuracy_simplified"].mean()) == pytest.approx(record["points"][1]["val_accuracy_simplified"], abs=1e-6)
    assert "± " in res.stdout
    html = (out / "report.html").read_text()
    assert "tradeoff-curve" in html and "Simplified validation images" in html and "Δ ± s.e." in html
    stamp = (out / "lam-1" / "classifier.pt").stat().st_mtime_ns
    res = run_cli(*args, env=ENV)  # resumes: nothing retrained
    assert res.returncode == 0 and (out / "lam-1" / "classifier.pt").stat().st_mtime_ns == stamp
    res = run_cli("--quiet", "train", TESTBED, "--lam", "0,2", "--out", str(out), "--epochs", "2", env=ENV)
    assert res.returncode == 2 and "other settings" in res.stderr
    (out / "report.html").unlink()
    res = run_cli("report", str(out), env=ENV)
    assert res.returncode == 0 and (out / "report.html").is_file()
    bad_options = ((["--lam", "0,-1"], "lam"), (["--lam", "x"], "lam"), (["--arch", "nope"], "arch"),
                   (["--reference", "noise"], "reference"))
    for bad, word in bad_options:
        res = run_cli("train", TESTBED, "--out", str(tmp_path / "bad"), "--testbed-n", "16", "--val-n", "8", *bad, env=ENV)
        assert res.returncode == 2 and word in res.stderr, res.stderr


def test_the_train_job_gives_its_simplifiers_the_reference_and_resumes_only_with_it(tmp_path):
    # TrainOptions.reference: every run's new simplifier blends towards it; a folder trained with one is not resumed with another.
    from simplebits_audit.jobs.train import train_job

    out = tmp_path / "run"
    small = {"epochs": 1, "batch_size": 16, "testbed_n": 32, "val_n": 16}
    train_job(TESTBED, out, budgets="0.3", reference="mosaic", **small)
    assert json.loads((out / "budget-0.3" / "history.json").read_text())["settings"]["simplifier"]["reference"] == "mosaic"
    with pytest.raises(ValueError, match="reference"):
        train_job(TESTBED, out, budgets="0.3", **small)
    default = tmp_path / "default"
    train_job(TESTBED, default, budgets="0.3", **small)
    stamp = (default / "budget-0.3" / "classifier.pt").stat().st_mtime_ns
    train_job(TESTBED, default, budgets="0.3", reference="auto", **small)  # the default named: the same runs, reloaded
    # "auto" is resolved for the data's size (the mean at 32 px): the folder and each run name what they ran, and
    # naming what it resolves to reloads too
    assert json.loads((default / "budget-0.3" / "history.json").read_text())["settings"]["simplifier"]["reference"] == "mean"
    assert json.loads((default / "train.json").read_text())["reference"] == "mean"
    train_job(TESTBED, default, budgets="0.3", reference="mean", **small)
    # a folder written before the reference was resolved saved None for the flat mean, the default then: it reloads
    settings = json.loads((default / "train.json").read_text())
    (default / "train.json").write_text(json.dumps({**settings, "reference": None}))
    train_job(TESTBED, default, budgets="0.3", **small)
    assert (default / "budget-0.3" / "classifier.pt").stat().st_mtime_ns == stamp


def test_training_resolves_the_auto_reference_for_the_image_size():
    # JOINT_SIMPLIFIER's "auto": the mosaic from 128 px a side, the mean below; an explicit reference is kept as given.
    from simplebits_audit.simplification.learned import Simplifier
    from simplebits_audit.training.joint import JOINT_SIMPLIFIER, joint_simplifier

    assert JOINT_SIMPLIFIER["reference"] == "auto"
    large, small = torch.zeros(2, 1, 128, 128), torch.zeros(2, 3, 64, 64)
    assert joint_simplifier(large).config["reference"] == "mosaic" and joint_simplifier(large).config["in_channels"] == 1
    assert joint_simplifier(small).config["reference"] == "mean" and joint_simplifier(small).config["binary"]
    assert joint_simplifier(large, reference="mean").config["reference"] == "mean"
    # a simplifier passed in with "auto" runs, and records, the resolved reference
    images = torch.rand(8, 1, 128, 128)
    passed = Simplifier(in_channels=1, binary=True, reference="auto")
    result = train_with_simplification(build_architecture("smallcnn", 2, 1, 128), (images, torch.arange(8) % 2), budget=0.5,
                                       simplifier=passed, epochs=1, batch_size=8)
    assert passed.config["reference"] == "mosaic" and result.settings["simplifier"]["reference"] == "mosaic"


def test_train_report_escapes_user_strings(tmp_path):
    from simplebits_audit.report.tradeoff import tradeoff_page

    record = {
        "settings": {"data": "<script>alert(1)</script>", "arch": "a&b", "lams": [0.0], "training_images": 1, "validation_images": 1},
        "points": [{"lam": 0.0, "val_accuracy_simplified": 0.5, "val_accuracy_original": 0.5, "val_bits_kept": 1.0, "webp_kept": 1.0}],
        "reference": 0.0,
        "simplest_within_2pt": 0.0,
        "has_masks": False,
    }
    html = tradeoff_page(record, {})
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # a partial record: a reference point without its validation accuracy gives "—", not an error
    record["points"].append({"lam": 1.0, "val_accuracy_simplified": 0.4, "val_bits_kept": 0.3, "webp_kept": 0.3})
    del record["points"][0]["val_accuracy_simplified"]
    assert "—" in tradeoff_page(record, {})


@pytest.mark.slow
@pytest.mark.integration
def test_torchrun_trains_each_budget_over_two_processes(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "simplebits_audit.cli.main",
               "--quiet", "train", TESTBED, "--budget", "1,0.3", "--epochs", "1", "--batch-size", "8", "--testbed-n", "32", "--val-n", "16",
               "--out", str(out)]
    res = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads((out / "tradeoff.json").read_text())
    assert record["settings"]["processes"] == 2 and [p["budget"] for p in record["points"]] == [1.0, 0.3]
    history = json.loads((out / "budget-0.3" / "history.json").read_text())
    # 32 images / (8 per step x 2 processes), for the epoch and each of the default cooldown's
    assert history["settings"]["world"] == 2 and history["history"][-1]["steps"] == 2 * (1 + joint.JOINT_DEFAULTS["cooldown"])
    assert history["settings"]["budget_offset"] <= 0  # the budget check ran (rank 0's offset, broadcast)


def test_paired_difference_is_the_mean_and_se_of_the_differences_and_refuses_one_image():
    from simplebits_audit.training.joint import paired_difference

    run, ref = torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    mean, se = paired_difference(run, ref)
    d = run - ref
    assert mean == pytest.approx(0.25) and se == pytest.approx(float(d.std() / 2))
    assert paired_difference(ref, ref) == (0.0, 0.0)
    with pytest.raises(ValueError, match="N >= 2"):
        paired_difference(run[:1], ref[:1])
    with pytest.raises(ValueError, match="same images"):
        paired_difference(run, ref[:3])


def test_a_folder_whose_images_changed_is_refused_not_resumed_with_its_old_runs(tmp_path):
    # train.json named the folder only: changed images of the same names reloaded the finished runs, silently
    from PIL import Image

    from simplebits_audit.jobs.train import train_job

    data = testbeds.load(TESTBED, "test", n=24, seed=0)
    for i, (image, label) in enumerate(zip(data.images, data.labels.tolist())):
        folder = tmp_path / "data" / f"class{label % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / f"{i:02d}.png")
    small = {"epochs": 1, "batch_size": 8, "val_n": 6, "budgets": "1"}
    train_job(tmp_path / "data", tmp_path / "run", **small)
    train_job(tmp_path / "data", tmp_path / "run", **small)  # the same images: resumed
    first = sorted((tmp_path / "data").rglob("*.png"))[0]
    Image.fromarray((255 - data.images[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(first)
    with pytest.raises(ValueError, match=r"out: .* other settings \(data_fingerprint\)"):
        train_job(tmp_path / "data", tmp_path / "run", **small)


def test_one_class_is_refused_by_name_for_training_and_condensation(tmp_path):
    from PIL import Image

    from simplebits_audit.jobs.condense import run_condense
    from simplebits_audit.jobs.train import train_job

    (tmp_path / "one" / "cat").mkdir(parents=True)
    for i in range(20):
        Image.new("RGB", (32, 32), (10 * i, 0, 0)).save(tmp_path / "one" / "cat" / f"{i}.png")
    with pytest.raises(ValueError, match=r"data: .* has one class; training a classifier needs at least two"):
        train_job(tmp_path / "one", tmp_path / "t", epochs=1, batch_size=4, val_n=4, budgets="1")
    with pytest.raises(ValueError, match=r"data: .* has one class \('cat'\); condensation needs at least two"):
        run_condense(tmp_path / "one", tmp_path / "c", images_per_class=1, outer_steps=1, n_models=1, epochs=1)
    assert not (tmp_path / "t").exists() and not (tmp_path / "c").exists()


def test_a_csv_labelled_by_class_names_trains_with_them_in_sorted_order(tmp_path):
    # train has no --labels (it defines the classes): it was refused, told to pass --labels
    from PIL import Image

    from simplebits_audit.jobs.sources import open_source
    from simplebits_audit.jobs.train import train_job

    data = testbeds.load(TESTBED, "test", n=20, seed=0)
    rows = []
    for i, (image, label) in enumerate(zip(data.images, data.labels.tolist())):
        Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{'zebra' if label % 2 else 'ant'}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    source = open_source(tmp_path / "list.csv", sorted_names=True)
    assert source.class_names == ["ant", "zebra"] and [it.label for it in source.items] == [v % 2 for v in data.labels.tolist()]
    with pytest.raises(ValueError, match="whose order cannot be guessed"):
        open_source(tmp_path / "list.csv")  # an audit explains a model: its class order must be given
    record = train_job(tmp_path / "list.csv", tmp_path / "run", epochs=1, batch_size=4, val_n=4, budgets="1")
    assert record["settings"]["class_names"] == ["ant", "zebra"]
