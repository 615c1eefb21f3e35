"""`llama3med instruct` (`llama3med.cli.instruct_commands`): its commands' errors, the group's registration,
`estimate` and `medpix-context`. Runs against a scripted LLM server are in tests/instruct."""

from __future__ import annotations

import importlib.util
import json

import pytest
import typer
from typer.testing import CliRunner

from llama3med.cli.instruct_commands import instruct_app, register
from llama3med.instruct.records import read_records


def test_cli_errors_are_clear(tmp_path):
    runner = CliRunner()
    result = runner.invoke(instruct_app, ["generate", "--input", str(tmp_path / "none.jsonl"), "--out", str(tmp_path), "-g", "openai:m@http://h/v1"])
    assert result.exit_code == 2 and "none.jsonl: input file not found" in " ".join(result.output.split())
    result = runner.invoke(instruct_app, ["generate", "--input", "x", "--out", str(tmp_path), "-g", "bard:x"])
    assert result.exit_code == 2 and "generator 'bard:x'" in " ".join(result.output.split())
    result = runner.invoke(instruct_app, ["stats", "--out", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "output folder not found" in " ".join(result.output.split())


def test_register_adds_the_instruct_group():
    app = typer.Typer()

    @app.command()
    def other() -> None:
        """Another command."""

    register(app)
    result = CliRunner().invoke(app, ["instruct", "--help"])
    assert result.exit_code == 0 and "generate" in result.output and "stats" in result.output


@pytest.mark.skipif(importlib.util.find_spec("llama_models") is None, reason="Llama-3 tokenizer not installed")
def test_estimate_command_with_the_llama3_tokenizer(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "a", "image": "a.png", "caption": "Axial CT shows a liver lesion."}) + "\n")
    result = CliRunner().invoke(
        instruct_app, ["estimate", "--input", str(path), "-g", "anthropic-batch:claude-3-haiku-20240307", "--kind", "open_qa"]
    )
    assert result.exit_code == 0, result.output
    assert "open_qa" in result.output and "claude-3-haiku-20240307" in result.output and "$" in result.output


def test_medpix_context_command_writes_the_rows_and_reports_the_counts(tmp_path):
    captions = tmp_path / "captions.jsonl"
    captions.write_text(
        json.dumps({"id": "a", "image": "a.png", "caption": "CT.", "case_id": "MPX1"}) + "\n"
        + json.dumps({"id": "b", "image": "b.png", "caption": "MRI."}) + "\n"
    )
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps({"U_id": "MPX1", "Case": {"History": "Cough.", "Findings": "A  mass."}}) + "\n")
    out = tmp_path / "out" / "with_context.jsonl"
    result = CliRunner().invoke(instruct_app, ["medpix-context", "--captions", str(captions), "--cases", str(cases), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{out}: 2 rows, 1 with context" in " ".join(result.output.split())
    assert [r.context for r in read_records(out)] == ["History: Cough.\nFindings: A mass.", None]
    missing = CliRunner().invoke(
        instruct_app, ["medpix-context", "--captions", str(captions), "--cases", str(tmp_path / "none.jsonl"), "--out", str(out)]
    )
    assert missing.exit_code == 2 and "none.jsonl" in missing.output


def test_estimate_refuses_a_bad_generator_before_loading_a_tokenizer(tmp_path):
    result = CliRunner().invoke(instruct_app, ["estimate", "--input", str(tmp_path / "c.jsonl"), "-g", "bard:x"])
    assert result.exit_code == 2 and "generator 'bard:x'" in " ".join(result.output.split())
