"""Option groups in the command line (cli/groups.py): declared once, spliced into each command, built before it runs."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from simplebits_audit.cli import main as cli
from simplebits_audit.cli.groups import uses


def _size(size: int | None = typer.Option(None), crop: int | None = typer.Option(None)) -> tuple:
    if crop is not None and size is None:
        raise typer.BadParameter("needs --size", param_hint="--crop")
    return size, crop


def test_a_group_gives_its_options_where_its_keyword_stands_and_the_command_its_value():
    app = typer.Typer(add_completion=False)
    seen = {}

    @app.command()
    @uses(shape=_size)
    def show(name: str = typer.Argument(...), *, shape: tuple, loud: bool = typer.Option(False)) -> None:
        seen.update(name=name, shape=shape, loud=loud)

    command = typer.main.get_command(app)
    assert [p.name for p in command.params] == ["name", "size", "crop", "loud"]
    result = CliRunner().invoke(app, ["x", "--size", "8", "--crop", "4", "--loud"])
    assert result.exit_code == 0, result.output
    assert seen == {"name": "x", "shape": (8, 4), "loud": True}
    result = CliRunner().invoke(app, ["x", "--crop", "4"])
    assert result.exit_code == 2 and "--crop" in result.output


def test_an_option_declared_twice_or_a_missing_keyword_is_refused():
    with pytest.raises(TypeError, match=r"options \['size'\] are declared twice"):
        uses(shape=_size)(lambda *, shape, size=None: None)
    with pytest.raises(TypeError, match=r"no parameter for the group\(s\) \['shape'\]"):
        uses(shape=_size)(lambda *, size=None: None)


def test_the_shared_groups_stand_in_every_command_that_takes_them():
    commands = typer.main.get_command(cli.app).commands
    model = ["model", "weights", "trust_pickle", "num_classes"]
    preprocessing = ["size", "crop", "mean", "std", "preset", "grayscale"]
    for name in ("explain", "compare", "audit", "train-simplifier"):
        params = [p.name for p in commands[name].params]
        start = params.index("model")
        assert params[start : start + 4] == model, name
        start = params.index("size")
        assert params[start : start + 6] == preprocessing, name
        assert {"head", "threshold", "estimator"} <= set(params), name
    for name in ("explain", "compare", "audit"):
        assert {"steps", "gradcam_layer", "labels"} <= {p.name for p in commands[name].params}, name
    assert [p.name for p in commands["condense"].params if p.name in preprocessing] == ["size", "crop", "grayscale"]
