"""Output heads in the jobs: a single-logit (sigmoid) classifier is refused under softmax, explained and audited under sigmoid."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torch import nn

from simplebits_audit import testbeds
from simplebits_audit.jobs import compare, explain_images, preflight, run_audit
from simplebits_audit.jobs.answers import decide, decision_names, label_names
from simplebits_audit.photos import held_out_crops
from simplebits_audit.results import answer_before_after, explained_name, labels_on_before_after

from ...helpers import assert_unchanged, cli_in_process, snapshot

FAST = {"estimator": "analytic", "simplify_options": {"steps": 4}}


def _net(outputs: int) -> nn.Module:
    """A tiny CNN with ``outputs`` logits; the logits' scale spreads the sigmoid probabilities across the threshold."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, outputs))
    with torch.no_grad():
        net[-1].weight.mul_(40)
    return net.eval()


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return held_out_crops(6, size=16, seed=5)


@pytest.fixture(scope="module")
def binary(pixels) -> nn.Module:
    net = _net(1)
    with torch.no_grad():  # centre the logits on these images: both decisions occur
        net[-1].bias.sub_(net(pixels).median())
    return net


def test_one_logit_under_softmax_is_refused_naming_the_head(binary, pixels, tmp_path):
    expected = r"head='sigmoid' \(--head sigmoid\)"
    with pytest.raises(ValueError, match=expected):
        preflight(binary, pixels)
    with pytest.raises(ValueError, match=expected):
        explain_images(binary, pixels, tmp_path / "out", estimator="analytic")
    with pytest.raises(ValueError, match=expected):
        compare(binary, pixels, methods=["brightness"], estimator="analytic")
    assert not (tmp_path / "out").exists()
    checked = preflight(binary, pixels, head="sigmoid", class_names=["negative", "positive"], labels=[0, 1, 1, 0, 0, 1])
    assert checked.n_classes == 1 and checked.n_decisions == 2 and checked.head == "sigmoid"
    with pytest.raises(ValueError, match="threshold"):
        preflight(binary, pixels, head="sigmoid", threshold=1.5)
    with pytest.raises(ValueError, match="head: expected one of"):
        preflight(binary, pixels, head="tanh")


def test_decisions_under_each_head():
    logits = torch.tensor([[2.0], [-1.0], [0.0]])
    pred, conf = decide(logits, "sigmoid", 0.5)
    assert pred.tolist() == [1, 0, 1]
    assert conf.tolist() == pytest.approx([torch.sigmoid(torch.tensor(2.0)).item(), 1 - torch.sigmoid(torch.tensor(-1.0)).item(), 0.5])
    pred, conf = decide(torch.tensor([[0.0, 3.0, 1.0]]), "sigmoid")
    assert pred.tolist() == [1] and conf.item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    pred, conf = decide(torch.tensor([[0.0, 3.0, 1.0]]), "softmax")
    assert pred.tolist() == [1] and conf.item() == pytest.approx(torch.softmax(torch.tensor([0.0, 3.0, 1.0]), 0)[1].item())
    assert decision_names(None) == ["0", "1"] and decision_names(["cat"]) == ["not cat", "cat"]
    assert label_names(["negative", "positive"], 1) == ["positive"] and label_names(None, 3) == ["0", "1", "2"]


