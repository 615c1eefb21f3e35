"""`llama3med.cli.common`: one exit code per kind of failure, bad input sharing click's usage-error code."""

from __future__ import annotations

import click
import pytest
import typer

from llama3med.cli.common import BAD_INPUT, RUNTIME_FAILURE, fail


def test_bad_input_exits_like_a_usage_error_and_runtime_failures_differ() -> None:
    assert BAD_INPUT == click.UsageError("x").exit_code == 2
    assert RUNTIME_FAILURE == 1


def test_fail_prints_one_error_line_and_exits_with_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as raised:
        raise fail("recipe.yaml: no such file", BAD_INPUT)
    assert raised.value.exit_code == BAD_INPUT
    assert capsys.readouterr().err.strip() == "error: recipe.yaml: no such file"
    assert fail("it broke").exit_code == RUNTIME_FAILURE
