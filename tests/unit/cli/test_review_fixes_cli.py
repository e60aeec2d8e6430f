"""Review fixes: bad output paths, non-UTF-8 text files, --no-debug after the command, foreign checkpoints and
mixed image sizes each fail before any work, in one line that names the option or file."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from simplebits_audit._io import load_saved
from simplebits_audit.cli.main import hoist_global_options
from simplebits_audit.jobs import bits as bits_job
from simplebits_audit.jobs import simplifier as simplifier_job
from simplebits_audit.jobs.simplifier import SourceImages, check_files, train_simplifier_job
from simplebits_audit.jobs.sources import open_source
from simplebits_audit.preprocessing import Preprocessing, load_labels
from simplebits_audit.simplification.learned import Simplifier

from ...helpers import cli_in_process as cli


def _png(path, height, width):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (120, 60, 30)).save(path)
    return path


def _no_work(*args, **kwargs):
    raise AssertionError("the work started before the bad input was refused")


def test_bits_refuses_a_folder_or_a_non_png_out_before_any_work(tmp_path, capsys, monkeypatch):
    image = _png(tmp_path / "photo.png", 8, 8)
    folder = tmp_path / "folder"
    folder.mkdir()
    monkeypatch.setattr(bits_job, "encode", _no_work)
    monkeypatch.setattr(bits_job, "decode", _no_work)
    code, err = cli(capsys, "bits", str(image), "--encode", str(folder))
    assert code == 2 and err == [f"error: --encode: {str(folder)!r} is a folder; give a file name such as photo.sbits"]
    data = tmp_path / "photo.sbits"
    data.write_bytes(b"anything: the out is checked before the data is read")
    code, err = cli(capsys, "bits", "--decode", str(data), "--out", str(folder))
    assert code == 2 and err == [f"error: --out: expected a .png file name, got {str(folder)!r}"]
    code, err = cli(capsys, "bits", "--decode", str(data), "--out", str(tmp_path / "back.jpg"))
    assert code == 2 and err == [f"error: --out: expected a .png file name, got {str(tmp_path / 'back.jpg')!r}"]
    (tmp_path / "dir.png").mkdir()
    code, err = cli(capsys, "bits", "--decode", str(data), "--out", str(tmp_path / "dir.png"))
    assert code == 2 and err == [f"error: --out: {str(tmp_path / 'dir.png')!r} is a folder; give a file name such as restored.png"]
    assert list(folder.iterdir()) == [] and list((tmp_path / "dir.png").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "folder", "photo.png", "photo.sbits"]  # no temporary left


def test_a_non_utf8_labels_file_or_csv_is_named_in_one_line(tmp_path, capsys):
    image = _png(tmp_path / "img.png", 8, 8)
    with pytest.raises(ValueError, match=r"^labels: '.*img\.png' is not UTF-8 text \(byte 0x89 at offset 0\); save it as UTF-8$"):
        load_labels(image)
    code, err = cli(capsys, "explain", str(image), "--model", str(tmp_path / "missing.ts"), "--labels", str(image))
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: --labels: {str(image)!r} is not UTF-8 text"), err
    csv = tmp_path / "list.csv"
    csv.write_bytes(b"path,label\nimg.png,0\n" + b"x" * 9000 + b"\xff\xfe,1\n")  # past a text stream's first buffer
    with pytest.raises(ValueError, match=r"^data: '.*list\.csv' is not UTF-8 text \(byte 0xff at offset 9021\); save it as UTF-8$"):
        open_source(csv)
    csv.write_bytes(b"path,label\r\nimg.png,0\r\n")  # the CSV is still read as before
    assert [(it.id, it.label) for it in open_source(csv).items] == [("img.png", 0)]
    csv.write_bytes(b"\xef\xbb\xbfpath,label\r\nimg.png,0\r\n")  # a spreadsheet's byte-order mark: the header still recognised
    assert [(it.id, it.label) for it in open_source(csv).items] == [("img.png", 0)]


def test_no_debug_may_come_after_the_command(capsys):
    assert hoist_global_options(["estimators", "--no-debug"]) == ["--no-debug", "estimators"]
    code, err = cli(capsys, "estimators", "--no-debug")
    assert code == 0, err


def test_a_foreign_checkpoint_is_one_line_naming_the_option_without_torch_advice(tmp_path):
    pickled = tmp_path / "pickled.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a whole pickled module: weights-only loading refuses it
    for path in (pickled, _png(tmp_path / "img.png", 4, 4)):
        with pytest.raises(ValueError) as caught:
            load_saved(path, what="a simplifier written by Simplifier.save", missing="no file", version=1, key="state_dict",
                       name="simplifier")
        message = str(caught.value)
        assert message == (f"simplifier: {str(path)!r} is not a simplifier written by Simplifier.save "
                           "(UnpicklingError: not a weights-only checkpoint of this kind)")


def test_train_simplifier_refuses_mixed_image_sizes_before_training(tmp_path, capsys, monkeypatch):
    for i in range(3):
        _png(tmp_path / "data" / "a" / f"a{i}.png", 32, 32)
        _png(tmp_path / "data" / "b" / f"b{i}.png", 32, 32)
    _png(tmp_path / "data" / "b" / "zz_big.png", 48, 40)
    monkeypatch.setattr(simplifier_job, "train_simplifier", _no_work)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2))
    expected = (r"^data: images of different sizes in '.*data' \('a/a0\.png' 32 x 32, 'b/zz_big\.png' 48 x 40\); "
                r"give --size and --crop so that they agree$")
    with pytest.raises(ValueError, match=expected):
        train_simplifier_job(model, tmp_path / "data", tmp_path / "s.pt", held_out=0)
    assert not (tmp_path / "s.pt").exists() and not (tmp_path / "s.pt.ckpt").exists()
    # the size alone keeps each aspect ratio: still two sizes; a crop makes them agree
    with pytest.raises(ValueError, match=r"'b/zz_big\.png' 38 x 32\)"):
        check_files(open_source(tmp_path / "data", preprocessing=Preprocessing(size=32)))
    assert check_files(open_source(tmp_path / "data", preprocessing=Preprocessing(size=32, crop=32))) == []
    (tmp_path / "data" / "b" / "zz_big.png").write_bytes(b"not an image")  # unreadable files are named, to leave out
    assert check_files(open_source(tmp_path / "data")) == ["b/zz_big.png"]


def test_train_simplifier_leaves_unreadable_images_out_and_says_so(tmp_path, capsys, monkeypatch):
    # it used to put the next readable image in an unreadable one's place (counted twice) and say nothing
    for i in range(4):
        _png(tmp_path / "data" / "a" / f"a{i}.png", 32, 32)
        _png(tmp_path / "data" / "b" / f"b{i}.png", 32, 32)
    (tmp_path / "data" / "a" / "a1.png").write_bytes(b"not an image")
    whole = (tmp_path / "data" / "b" / "b2.png").read_bytes()
    (tmp_path / "data" / "b" / "b2.png").write_bytes(whole[: len(whole) // 2])  # a readable header, a truncated image
    seen = {}

    def _training(model, data, **kwargs):  # what train_simplifier is given, then a simplifier without training
        seen["ids"] = [it.id for it in data.items]
        seen["images"] = [data[i] for i in range(len(data))]
        simplifier = Simplifier(in_channels=3)
        simplifier.card.update(held_out={"images": 1, "top1_kept": 1.0, "bits_kept": 1.0}, steps=0, training_seconds=0)
        return simplifier

    monkeypatch.setattr(simplifier_job, "train_simplifier", _training)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2))
    simplifier = train_simplifier_job(model, tmp_path / "data", tmp_path / "s.pt", held_out=0)
    assert "a/a1.png" not in seen["ids"] and len(seen["ids"]) == 7
    assert simplifier.card["skipped_images"] == {"count": 2, "first": "a/a1.png", "left_out": 1, "replaced_in_batches": 1}
    assert Simplifier.load(tmp_path / "s.pt").card["skipped_images"]["count"] == 2
    # the truncated one is read as its successor, and recorded
    source = open_source(tmp_path / "data")
    images = SourceImages(source, [it for it in source.items if it.id in ("b/b2.png", "b/b3.png")])
    assert torch.equal(images[0], images[1]) and images.replaced == {"b/b2.png"}
    # the command says it on stderr, even with --quiet
    code, err = cli(capsys, "--quiet", "train-simplifier", str(tmp_path / "data"), "--model", "testbed:stripes",
                    "--out", str(tmp_path / "c.pt"), "--held-out", "0")
    assert code == 0, err
    assert [line for line in err if line.startswith("warning: ")] == [
        "warning: 2 image(s) could not be read (1 left out, 1 replaced in their batches by the next image), e.g. a/a1.png "
        "(the simplifier's card: skipped_images)"], err


@pytest.mark.parametrize("val_n", ["0", "-3"])
def test_train_refuses_no_validation_images(tmp_path, capsys, val_n):
    """``--val-n 0`` once became the default 500, silently."""
    code, err = cli(capsys, "train", "stripes", "--val-n", val_n, "--testbed-n", "64", "--out", str(tmp_path / "run"))
    assert code == 2 and err == [f"error: --val-n: expected at least 1 validation image, got {val_n}"]
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_job_refuses_a_folder_holding_another_jobs_results(tmp_path, capsys):
    """``explain`` into an audit's folder replaced the audit's report.html."""
    from simplebits_audit.results import AUDIT_RESULTS_FILE

    out = tmp_path / "audit"
    out.mkdir()
    (out / AUDIT_RESULTS_FILE).write_text("")
    image = _png(tmp_path / "photo.png", 32, 32)
    code, err = cli(capsys, "explain", str(image), "--model", "testbed:stripes", "--out", str(out))
    assert code == 2 and err == [f"error: --out: {str(out)!r} holds the results of `simplebits audit`; give another folder"]
    assert sorted(p.name for p in out.iterdir()) == [AUDIT_RESULTS_FILE]


def test_testbed_n_below_one_is_named_as_such(tmp_path, capsys):
    code, err = cli(capsys, "audit", "stripes", "--model", "testbed:stripes", "--testbed-n", "0", "--out", str(tmp_path / "a"))
    assert code == 2 and err == ["error: --testbed-n: expected at least 1 image, got 0"]


@pytest.mark.parametrize("argv, debug", [(["--debug", "x"], True), (["--debug", "x", "--no-debug"], False), (["--no-debug"], False),
                                         (["--no-debug", "x", "--debug"], True), (["x"], False)])
def test_the_last_debug_flag_wins(argv, debug):
    from simplebits_audit.cli.main import _asked_for_debug

    assert _asked_for_debug(argv) is debug


@pytest.mark.parametrize(("args", "flag"), [
    (["explain", "IMAGE", "--model", "testbed:stripes", "--batch-size", "0"], "--batch-size"),
    (["explain", "IMAGE", "--model", "testbed:stripes", "--steps", "0"], "--steps"),
    (["condense", "testbed:stripes", "--ipc", "0"], "--ipc"),  # the library's images_per_class
    (["condense", "testbed:stripes", "--test", "nope"], "--test"),  # the library's test_data
    (["audit", "testbed:stripes", "--model", "testbed:stripes", "--explain", "foo"], "--explain"),
    (["train", "testbed:stripes", "--budget", "2"], "--budget"),
    (["explain", "IMAGE", "--model", "testbed:stripes", "--estimator", "nosuch"], "--estimator"),  # the library's name_or_path
    (["explain", "IMAGE", "--model", "testbed:stripes", "--engine", "nosuch"], "--engine"),  # parameterization
    (["explain", "IMAGE", "--model", "testbed:stripes", "--target", "0", "--target-name", "vertical"], "--target and --target-name"),
    (["explain", "IMAGE", "--model", "testbed:stripes", "--simplifier", "nosuch.pt"], "--simplifier"),  # the file's path
    (["bits", "--decode", "IMAGE"], "--decode"),  # the codec's data
    (["condense", "testbed:stripes", "--test", "DIR"], "--test"),  # a folder that is no ImageFolder: the library's test_data
])
def test_cli_errors_name_the_flag_not_the_python_parameter(tmp_path, capsys, args, flag):
    image = str(_png(tmp_path / "x.png", 32, 32))
    out = tmp_path / ("out.png" if args[0] == "bits" else "out")
    (tmp_path / "empty").mkdir()
    code, err = cli(capsys, *[{"IMAGE": image, "DIR": str(tmp_path / "empty")}.get(a, a) for a in args], "--out", str(out))
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {flag}: "), err
    assert not out.exists()


def test_flag_message_leaves_other_messages_alone():
    from simplebits_audit.cli.main import flag_message

    assert flag_message("batch_size: expected a positive number", ["explain", "x.png", "--batch-size", "0"]) == (
        "--batch-size: expected a positive number")
    assert flag_message("batch_size: expected a positive number", ["explain", "x.png", "--batch-size=0"]) == (
        "--batch-size: expected a positive number")
    # an option the user did not type is not blamed (class names from the data's folders, not --labels)
    assert flag_message("class_names: 3 class names", ["audit", "val/", "--model", "m.ts"]) == "class_names: 3 class names"
    assert flag_message("class_names: 3 class names", ["audit", "val/", "--labels", "l.txt"]) == "--labels: 3 class names"
    assert flag_message("data: 'nope' does not exist", ["condense", "nope"]) == "data: 'nope' does not exist"  # a positional
    assert flag_message("batch_size: expected a positive number", ["bits", "x.png"]) == "batch_size: expected a positive number"
    assert flag_message("not a parameter: at all", ["explain"]) == "not a parameter: at all"
    # the library's names for what the user typed, and an option to add that was not typed, are written as the flags
    assert flag_message("mean and std: give both or neither", ["explain", "x.png", "--mean", "0.5"]) == (
        "--mean and --std: give both or neither")
    assert flag_message("forward_func: the logits do not depend on the image", ["explain", "x.png", "--model", "m.ts"]) == (
        "--model: the logits do not depend on the image")
    assert flag_message("weights: resnet18 builds an architecture", ["explain", "x.png", "--model", "resnet18"]) == (
        "--weights: resnet18 builds an architecture")
    assert flag_message("method_options: 'gradcam' is not among the baselines", ["explain", "x.png", "--gradcam-layer", "l"]) == (
        "--gradcam-layer: 'gradcam' is not among the baselines")
    # method_options also carries --engine (compare): not blamed on --gradcam-layer unless that was typed
    assert flag_message("method_options: 'simplebits' is not among the methods", ["compare", "x.png", "--engine", "factorised"]) == (
        "method_options: 'simplebits' is not among the methods")


@pytest.mark.parametrize(("args", "expected"), [
    (["--threshold", "1.5", "--head", "sigmoid"], "--threshold"),
    (["--head", "nosuch"], "--head"),
    (["--steps", "abc"], "--steps"),
    (["--nope"], "No such option: --nope"),
])
def test_usage_errors_are_one_line_too(tmp_path, capsys, args, expected):
    image = str(_png(tmp_path / "x.png", 32, 32))
    code, err = cli(capsys, "explain", image, "--model", "testbed:stripes", *args, "--out", str(tmp_path / "out"))
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert err[0].endswith("(see simplebits explain --help)") and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "work", "written"), [
    (["explain", "IMAGE", "--model", "testbed:stripes"], "simplebits_audit.jobs.explain.preflight", "sub"),
    (["compare", "IMAGE", "--model", "testbed:stripes"], "simplebits_audit.jobs.comparison.preflight", "sub"),
    (["audit", "stripes", "--model", "testbed:stripes"], "simplebits_audit.jobs.audit.preflight", "sub"),
    (["train", "stripes"], "simplebits_audit.jobs.train.open_source", "sub"),
    (["condense", "stripes"], "simplebits_audit.jobs.condense.open_source", "sub"),
    (["train-simplifier", "stripes", "--model", "testbed:stripes"], "simplebits_audit.jobs.simplifier.open_source", "s.pt"),
    (["train-estimator", "IMAGEDIR", "--steps", "1"], "simplebits_audit.photos.image_files", "e.pt"),
    (["bits", "IMAGE", "--encode"], "simplebits_audit.jobs.bits.encode", "x.sbits"),
])
def test_an_out_under_a_file_is_refused_before_any_work(tmp_path, capsys, monkeypatch, args, work, written):
    image = str(_png(tmp_path / "x.png", 32, 32))
    (tmp_path / "afile").write_text("a file, not a folder")
    monkeypatch.setattr(work, _no_work)
    out = tmp_path / "afile" / written
    flag = "--encode" if args[0] == "bits" else "--out"
    line = [{"IMAGE": image, "IMAGEDIR": str(tmp_path)}.get(a, a) for a in args] + ([] if flag == "--encode" else ["--out"])
    code, err = cli(capsys, *line, str(out))
    assert code == 2 and err == [f"error: {flag}: {str(tmp_path / 'afile')!r} is a file, so {str(out)!r} cannot be written"], err


def test_condense_with_more_class_names_than_classes_writes_nothing(tmp_path, capsys):
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\n")
    code, err = cli(capsys, "condense", "stripes", "--ipc", "1", "--labels", str(labels), "--out", str(tmp_path / "out"))
    assert code == 2 and len(err) == 1 and "no training images of class(es) ['c']" in err[0], err
    assert not (tmp_path / "out").exists()


def test_warnings_on_the_command_line_are_one_line_in_flags(tmp_path, capsys, monkeypatch):
    # they were Python's two-line warnings (a source path, a code line) naming library options the command does not have
    import warnings

    for i in range(2):
        _png(tmp_path / "data" / "a" / f"a{i}.png", 32, 32)
        _png(tmp_path / "data" / "b" / f"b{i}.png", 32, 32)

    def _training(model, data, **kwargs):
        warnings.warn("lam: a library warning naming an option", stacklevel=2)
        simplifier = Simplifier(in_channels=3)
        simplifier.card.update(held_out={"images": 2, "top1_kept": 0.5, "bits_kept": 0.03}, steps=0, training_seconds=0)
        return simplifier

    monkeypatch.setattr(simplifier_job, "train_simplifier", _training)
    code, err = cli(capsys, "--quiet", "train-simplifier", str(tmp_path / "data"), "--model", "testbed:stripes",
                    "--out", str(tmp_path / "c.pt"), "--held-out", "0")
    assert code == 0, err
    assert err == ["warning: --lam: a library warning naming an option",
                   "warning: the simplifier keeps the model's answer on only 50% of the scored images; explanations fall back "
                   "towards the original for the others. A smaller --lam or a larger --margin keeps more"], err
    assert warnings.showwarning.__module__ == "warnings"  # Python's own display is back after the command


def test_train_simplifier_steps_0_is_refused_in_the_command_s_terms(tmp_path, capsys, monkeypatch):
    # the library's message told the user to pass simplifier= and order_steps, which the command does not take
    monkeypatch.setattr(simplifier_job, "train_simplifier", _no_work)
    code, err = cli(capsys, "train-simplifier", "stripes", "--model", "testbed:stripes", "--out", str(tmp_path / "s.pt"), "--steps", "0")
    assert code == 2 and err == ["error: --steps: expected a positive integer, got 0"], err


def test_train_simplifier_s_low_kept_warning_is_said_once_in_flags(tmp_path, capsys, monkeypatch):
    # the real library warning (every simplifier counts as low here), not a copy of its text
    from simplebits_audit.training import simplifier as training_simplifier

    monkeypatch.setattr(training_simplifier, "LOW_KEPT", 1.01)
    code, err = cli(capsys, "--quiet", "train-simplifier", "stripes", "--model", "testbed:stripes", "--testbed-n", "16",
                    "--steps", "2", "--order-steps", "0", "--batch-size", "4", "--out", str(tmp_path / "s.pt"))
    assert code == 0, err
    assert len(err) == 1 and err[0].startswith("warning: the simplifier keeps the model's answer on only ") and "--lam" in err[0], err


def test_labels_that_name_some_folders_but_not_all_are_refused(tmp_path):
    # they were applied to the sorted folders by position: every coffee/ image was labelled "cat"
    for folder in ("astronaut", "chelsea", "coffee", "rocket"):
        _png(tmp_path / "data" / folder / "0.png", 8, 8)
    with pytest.raises(ValueError, match=r"^data: class folders \['chelsea'\] are not among the class names \(--labels\), "
                                         r"while \['astronaut', 'coffee', 'rocket'\] are; name every folder"):
        open_source(tmp_path / "data", class_names=["astronaut", "coffee", "cat", "rocket"])
    # every folder named: by name, in the given order; none named: the sorted folders in order, as before
    source = open_source(tmp_path / "data", class_names=["rocket", "coffee", "chelsea", "astronaut"])
    assert {it.id: it.label for it in source.items} == {"astronaut/0.png": 3, "chelsea/0.png": 2, "coffee/0.png": 1, "rocket/0.png": 0}
    source = open_source(tmp_path / "data", class_names=["a", "b", "c", "d"])
    assert [it.label for it in source.items] == [0, 1, 2, 3]


def test_an_audit_of_a_folder_without_labels_says_the_class_order_it_used(tmp_path, capsys):
    # the sorted folders are the classes (torchvision's rule): a model trained in another order looked wrong, silently
    import sys

    from simplebits_audit.cli.main import main

    for folder in ("zeta", "alpha"):
        _png(tmp_path / "data" / folder / "0.png", 32, 32)
    argv, sys.argv = sys.argv, ["simplebits", "audit", str(tmp_path / "data"), "--model", "testbed:stripes", "--limit", "1",
                                "--steps", "2", "--out", str(tmp_path / "out")]
    try:
        main()
    finally:
        sys.argv = argv
    out = capsys.readouterr().out
    assert "classes from the folders, in sorted order (--labels names them otherwise): 0 alpha, 1 zeta" in " ".join(out.split()), out


@pytest.mark.parametrize("command", ["audit", "explain"])
def test_a_learned_simplifier_with_another_engine_is_refused_before_any_work(tmp_path, capsys, monkeypatch, command):
    # an audit predicted every image, then failed naming a library parameter (or, with nothing selected, accepted it silently)
    from simplebits_audit.jobs import audit as audit_job

    monkeypatch.setattr(audit_job, "_predict", _no_work)
    _png(tmp_path / "data" / "a" / "0.png", 32, 32)
    _png(tmp_path / "data" / "b" / "0.png", 32, 32)
    simplifier = tmp_path / "s.pt"
    Simplifier(in_channels=3).save(simplifier)
    data = str(tmp_path / "data") if command == "audit" else str(tmp_path / "data" / "a" / "0.png")
    code, err = cli(capsys, "--quiet", command, data, "--model", "testbed:stripes", "--simplifier", str(simplifier),
                    "--engine", "factorised", "--out", str(tmp_path / "out"))
    assert code == 2 and err == ["error: --simplifier: a learned simplifier predicts a mask; it cannot run parameterization="
                                 "'factorised' (--engine factorised): drop one of them"], err
    assert not (tmp_path / "out").exists()


def test_an_interrupted_command_says_so_and_exits_130(tmp_path, capsys, monkeypatch):
    # typer returned 130 instead of raising outside standalone mode: Ctrl-C or SIGTERM ended a run with exit code 0, silently
    def _interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # what a training run raises after saving its checkpoint on Ctrl-C or SIGTERM

    monkeypatch.setattr(simplifier_job, "train_simplifier", _interrupted)
    code, err = cli(capsys, "train-simplifier", "stripes", "--model", "testbed:stripes", "--out", str(tmp_path / "s.pt"))
    assert code == 130 and err[-1].startswith("interrupted ("), err


def test_an_audit_with_an_auto_simplifier_prints_its_held_out_scores(tmp_path, capsys, monkeypatch):
    # they were only in the simplifier's card; train-simplifier prints them
    import sys

    from simplebits_audit.cli.main import main
    from simplebits_audit.jobs import audit as audit_job

    def _trained(model, source, path, **kwargs):  # a simplifier without training, with the card training would write
        simplifier = Simplifier(in_channels=3)
        simplifier.card.update(held_out={"images": 6, "top1_kept": 0.5, "bits_kept": 0.25})
        simplifier.save(path)
        return simplifier

    monkeypatch.setattr(audit_job, "train_simplifier_job", _trained)
    argv, sys.argv = sys.argv, ["simplebits", "audit", "stripes", "--model", "testbed:stripes", "--testbed-n", "8", "--limit", "1",
                                "--select", "all", "--simplifier", "auto", "--out", str(tmp_path / "out")]
    try:
        main()
    finally:
        sys.argv = argv
    out = " ".join(capsys.readouterr().out.split())
    assert f"learned simplifier ({tmp_path / 'out' / 'simplifier.pt'}): 6 held-out images, answers kept 50.0%, bits kept 0.250" in out


def test_an_audit_that_explains_nothing_says_so_instead_of_zeros(tmp_path, capsys):
    # it printed "0 explanations, kept 0%, bits/dim 0.000 -> 0.000"
    import sys

    from simplebits_audit.cli.main import main

    argv, sys.argv = sys.argv, ["simplebits", "audit", "stripes", "--model", "testbed:stripes", "--testbed-n", "4", "--steps", "2",
                                "--out", str(tmp_path / "out")]  # the stripes classifier gets these 4 right: none misclassified
    try:
        main()
    finally:
        sys.argv = argv
    out = " ".join(capsys.readouterr().out.split())
    assert "accuracy 100.0%; nothing selected to explain (--select all explains every image)" in out and "kept 0%" not in out