def test_binary_sigmoid_explain_records_per_label_probabilities(binary, pixels, tmp_path):
    before = snapshot(binary)
    names = ["negative", "positive"]
    labels = [0, 1, 1, 0, 0, 1]
    out = explain_images(binary, pixels, tmp_path / "out", head="sigmoid", class_names=names, labels=labels, **FAST)
    assert_unchanged(before, binary)
    p = torch.sigmoid(binary(pixels)[:, 0]).tolist()
    assert {r["pred_before_name"] for r in out.records} == set(names)  # both decisions occur
    for r, prob, label in zip(out.records, p, labels):
        assert r["head"] == "sigmoid" and r["threshold"] == 0.5
        (entry,) = r["labels"]
        assert entry["name"] == "positive" and entry["prob_before"] == pytest.approx(prob, abs=1e-3)
        assert entry["on_before"] == (prob >= 0.5) and r["on_before"] == (["positive"] if prob >= 0.5 else [])
        decision = int(prob >= 0.5)
        assert r["pred_before"] == decision and r["pred_before_name"] == names[decision] and r["target_name"] == names[decision]
        assert r["confidence"] == pytest.approx(max(prob, 1 - prob), abs=1e-3)
        assert r["label_name"] == names[label]
        assert r["kept"] == (r["pred_after"] == decision)
        assert [c for c, _, _ in r["top_before"]] == sorted((0, 1), key=lambda c: -(prob if c else 1 - prob))
    settings, records = (lambda d: (d["settings"], d["images"]))(json.loads(out.results_path.read_text()))
    assert settings["head"] == "sigmoid" and settings["threshold"] == 0.5 and settings["label_names"] == ["positive"]
    assert settings["simplify"]["head"] == "sigmoid"
    assert records[0]["labels"] == out.records[0]["labels"]
    html = out.report_path.read_text()
    assert "labels on (sigmoid p ≥ 0.5)" in html and "sigmoid head, threshold 0.5" in html


def test_multi_label_sigmoid_lists_every_label(pixels, tmp_path):
    net = _net(3)
    out = explain_images(net, pixels[:3], tmp_path / "out", head="sigmoid", threshold=0.3, class_names=["a", "b", "c"], **FAST)
    probs = torch.sigmoid(net(pixels[:3]))
    for r, p in zip(out.records, probs):
        assert [d["name"] for d in r["labels"]] == ["a", "b", "c"]
        assert [d["prob_before"] for d in r["labels"]] == pytest.approx(p.tolist(), abs=1e-3)
        assert r["on_before"] == [n for n, q in zip("abc", p.tolist()) if q >= 0.3]
        assert r["pred_before"] == int(p.argmax())  # the most probable label
        assert 0 <= r["prob_target_after"] <= 1


def test_binary_sigmoid_audit_predicts_the_decision(binary, pixels, tmp_path):
    data = tmp_path / "data"
    p = torch.sigmoid(binary(pixels)[:, 0])
    for i, image in enumerate(pixels):
        folder = data / ("positive" if i % 2 else "negative")  # labels that disagree with some decisions
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / f"img{i}.png")
    with pytest.raises(ValueError, match="explain: a single-logit"):
        run_audit(binary, data, tmp_path / "refused", explain="both", head="sigmoid", estimator="analytic")
    summary = run_audit(binary, data, tmp_path / "audit", select="all", head="sigmoid", estimator="analytic", simplify_options={"steps": 4})
    assert summary["class_names"] == ["negative", "positive"] and len(summary["confusion_matrix"]) == 2
    records = [json.loads(line) for line in (tmp_path / "audit" / "results.jsonl").read_text().splitlines()]
    decisions = {f"img{i}": int(q >= 0.5) for i, q in enumerate(p.tolist())}
    for r in records:
        stem = r["name"].rsplit("/", 1)[-1].split(".")[0]
        assert r["pred_before"] == decisions[stem] and r["labels"][0]["name"] == "positive"
    labels = [i % 2 for i in range(len(pixels))]
    assert summary["accuracy"] == pytest.approx(sum(int(decisions[f"img{i}"] == labels[i]) for i in range(len(pixels))) / len(pixels))
    settings = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert settings["head"] == "sigmoid" and settings["threshold"] == 0.5
    assert "labels on (sigmoid p" in (tmp_path / "audit" / "report.html").read_text()


