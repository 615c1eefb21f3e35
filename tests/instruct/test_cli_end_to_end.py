"""`instruct generate` then `instruct stats` end to end, against the scripted server: failures exit 1 and a rerun
finishes them; the report's counts, lengths and usage match the stored results."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llama3med.cli.instruct_commands import instruct_app
from llama3med.instruct.store import load_contents

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


def test_cli_generate_then_stats(tmp_path, write_records, wire_server, api_keys):
    server = wire_server(script={"r01": ["leak"], "r02": ["500", "500", "500"]})
    out = tmp_path / "out"
    args = [
        "generate", "--input", str(write_records(4)), "--out", str(out),  # with the progress bar
        "-g", f"anthropic:claude-3-opus-20240229@{server.url}", "--kind", "open_qa", "--kind", "detailed_description",
        "--max-attempts", "3", "--retry-base-delay", "0.01",
    ]
    result = CliRunner().invoke(instruct_app, args)
    assert result.exit_code == 1  # failures remain
    output = " ".join(result.output.split())  # rich wraps at the terminal width
    assert "error: 2 request(s) failed after every retry (see failures.jsonl); rerun the same command" in output

    stats = CliRunner().invoke(instruct_app, ["stats", "--out", str(out), "--json"])
    assert stats.exit_code == 0, stats.output
    report = json.loads(stats.output)
    generator = "anthropic:claude-3-opus-20240229"
    assert report["accepted"] == {generator: {"detailed_description": 2, "open_qa": 2}}
    assert report["rejected"] == {generator: {"detailed_description": 1, "open_qa": 1}}
    assert report["rejected_by_reason"] == {"source_leak": 1, "malformed": 1}  # a description with a question
    assert report["pending_failures"] == 2
    assert report["turns"]["open_qa"]["max"] == 1
    contents = load_contents(out)
    words = sorted(len(t["value"].split()) for e in contents.accepted if e["kind"] == "open_qa" for t in e["conversations"] if t["from"] == "gpt")
    assert report["answer_words"]["open_qa"]["min"] == words[0] and report["answer_words"]["open_qa"]["max"] == words[-1]
    usage = report["usage"][generator]
    stored = contents.accepted + contents.rejected
    assert usage["results"] == 6 and usage["input_tokens"] == sum(e["usage"]["input_tokens"] for e in stored)
    assert usage["cost_usd"] == pytest.approx((usage["input_tokens"] * 15 + usage["output_tokens"] * 75) / 1e6)

    table = CliRunner().invoke(instruct_app, ["stats", "--out", str(out)])
    assert "source_leak" in table.output and "Rejections by reason" in table.output

    result = CliRunner().invoke(instruct_app, args)  # rerun finishes the failed ones
    assert result.exit_code == 0, result.output
    assert len(load_contents(out).done) == 8
