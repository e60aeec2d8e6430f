"""Training with simplification on sigmoid heads: label rows (multi-label) and single-logit binary classifiers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from simplebits_audit import testbeds
from simplebits_audit.models import build_architecture
from simplebits_audit.simplification.heads import head_of_labels, label_accuracy, label_loss, label_margin
from simplebits_audit.simplification.learned import Simplifier
from simplebits_audit.training import condense
from simplebits_audit.training.joint import TrainingResult, evaluate_joint, score_joint, train_with_simplification

FAST = {"epochs": 1, "batch_size": 16, "cooldown": 0}


@pytest.fixture(scope="module")
def rows():
    """``digits-stripes``: a row of two labels (digit, stripes) per image."""
    d = testbeds.load("digits-stripes", "train", n=48, seed=3)
    return d.images, d.labels


def fresh(outputs: int, channels: int = 3, size: int = 32) -> nn.Module:
    torch.manual_seed(0)
    return build_architecture("smallcnn", outputs, channels, size)


def test_the_head_follows_from_the_labels_and_the_outputs():
    assert head_of_labels(torch.tensor([[0, 1], [1, 1]]), 2) == "sigmoid"
    assert head_of_labels(torch.tensor([0, 1, 1]), 1) == "sigmoid"  # one logit, binary labels
    assert head_of_labels(torch.tensor([0, 1, 1]), 2) == "softmax"


def test_label_terms_by_hand():
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    rows = torch.tensor([[1, 0], [1, 0]])
    # BCE summed over the labels: -log s(2) - log s(1) for the first image, -log s(0.5) - log s(-3) for the second.
    s = torch.sigmoid
    expected = torch.stack([-torch.log(s(torch.tensor(2.0))) - torch.log(s(torch.tensor(1.0))),
                            -torch.log(s(torch.tensor(0.5))) - torch.log(s(torch.tensor(-3.0)))])
    assert torch.allclose(label_loss(logits, rows, "sigmoid"), expected)
    # The weakest label's signed logit: min(2, 1) = 1; min(0.5, -3) = -3.
    assert torch.allclose(label_margin(logits, rows, "sigmoid"), torch.tensor([1.0, -3.0]))
    assert torch.equal(label_accuracy(logits, rows, "sigmoid"), torch.tensor([1.0, 0.5]))


def test_one_sigmoid_logit_means_what_two_softmax_logits_do():
    # sigmoid(z) is softmax([0, z])[1]: the loss, the margin and the accuracy must agree between the two heads.
    z = torch.tensor([[1.5], [-0.7], [0.2], [-4.0]])
    y = torch.tensor([1, 1, 0, 0])
    two = torch.cat([torch.zeros_like(z), z], 1)
    assert torch.allclose(label_loss(z, y, "sigmoid"), label_loss(two, y, "softmax"))
    assert torch.allclose(label_margin(z, y, "sigmoid"), label_margin(two, y, "softmax"))
    assert torch.equal(label_accuracy(z, y, "sigmoid"), label_accuracy(two, y, "softmax"))


class _Fixed(nn.Module):
    """Logits fixed per image (looked up by the image's first pixel): a classifier whose answers are known."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = (x[:, 0, 0, 0] * 255).round().long()
        return self.logits[index] * self.scale


def test_validation_accuracy_is_the_mean_per_label_accuracy():
    n = 4
    images = torch.zeros(n, 3, 16, 16)
    images[:, 0, 0, 0] = torch.arange(n) / 255  # each image says which logits it gets
    logits = torch.tensor([[3.0, -3.0], [3.0, 3.0], [-3.0, -3.0], [-3.0, 3.0]])
    rows = torch.tensor([[1, 0], [1, 0], [1, 0], [1, 0]])  # right on 2, 1, 1, 0 labels of 2
    simplifier = Simplifier(in_channels=3, mask_size=16, mask_init=0.999).eval()  # keeps every pixel
    scores = evaluate_joint(_Fixed(logits), simplifier, images, rows, _estimator())
    assert scores["val_accuracy_original"] == pytest.approx((2 + 1 + 1 + 0) / 8)
    # per image, as a paired comparison of two runs needs it: the share of each image's labels answered right
    per_image = score_joint(_Fixed(logits), simplifier, images, rows, _estimator())
    assert torch.equal(per_image["accuracy_original"], torch.tensor([1.0, 0.5, 0.5, 0.0]))
    assert all(v.shape == (n,) for v in per_image.values())


def _estimator():
    from simplebits_audit.estimators import resolve_estimator

    return resolve_estimator(None)


def test_label_rows_train_a_sigmoid_head_that_predicts_rows(rows, tmp_path):
    images, labels = rows
    result = train_with_simplification(fresh(2), (images, labels), budget=0.3, val_data=(images[:16], labels[:16]), **FAST)
    assert result.settings["head"] == "sigmoid" and result.settings["n_classes"] == 2
    assert 0 <= result.final["val_accuracy_simplified"] <= 1
    predicted = result.predict(images[:5])
    assert predicted.shape == (5, 2) and set(predicted.unique().tolist()) <= {0, 1}
    result.save(tmp_path / "run")
    loaded = TrainingResult.load(tmp_path / "run", build_architecture("smallcnn", 2))
    assert torch.equal(loaded.predict(images[:5]), predicted)


class _Constant(nn.Module):
    """The same logits for every image (times a trainable scale, so that there is something to train)."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1) * self.scale


@pytest.mark.parametrize(("row", "charged"), [([1, 0], 1.0), ([1, 1], 0.0)])
def test_the_gate_charges_only_images_whose_every_label_is_right(rows, row, charged):
    # Logits (+8, -8): label 0 is answered "on", label 1 "off". Row (1, 0): both right, every image charged. Row (1, 1):
    # label 1 is wrong by 8 nats, so no image is (a gate on the best label, or on the mean, would charge them).
    images = rows[0]
    labels = torch.tensor(row).expand(len(images), -1).clone()
    result = train_with_simplification(_Constant([8.0, -8.0]), (images, labels), lam=1.0, warmup=0.0, lr=1e-6, **FAST)
    assert result.history[-1]["train_charged"] == charged


def test_one_logit_with_binary_labels_is_a_sigmoid_head_that_predicts_like_its_labels():
    d = testbeds.load("radiograph", "train", n=16, seed=0)
    result = train_with_simplification(fresh(1, 1, 128), (d.images, d.labels), lam=1.0, **FAST)
    assert result.settings["head"] == "sigmoid" and result.predict(d.images[:3]).shape == (3,)  # labels (N,): answers (N,)


class _Pairs(torch.utils.data.Dataset):
    """A plain map-style Dataset of (image, label): labels are seen one batch at a time."""

    def __init__(self, images: torch.Tensor, labels: list) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


def test_a_plain_dataset_is_checked_label_by_label(rows):
    images = rows[0][:8]
    soft = [torch.tensor([0.25, 0.75])] * 8  # soft labels were once cut to zeros and trained on silently
    with pytest.raises(ValueError, match="^data: labels must be whole numbers"):
        train_with_simplification(fresh(2), _Pairs(images, soft), batch_size=4, epochs=1, cooldown=0)
    with pytest.raises(ValueError, match="^val_data: label rows .* must hold 0 or 1"):
        train_with_simplification(fresh(2), _Pairs(images, [torch.tensor([1, 0])] * 8), val_data=_Pairs(images, soft), **FAST)
    # one-element tensors are class indices, as ints are
    result = train_with_simplification(fresh(10), _Pairs(images, [torch.tensor([i % 10]) for i in range(8)]), batch_size=4, epochs=1,
                                       cooldown=0, lam=1.0)
    assert result.settings["head"] == "softmax"
    # a bad label the first batch did not show is refused when its batch comes, not trained on
    labels = [torch.tensor(1)] * 7 + [torch.tensor(3)]
    with pytest.raises(ValueError, match="^data: a sigmoid head's labels must be 0 or 1"):
        train_with_simplification(fresh(1), _Pairs(images, labels), batch_size=8, epochs=3, cooldown=0, lam=1.0)


def test_the_learned_simplifier_refuses_label_rows(rows):
    from simplebits_audit.training import train_simplifier

    images, labels = rows
    with pytest.raises(ValueError, match="^data: label rows"):
        train_simplifier(testbeds.load_classifier("digits-stripes"), (images, labels), head="sigmoid", steps=1)


def test_labels_that_do_not_fit_the_head_are_refused_before_training(rows):
    images, labels = rows
    with pytest.raises(ValueError, match="^data: label rows of 2 labels for a classifier with 3 outputs"):
        train_with_simplification(fresh(3), (images, labels), **FAST)
    with pytest.raises(ValueError, match="^data: label rows .* must hold 0 or 1"):
        train_with_simplification(fresh(2), (images, labels * 2), **FAST)
    with pytest.raises(ValueError, match="^data: a sigmoid head's labels must be 0 or 1"):
        train_with_simplification(fresh(1), (images, torch.arange(len(images)) % 3), **FAST)
    with pytest.raises(ValueError, match="^val_data: label rows of 3 labels"):
        train_with_simplification(fresh(2), (images, labels), val_data=(images, torch.zeros(len(images), 3, dtype=torch.long)), **FAST)
    with pytest.raises(ValueError, match="^data: label rows"):  # condensation needs one class per image
        condense((images, labels), images_per_class=1, outer_steps=1)


def test_the_train_job_takes_multi_label_and_sigmoid_testbeds_from_their_train_split(tmp_path):
    from simplebits_audit.jobs.sources import open_source
    from simplebits_audit.jobs.train import train_job

    record = train_job("digits-stripes", tmp_path / "rows", epochs=1, testbed_n=32, val_n=8, budgets=[1.0], cooldown=0, n_examples=2)
    settings = record["settings"]
    assert settings["n_classes"] == 2 and settings["class_names"] == ["digit", "stripes"]
    assert settings["training_images"] == 32 and settings["validation_images"] == 8
    # radiograph once trained on a hold-out of its *test* split, whatever --testbed-n said
    record = train_job("radiograph", tmp_path / "xray", epochs=1, testbed_n=12, val_n=4, budgets=[1.0], cooldown=0, n_examples=1)
    assert record["settings"]["training_images"] == 12 and record["settings"]["validation_images"] == 4
    # ... under a description that named no split: the runs say which split they trained on, so an old one is never reused
    history = json.loads((tmp_path / "xray" / "budget-1" / "history.json").read_text())
    assert history["settings"]["data"] == "testbed:radiograph train split: 12 training images, seed 0"
    with pytest.raises(ValueError, match="^data: 'digits-stripes' is a multi-label testbed"):  # the audits take class indices
        open_source("digits-stripes")
