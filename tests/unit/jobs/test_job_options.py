"""The jobs' option groups (jobs/options.py): one object per group, fields as keywords, checks before any work, one output check."""

from __future__ import annotations

import json

import pytest

from simplebits_audit.jobs import ExplainOptions, ModelOptions, RunOptions, ScoringOptions, compare, explain_images, run_audit
from simplebits_audit.jobs.condense import run_condense
from simplebits_audit.jobs.options import CondenseOptions, TrainOptions, take_options
from simplebits_audit.jobs.train import train_job
from simplebits_audit.preprocessing import Preprocessing
from simplebits_audit.training import DEFAULT_BUDGETS, EVALUATE_DEFAULTS, JOINT_DEFAULTS
from simplebits_audit.training.condensation import condense_settings


def test_keywords_override_the_given_object_and_unknown_ones_are_refused():
    given = ModelOptions(head="sigmoid", threshold=0.3, model_name="m")
    model, run = take_options("job", {"threshold": 0.7, "seed": 4}, (ModelOptions, given), (RunOptions, None))
    assert model == ModelOptions(head="sigmoid", threshold=0.7, model_name="m") and run == RunOptions(seed=4)
    assert given.threshold == 0.3  # frozen: the caller's object is not changed
    with pytest.raises(TypeError, match=r"^stepz: not an option of job; its options: .*seed"):
        take_options("job", {"stepz": 3}, (ModelOptions, None), (RunOptions, None))
    with pytest.raises(TypeError, match=r"^run: expected a RunOptions, got str"):
        take_options("job", {}, (RunOptions, "cpu"))


def test_each_group_checks_itself_naming_the_field():
    assert ModelOptions(preprocessing=None).preprocessing == Preprocessing()
    with pytest.raises(ValueError, match="^head: "):
        ModelOptions(head="tanh")
    with pytest.raises(ValueError, match="^threshold: "):
        ModelOptions(head="sigmoid", threshold=1.0)
    with pytest.raises(ValueError, match="^attribution: "):
        ExplainOptions(attribution="heat")
    with pytest.raises(ValueError, match="^batch_size: "):
        ExplainOptions(batch_size=0)
    with pytest.raises(ValueError, match="^reference: "):
        ScoringOptions(reference="noise")
    assert ExplainOptions(baseline_options={"gradcam": {"layer": "l"}}, simplify_options={"steps": 2}).method_options() == {
        "gradcam": {"layer": "l"}, "simplebits": {"attribution": "auto", "steps": 2}}


def test_the_jobs_refuse_unknown_options_before_any_work(bright_dark_model, photos16, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(TypeError, match="^n_steps: not an option of explain_images"):
        explain_images(bright_dark_model, photos16[:1], out, n_steps=3)
    with pytest.raises(TypeError, match="^model_options: expected a ModelOptions"):
        run_audit(bright_dark_model, "stripes", out, model_options={"head": "sigmoid"})
    with pytest.raises(TypeError, match="^deletion_stepz: not an option of compare"):
        compare(bright_dark_model, photos16[:1], methods=["brightness"], deletion_stepz=3)
    with pytest.raises(ValueError, match="^bits_keep: "):
        compare(bright_dark_model, photos16[:1], methods=["brightness"], scoring=ScoringOptions(), bits_keep=2)
    assert not out.exists()


def test_an_object_and_its_fields_as_keywords_give_the_same_run(bright_dark_model, photos16, tmp_path):
    kw = explain_images(bright_dark_model, photos16[:2], tmp_path / "kw", estimator="analytic", simplify_options={"steps": 2}, seed=1,
                        class_names=["dark", "bright"])
    obj = explain_images(bright_dark_model, photos16[:2], tmp_path / "obj", model_options=ModelOptions(class_names=["dark", "bright"]),
                         explain_options=ExplainOptions(estimator="analytic", simplify_options={"steps": 2}), run=RunOptions(seed=1))
    strip = lambda path: {k: v for k, v in json.loads(path.read_text())["settings"].items() if k != "seconds_per_image"}  # noqa: E731
    assert strip(kw.results_path) == strip(obj.results_path)
    assert [r["bpd_after"] for r in kw.records] == [r["bpd_after"] for r in obj.records]


@pytest.mark.parametrize("job", [run_condense, train_job])
def test_every_folder_job_checks_its_output_through_the_shared_check(job, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    with pytest.raises(ValueError, match=r"^out: .* exists and is not a folder$"):
        job("stripes", taken)


def test_the_training_groups_read_their_defaults_from_the_training_layer_and_check_themselves():
    assert TrainOptions(lams="0, 1").lams == (0.0, 1.0) and TrainOptions().settings() == JOINT_DEFAULTS
    assert TrainOptions().budgets == DEFAULT_BUDGETS and TrainOptions().lams is None and TrainOptions(budgets="1,0.2").budgets == (1.0, 0.2)
    with pytest.raises(ValueError, match="^budget: "):
        TrainOptions(lams="0,1", budgets="0.3")
    assert TrainOptions(epochs=3).settings() == {**JOINT_DEFAULTS, "epochs": 3}
    assert CondenseOptions().settings(seed=2) == condense_settings(seed=2) and CondenseOptions().evaluation() == {
        k: EVALUATE_DEFAULTS[k] for k in ("n_models", "epochs")}
    assert CondenseOptions(images_per_class=2, arch="smallcnn").settings(seed=0) == condense_settings(images_per_class=2, arch="smallcnn")
    for group, field, value in ((TrainOptions, "lams", "0,x"), (TrainOptions, "budgets", "2"), (TrainOptions, "epochs", 0),
                                (TrainOptions, "budgets", "1,"), (TrainOptions, "budgets", "1,,0.3"),  # a value left out
                                (TrainOptions, "warmup", 1.0),
                                (CondenseOptions, "arch", "vgg"), (CondenseOptions, "n_models", 0), (CondenseOptions, "lam", -1.0)):
        with pytest.raises(ValueError, match=f"^{field.removesuffix('s') if field in ('lams', 'budgets') else field}: "):
            group(**{field: value})


@pytest.mark.parametrize("job, name", [(run_condense, "run_condense"), (train_job, "train_job")])
def test_the_training_jobs_take_their_groups_as_keywords_and_refuse_unknown_ones(job, name, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(TypeError, match=f"^epochz: not an option of {name}; its options: .*epochs.*seed"):
        job("stripes", out, epochz=2)
    with pytest.raises(ValueError, match="^epochs: "):  # a field as a keyword is checked as in its object
        job("stripes", out, epochs=0)
    with pytest.raises(TypeError, match="^run: expected a RunOptions"):
        job("stripes", out, run={"seed": 1})
    assert not out.exists()
