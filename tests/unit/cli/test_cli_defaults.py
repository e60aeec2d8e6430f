"""Defaults in the command line are the library's: help texts read them from the library, and options left out are not passed.

A help text states a library default as ``(default VALUE`` (a colon, ``(default: the prediction)``,
marks prose about a default the library does not hold as a value). Every such statement must come
from the library (``{library:KEY}`` in the source text) and equal what an independent reading of
the library gives here; every option the user leaves out must reach the library as None or not
at all, so that the library's default applies.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re

import pytest
import typer
from typer.testing import CliRunner

from simplebits_audit.cli import main as cli
from simplebits_audit.cli import options as cli_options
from simplebits_audit.estimators.training import TrainingConfig, train_estimator
from simplebits_audit.jobs import explain_images, run_audit
from simplebits_audit.jobs.comparison import compare, compare_files
from simplebits_audit.jobs.condense import run_condense
from simplebits_audit.jobs.demo import run_demo
from simplebits_audit.jobs.options import CondenseOptions, ExplainOptions, ModelOptions, TrainOptions, default
from simplebits_audit.jobs.simplifier import train_simplifier_job
from simplebits_audit.jobs.train import VAL_IMAGES, train_job
from simplebits_audit.simplification import simplify
from simplebits_audit.simplification.engine import ENGINE_DEFAULTS
from simplebits_audit.training import (
    CONDENSE_DEFAULTS,
    DEFAULT_BUDGETS,
    EVALUATE_DEFAULTS,
    JOINT_DEFAULTS,
    TRAINING_DEFAULTS,
    train_simplifier,
)
from simplebits_audit.training.condensation import condense_settings
from simplebits_audit.training.joint import JOINT_SIMPLIFIER
from simplebits_audit.training.simplifier import ORDER_SHARE


def _default(function, parameter):
    return inspect.signature(function).parameters[parameter].default


def _config(name):
    return next(f.default for f in dataclasses.fields(TrainingConfig) if f.name == name)


#: what each option's help must state, read from the library independently of the CLI's own table
SIMPLIFY_STEPS = ENGINE_DEFAULTS[_default(simplify, "parameterization")]["steps"]
HEAD = {"--head": _default(simplify, "head"), "--threshold": _default(simplify, "threshold")}
ENGINE = {"--engine": _default(simplify, "parameterization")}
EXPECTED = {
    "explain": {"--steps": SIMPLIFY_STEPS, "--objective": _default(simplify, "objective"),
                "--attribution": default(ExplainOptions, "attribution"),
                "--batch-size": default(ExplainOptions, "batch_size"), **HEAD, **ENGINE},
    "compare": {"--steps": SIMPLIFY_STEPS, "--randomisation": _default(compare_files, "randomisation"), **HEAD, **ENGINE},
    "audit": {"--steps": SIMPLIFY_STEPS, "--select": _default(run_audit, "select"), "--explain": _default(run_audit, "explain"),
              "--attribution": default(ExplainOptions, "attribution"), "--batch-size": default(ExplainOptions, "batch_size"),
              "--predict-batch-size": _default(run_audit, "predict_batch_size"), **HEAD, **ENGINE},
    "train-simplifier": {"--lam": TRAINING_DEFAULTS["lam"], "--margin": TRAINING_DEFAULTS["margin"],
                         "--deletion": TRAINING_DEFAULTS["deletion"], "--order-steps": ORDER_SHARE,  # a share of --steps
                         "--steps": TRAINING_DEFAULTS["steps"],
                         "--batch-size": TRAINING_DEFAULTS["batch_size"], "--held-out": _default(train_simplifier_job, "held_out"), **HEAD},
    "train-estimator": {"--arch": _config("arch"), "--steps": _config("steps"), "--batch-size": _config("batch_size"),
                        "--crop-size": _config("crop_size"), "--lr": _config("lr"), "--checkpoint-every": _config("checkpoint_every")},
    "train": {"--arch": default(TrainOptions, "arch"), "--budget": DEFAULT_BUDGETS, "--epochs": JOINT_DEFAULTS["epochs"],
              "--batch-size": JOINT_DEFAULTS["batch_size"], "--lr": JOINT_DEFAULTS["lr"], "--margin": JOINT_DEFAULTS["margin"],
              "--cooldown": JOINT_DEFAULTS["cooldown"], "--reference": JOINT_SIMPLIFIER["reference"],
              "--val-share": _default(train_job, "val_share"), "--val-n": VAL_IMAGES},
    "condense": {"--ipc": _default(condense_settings, "images_per_class"), "--lam": CONDENSE_DEFAULTS["lam"],
                 "--outer-steps": CONDENSE_DEFAULTS["outer_steps"], "--near": CONDENSE_DEFAULTS["near"],
                 "--arch": _default(condense_settings, "arch"),
                 "--held-out": _default(run_condense, "held_out"), "--baselines": default(CondenseOptions, "baselines"),
                 "--n-models": EVALUATE_DEFAULTS["n_models"], "--epochs": EVALUATE_DEFAULTS["epochs"]},
    "demo": {"--out": _default(run_demo, "out")},
}

#: "(default VALUE" (not "(default: prose") and the value
STATED = re.compile(r"\(default (?!:)([^\s);]+)")
#: what a hand-written default looks like: "(default" not followed by {library:...}, or "default" and a number anywhere
WRITTEN = re.compile(r"\(default (?!:|\{library:)|\bdefault:? \d")


def _written(value) -> str:
    """A library value as a help text writes it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(_written(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _commands() -> dict[str, typer.core.TyperCommand]:
    return typer.main.get_command(cli.app).commands


def _options(command) -> dict[str, object]:
    """Option name -> click parameter (the first long name)."""
    return {next((o for o in p.opts if o.startswith("--")), p.opts[0]): p for p in command.params if p.param_type_name == "option"}


def test_the_cli_states_the_engine_default_of_steps():
    """The bug of finding 9: ``--steps`` said "default 60" while the default mask engine runs 30."""
    assert SIMPLIFY_STEPS == 30
    for name in ("explain", "compare", "audit"):
        assert f"default {SIMPLIFY_STEPS}" in cli.resolve_help(_options(_commands()[name])["--steps"].help)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_stated_default_is_read_from_the_library_and_right(name):
    options = _options(_commands()[name])
    stated = {}
    for option, param in options.items():
        raw = param.help or ""
        # a value after "default" is never written by hand: it comes from {library:KEY}
        assert not WRITTEN.search(raw), (name, option, raw)
        found = [v.rstrip(",.") for v in STATED.findall(cli.resolve_help(raw))]
        if found:
            stated[option] = found
    assert set(stated) == set(EXPECTED[name]), (name, set(stated) ^ set(EXPECTED[name]))
    for option, value in EXPECTED[name].items():
        assert stated[option] == [_written(value)], (name, option, stated[option], value)


def test_the_rendered_help_shows_the_library_values():
    runner = CliRunner()
    for name, option, text in (("explain", "--steps", f"default {SIMPLIFY_STEPS}"),
                               ("train-simplifier", "--steps", f"default {TRAINING_DEFAULTS['steps']}"),
                               ("explain", "--head", "[softmax|sigmoid]"),
                               ("condense", "--epochs", f"default {EVALUATE_DEFAULTS['epochs']}")):
        result = runner.invoke(cli.app, [name, "--help"], env={"COLUMNS": "300", "TERMINAL_WIDTH": "300"}, terminal_width=300)
        assert result.exit_code == 0, result.output
        assert text in result.output and "{library:" not in result.output, (name, option)


def test_no_option_copies_a_library_default_as_its_own():
    """Options that stand for a library parameter default to None: a number here would be a second copy."""
    for name, command in _commands().items():
        for option, param in _options(command).items():
            value = param.default
            assert not (isinstance(value, (int, float)) and not isinstance(value, bool)), (name, option, value)
        for option in EXPECTED.get(name, {}):
            assert _options(command)[option].default is None, (name, option)


def test_the_jobs_head_defaults_are_the_core_ones():
    assert default(ModelOptions, "head") == _default(simplify, "head")
    assert default(ModelOptions, "threshold") == _default(simplify, "threshold")
    for function in (compare, train_simplifier):
        assert _default(function, "head") == _default(simplify, "head"), function.__name__
        assert _default(function, "threshold") == _default(simplify, "threshold"), function.__name__
    for function in (explain_images, run_audit, compare_files, train_simplifier_job):  # they take the head in their ModelOptions
        assert "model_options" in inspect.signature(function).parameters, function.__name__


class _Called(Exception):
    pass


@pytest.fixture
def calls(monkeypatch):
    """Every job the CLI calls is replaced by one that records its arguments and stops."""
    seen: dict[str, tuple[tuple, dict]] = {}

    def recorder(key):
        def record(*args, **kwargs):
            seen[key] = (args, kwargs)
            raise _Called
        return record

    for module, name in (("simplebits_audit.jobs", "explain_images"), ("simplebits_audit.jobs", "run_audit"),
                         ("simplebits_audit.jobs.comparison", "compare_files"),
                         ("simplebits_audit.jobs.simplifier", "train_simplifier_job"),
                         ("simplebits_audit.estimators.training", "train_estimator"), ("simplebits_audit.jobs.train", "train_job"),
                         ("simplebits_audit.jobs.condense", "run_condense"), ("simplebits_audit.jobs.demo", "run_demo")):
        # patched where the CLI looks it up: the module that defines it
        monkeypatch.setattr(importlib.import_module(module), name, recorder(name))
    monkeypatch.setattr(cli_options, "load_user_model", lambda *args, **kwargs: object())
    return seen


@pytest.mark.parametrize("args, job, absent, none", [
    (["explain", "x.png", "-m", "m.ts"], "explain_images", ["attribution", "batch_size", "head", "threshold"], []),
    (["compare", "x.png", "-m", "m.ts"], "compare_files", ["randomisation", "head", "threshold"], ["steps"]),
    (["audit", "data", "-m", "m.ts"], "run_audit",
     ["select", "explain", "attribution", "batch_size", "predict_batch_size", "head", "threshold"], []),
    (["train-simplifier", "data", "-m", "m.ts"], "train_simplifier_job",
     ["held_out", "head", "threshold"], ["lam", "margin", "deletion", "order_steps", "steps", "batch_size"]),
    (["train", "data"], "train_job", ["arch", "lams", "val_share"], ["epochs", "batch_size", "lr", "margin", "val_n", "reference"]),
    (["condense", "data"], "run_condense",
     ["images_per_class", "arch", "held_out", "baselines"], ["lam", "outer_steps", "n_models", "epochs"]),
    (["demo"], "run_demo", ["out"], []),
])
def test_options_left_out_reach_the_library_unset(calls, args, job, absent, none):
    result = CliRunner().invoke(cli.app, args)
    assert isinstance(result.exception, _Called), result.output
    _, kwargs = calls[job]
    assert not set(absent) & set(kwargs), (job, set(absent) & set(kwargs))
    groups = [v for v in kwargs.values() if dataclasses.is_dataclass(v)]
    passed = {**{f.name: getattr(g, f.name) for g in groups for f in dataclasses.fields(g)}, **kwargs}
    assert all(passed[k] is None for k in none), {k: passed[k] for k in none}
    # an option object the job is given holds its group's defaults for what the user left out
    for group in groups:
        for name in set(absent) & {f.name for f in dataclasses.fields(group)}:
            assert getattr(group, name) == default(type(group), name), (job, name)
    if "explain_options" in kwargs:
        assert kwargs["explain_options"].simplify_options == {}


def test_train_estimator_left_out_options_are_the_config_defaults(calls, tmp_path):
    result = CliRunner().invoke(cli.app, ["train-estimator", str(tmp_path), "--out", str(tmp_path / "e.pt")])
    assert isinstance(result.exception, _Called), result.output
    (_, _, config), _ = calls["train_estimator"]
    assert config == TrainingConfig(seed=0)
    assert train_estimator  # the real function is the one the CLI calls (patched here by name)


def test_given_options_are_passed_on(calls):
    result = CliRunner().invoke(cli.app, ["explain", "x.png", "-m", "m.ts", "--steps", "7", "--objective", "ce", "--batch-size", "3",
                                          "--head", "sigmoid", "--threshold", "0.3"])
    assert isinstance(result.exception, _Called), result.output
    _, kwargs = calls["explain_images"]
    explain, model = kwargs["explain_options"], kwargs["model_options"]
    assert explain.simplify_options == {"objective": "ce", "steps": 7} and explain.batch_size == 3
    assert model.head == "sigmoid" and model.threshold == 0.3
    result = CliRunner().invoke(cli.app, ["compare", "x.png", "-m", "m.ts", "--no-randomisation"])
    assert calls["compare_files"][1]["randomisation"] is False
    result = CliRunner().invoke(cli.app, ["train-simplifier", "data", "-m", "m.ts", "--deletion", "0.5", "--order-steps", "12"])
    assert calls["train_simplifier_job"][1]["deletion"] == 0.5 and calls["train_simplifier_job"][1]["order_steps"] == 12
    result = CliRunner().invoke(cli.app, ["explain", "x.png", "-m", "m.ts", "--head", "tanh"])
    assert result.exit_code == 2 and "--head" in result.output
