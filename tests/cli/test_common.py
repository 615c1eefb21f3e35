"""`llama3med.cli.common`: one exit code per kind of failure, bad input sharing click's usage-error code; a failure
is one `error:` line (a missing optional package names its extra), the traceback only with `--debug`."""

from __future__ import annotations

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
