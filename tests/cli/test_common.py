"""`llama3med.cli.common`: one exit code per kind of failure, bad input sharing click's usage-error code; a failure
is one `error:` line (a missing optional package names its extra), the traceback only with `--debug`; option
groups declared once for several commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import click
import pytest
import typer
from typer.testing import CliRunner

from llama3med.cli.common import (
    BAD_INPUT,
    RUNTIME_FAILURE,
    ErrorReportingGroup,
    describe_exception,
    fail,
    option_groups,
    set_debug,
)
from llama3med.extras import extras_by_package

runner = CliRunner(env={"COLUMNS": "300"})  # wide: rich's error panels do not wrap the messages


def test_bad_input_exits_like_a_usage_error_and_runtime_failures_differ() -> None:
    assert BAD_INPUT == click.UsageError("x").exit_code == 2
    assert RUNTIME_FAILURE == 1


def test_fail_prints_one_error_line_and_exits_with_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as raised:
        raise fail("recipe.yaml: no such file", BAD_INPUT)
    assert raised.value.exit_code == BAD_INPUT
    assert capsys.readouterr().err.strip() == "error: recipe.yaml: no such file"
    assert fail("it broke").exit_code == RUNTIME_FAILURE


def test_an_unexpected_exception_is_one_line_unless_debug() -> None:
    mini = typer.Typer(cls=ErrorReportingGroup)

    @mini.callback()
    def options(debug: bool = typer.Option(False, "--debug")) -> None:
        set_debug(debug)

    @mini.command()
    def broken() -> None:
        {}["missing"]

    result = runner.invoke(mini, ["broken"])
    assert result.exit_code == 1
    assert "error: KeyError: 'missing'" in result.output and "--debug" in result.output and "Traceback" not in result.output
    assert isinstance(runner.invoke(mini, ["--debug", "broken"]).exception, KeyError)


def test_missing_optional_modules_name_their_extra() -> None:
    assert extras_by_package()["deepspeed"] == ("gpu",) and extras_by_package()["fastapi"] == ("serve",)
    message = describe_exception(ModuleNotFoundError("No module named 'fastapi'", name="fastapi"))
    assert "`fastapi`" in message and "pip install 'llama3med[serve]'" in message
    assert "llama3med[eval]' or 'llama3med[instruct]" in describe_exception(ModuleNotFoundError("x", name="openai"))


@dataclass(frozen=True)
class Size:
    width: Annotated[int, typer.Option(min=1, help="Width in cells.")] = 3
    height: Annotated[int, typer.Option(help="Height in cells.")] = 2


def scale_option(scale: Annotated[int, typer.Option(help="Factor.")] = 1) -> int:
    return scale


@option_groups(size=Size, factor=scale_option)
def area(name: Annotated[str, typer.Argument()], size: Size, label: Annotated[str, typer.Option()] = "cells", *,
         factor: int) -> None:
    """Print the area."""
    typer.echo(f"{name}: {size.width * size.height * factor} {label}")


def test_option_groups_show_their_options_in_place_and_pass_what_the_group_builds() -> None:
    app = typer.Typer()
    app.command()(area)
    assert runner.invoke(app, ["box"]).output == "box: 6 cells\n"
    assert runner.invoke(app, ["box", "--width", "5", "--scale", "2", "--label", "m2"]).output == "box: 20 m2\n"
    assert runner.invoke(app, ["box", "--width", "0"]).exit_code == BAD_INPUT  # the group's option keeps its checks
    help_text = runner.invoke(app, ["--help"]).output
    assert "Print the area." in help_text
    order = [help_text.index(option) for option in ("--width", "--height", "--label", "--scale")]
    assert order == sorted(order)  # in the place of the parameter the group fills
    with pytest.raises(TypeError, match="has no parameter size to put option groups in"):
        option_groups(size=Size)(scale_option)