def test_sigmoid_compare_runs_with_per_label_probabilities(binary, pixels):
    cmp = compare(binary, pixels, methods=["simplebits", "saliency"], head="sigmoid", estimator="analytic", infidelity_samples=0,
                  sensitivity_images=0, codecs=False, deletion_steps=4, method_options={"simplebits": {"steps": 4}})
    assert cmp.settings["head"] == "sigmoid"
    rows = {r["method"]: r for r in cmp.to_rows()}
    assert 0 <= rows["saliency"]["deletion_auc"] <= 1 and rows["simplebits"]["kept"] is not None
    assert cmp.results["simplebits"].settings["head"] == "sigmoid"


def test_cli_head_and_threshold_options(binary, pixels, tmp_path, capsys):
    model = tmp_path / "binary.ts"
    torch.jit.save(torch.jit.script(binary), str(model))
    image = tmp_path / "x.png"
    Image.fromarray((pixels[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(image)

    def cli(*args: str) -> tuple[int, list[str]]:
        return cli_in_process(capsys, "--quiet", *args)

    base = ["explain", str(image), "--model", str(model), "--estimator", "analytic", "--steps", "3"]
    code, err = cli(*base, "--out", str(tmp_path / "a"))
    assert code == 2 and len(err) == 1 and "--head sigmoid" in err[0], err
    code, err = cli(*base, "--out", str(tmp_path / "b"), "--threshold", "0.7")
    assert code == 2 and "--threshold" in " ".join(err) and "sigmoid" in " ".join(err)
    code, err = cli(*base, "--out", str(tmp_path / "c"), "--head", "sigmoid", "--threshold", "0.7")
    assert code == 0, err
    (record,) = json.loads((tmp_path / "c" / "results.json").read_text())["images"]
    assert record["threshold"] == 0.7 and len(record["labels"]) == 1


def test_cli_refuses_a_testbed_classifier_under_the_other_head(tmp_path, capsys):
    images = testbeds.load("digits-stripes", "test", n=1).images
    image = tmp_path / "x.png"
    Image.fromarray((images[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(image)
    base = ["--quiet", "explain", str(image), "--model", "testbed:digits-stripes", "--estimator", "analytic", "--steps", "2"]
    code, err = cli_in_process(capsys, *base, "--out", str(tmp_path / "a"))
    assert code != 0 and "--head sigmoid" in " ".join(err), err
    assert not (tmp_path / "a").exists()
    code, err = cli_in_process(capsys, *base, "--head", "sigmoid", "--out", str(tmp_path / "b"))
    assert code == 0, err
    # The summary table's answer under several labels is the set of labels on, not the most probable label.
    (record,) = json.loads((tmp_path / "b" / "results.json").read_text())["images"]
    assert answer_before_after(record) == labels_on_before_after(record) and labels_on_before_after(record).startswith("labels on ")
    assert answer_before_after({"pred_before_name": "cat", "pred_after_name": "dog"}) == "cat -> dog"
    # A testbed classifier declares its label names: records name "digit" and "stripes", not "0" and "1".
    assert [d["name"] for d in record["labels"]] == ["digit", "stripes"]
    # Without a target every label that was on was explained, not only the most probable one.
    assert record["on_before"] and record["kept_labels"] == record["on_before"]
    assert explained_name(record) == ", ".join(f"{n} (on)" for n in record["on_before"])
    code, err = cli_in_process(capsys, *base, "--head", "sigmoid", "--target-name", "stripes", "--out", str(tmp_path / "c"))
    assert code == 0, err
    (record,) = json.loads((tmp_path / "c" / "results.json").read_text())["images"]
    on = "on" if "stripes" in record["on_before"] else "off"
    assert record["target_name"] == "stripes" and record["kept_labels"] == ["stripes"] and explained_name(record) == f"stripes ({on})"
    html = (tmp_path / "c" / "report.html").read_text()
    assert f"stripes ({on})" in html
    # The report's prediction under several labels is the labels on, as in the terminal table.
    assert answer_before_after(record, "→") in html and answer_before_after(record, "→").startswith("labels on ")


def test_cli_trains_a_simplifier_on_a_multilabel_testbed(tmp_path, capsys, monkeypatch):
    # The simplifier keeps the model's own answers, so a testbed whose labels are rows is fine here
    # (the audit, which compares answers with labels, still refuses it).
    from simplebits_audit.cli.main import main

    out = tmp_path / "s.pt"
    monkeypatch.setattr("sys.argv", ["simplebits", "train-simplifier", "testbed:digits-stripes", "--model", "testbed:digits-stripes",
                                     "--head", "sigmoid", "--steps", "1", "--testbed-n", "16", "--batch-size", "8",
                                     "--estimator", "analytic", "--out", str(out)])
    main()
    assert "labels kept on their side" in " ".join(capsys.readouterr().out.split())  # not "top-1 kept" under a sigmoid head
    from simplebits_audit.simplification.learned import Simplifier

    card = Simplifier.load(out).card
    assert card["head"] == "sigmoid" and card["n_classes"] == 2 and card["held_out"]["images"] >= 1
    code, err = cli_in_process(capsys, "audit", "testbed:digits-stripes", "--model", "testbed:digits-stripes", "--head", "sigmoid",
                               "--out", str(tmp_path / "audit"))
    assert code == 2 and "multi-label testbed" in err[0]


def test_cli_explains_testbed_images_by_name(tmp_path, capsys):
    # testbed:NAME:INDEX is image INDEX of the test split, named and labelled as an audit names it.
    data = testbeds.load("stripes", "test")
    file = tmp_path / "x.png"
    Image.fromarray((data.images[7].permute(1, 2, 0) * 255).round().byte().numpy()).save(file)
    base = ["--quiet", "explain", "--model", "testbed:stripes", "--estimator", "analytic", "--steps", "2"]
    code, err = cli_in_process(capsys, *base, "testbed:stripes:3", str(file), "--out", str(tmp_path / "a"))
    assert code == 0, err
    first, second = json.loads((tmp_path / "a" / "results.json").read_text())["images"]
    assert first["name"] == "stripes-test-000003" and first["path"] is None
    assert second["name"] == "x.png" and second["path"] == str(file)
    assert first["label"] == int(data.labels[3]) and second["label"] is None  # a file's class is unknown, the testbed image's is not
    # the pixels are the testbed's own, as the file written from them
    from simplebits_audit.jobs.sources import load_image_arguments

    read = load_image_arguments(["testbed:stripes:7", file, "testbed:digits-stripes:0"])
    assert torch.equal(read.pixels[0], read.pixels[1]) and read.labels == [int(data.labels[7]), None, None]
    code, err = cli_in_process(capsys, *base, "testbed:stripes:3", "testbed:stripes:4", "--out", str(tmp_path / "b"))
    assert code == 0, err
    records = json.loads((tmp_path / "b" / "results.json").read_text())["images"]
    assert [r["label"] for r in records] == data.labels[3:5].tolist()  # all testbed images: their labels are known
    # ... in the model's classes only: a shortcut image's label is not a stripes class
    code, err = cli_in_process(capsys, *base, "testbed:shortcut:2", "--out", str(tmp_path / "d"))
    assert code == 0, err
    assert json.loads((tmp_path / "d" / "results.json").read_text())["images"][0]["label"] is None
    for arg, message in [("testbed:stripes", "testbed:NAME:INDEX"), ("testbed:stripes:1000", "from 0 to 999"),
                         ("testbed:nope:1", "unknown testbed 'nope'")]:
        code, err = cli_in_process(capsys, *base, arg, "--out", str(tmp_path / "c"))
        assert code == 2 and err[0].startswith("error: images: ") and message in err[0], err
    assert not (tmp_path / "c").exists()


def test_explain_says_when_the_target_was_not_the_prediction(tmp_path, capsys, monkeypatch):
    from simplebits_audit.cli.main import main

    image = "testbed:stripes:3"  # a horizontal grating, predicted horizontal
    args = ["explain", image, "--model", "testbed:stripes", "--estimator", "analytic", "--steps", "2"]
    for target, noted in [("vertical", True), ("horizontal", False)]:
        monkeypatch.setattr("sys.argv", ["simplebits", *args, "--target-name", target, "--out", str(tmp_path / target)])
        main()
        text = " ".join(capsys.readouterr().out.split())  # the console wraps lines
        assert (f"the target {target} was not the prediction" in text) is noted, text


def test_image_arguments_edge_cases(tmp_path, monkeypatch):
    from simplebits_audit.jobs.sources import load_image_arguments
    from simplebits_audit.preprocessing import Preprocessing

    image = testbeds.load("stripes", "test").images[3]
    monkeypatch.chdir(tmp_path)
    Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save("testbed:cat.png")
    read = load_image_arguments(iter(["testbed:cat.png", "testbed:stripes:3"]))  # a generator; an existing file stays a file
    assert read.paths == ["testbed:cat.png", None] and torch.equal(read.pixels[0], read.pixels[1])
    for arg, message in [("testbed:stripes:\u00b3", "testbed:NAME:INDEX"), ("testbed:stripes:\u0661", "testbed:NAME:INDEX")]:
        with pytest.raises(ValueError, match=f"^images: .*{message}"):
            load_image_arguments([arg])
    with pytest.raises(ValueError, match=r"^images: the images have different shapes \(C, H, W\) \[\(1, 128, 128\), \(3, 32, 32\)\]$"):
        load_image_arguments(["testbed:radiograph:0", "testbed:stripes:0"])  # no file: no --size hint
    with pytest.raises(ValueError, match="^images: testbed images are used as they are, in colour; --grayscale"):
        load_image_arguments(["testbed:stripes:0"], Preprocessing(grayscale=True))


def test_a_multilabel_audit_keeps_every_label_and_scores_no_accuracy(tmp_path):
    # it explained (and kept) only the most probable label while reporting "kept", and scored that label against one CSV label
    data = testbeds.load("digits-stripes", "test", n=4, seed=3)
    rows = []
    for i, image in enumerate(data.images):
        Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(tmp_path / f"m{i}.png")
        rows.append(f"m{i}.png,{i % 2}")
    (tmp_path / "list.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    model = testbeds.load_classifier("digits-stripes")
    for refused, message in (({"select": "misclassified"}, "^select: 'misclassified' compares one predicted class"),
                             ({"select": "all", "explain": "both"}, "^explain: a multi-label")):
        with pytest.raises(ValueError, match=message):
            run_audit(model, tmp_path / "list.csv", tmp_path / "refused", head="sigmoid", estimator="analytic", **refused)
    summary = run_audit(model, tmp_path / "list.csv", tmp_path / "audit", select="all", head="sigmoid", estimator="analytic",
                        simplify_options={"steps": 3})
    assert summary["accuracy"] is None and summary["confusion_matrix"] is None
    records = [json.loads(line) for line in (tmp_path / "audit" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 and any(len(r["on_before"]) > 1 for r in records)
    for r in records:  # every label that was on was explained, as explain does without a target
        assert r["kept_labels"] == r["on_before"], r
    # a folder of the earlier behaviour (the top label only, no such setting) is not resumed into with mixed meanings
    settings_file = tmp_path / "audit" / "audit.json"
    settings = json.loads(settings_file.read_text())
    assert settings.pop("kept_labels") == "every label on its side"
    settings_file.write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=r"other settings \(kept_labels\)"):
        run_audit(model, tmp_path / "list.csv", tmp_path / "audit", select="all", head="sigmoid", estimator="analytic",
                  simplify_options={"steps": 3})
    # no multi-label record is scored as misclassified in the which-information split or the gallery
    from simplebits_audit.report.information import error_type

    assert {error_type(r) for r in records if len(r["labels"]) > 1} == {"unlabelled"}
