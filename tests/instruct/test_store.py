"""The crash-safe store, the stats report, prices, and the CLI."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from llama3med.cli.instruct_commands import instruct_app, register
from llama3med.instruct.pricing import PriceTable, PriceTableError
from llama3med.instruct.stats import Distribution
from llama3med.instruct.store import (
    CONVERSATIONS_FILE,
    JsonlAppender,
    OutputStore,
    StoreError,
    load_contents,
)

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


def entry(record_id: str, kind: str = "conversation", generator: str = "g") -> dict:
    return {"record_id": record_id, "generator": generator, "kind": kind}


def test_appender_writes_whole_lines_and_resumes_after_a_torn_tail(tmp_path):
    path = tmp_path / "x.jsonl"
    appender = JsonlAppender(path)
    appender.append({"text": "ünïcode\nnewline inside"})
    appender.close()
    with path.open("ab") as handle:
        handle.write(b'{"torn')
    appender = JsonlAppender(path)
    appender.append({"n": 2})
    appender.close()
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == [
        {"text": "ünïcode\nnewline inside"},
        {"n": 2},
    ]


def _hold_store(out: str, ready, release) -> None:
    store = OutputStore(Path(out))
    ready.set()
    release.wait(10)
    store.close()


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_store, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(StoreError, match="another `instruct generate` run is writing to this folder"):
            OutputStore(tmp_path)
    finally:
        release.set()
        holder.join(10)
    OutputStore(tmp_path).close()  # free again


def test_store_refuses_duplicate_keys_and_bad_lines(tmp_path):
    (tmp_path / CONVERSATIONS_FILE).write_text(json.dumps(entry("a")) + "\n")
    (tmp_path / "rejects.jsonl").write_text(json.dumps(entry("a")) + "\n")
    with pytest.raises(StoreError, match="1 result key\\(s\\) appear more than once"):
        OutputStore(tmp_path)
    (tmp_path / "rejects.jsonl").write_text("not json\n")
    with pytest.raises(StoreError, match=r"rejects\.jsonl:1: not valid JSON"):
        load_contents(tmp_path)


def test_price_table_matching_and_errors(tmp_path):
    table = PriceTable.from_file()
    assert table.cost("anthropic", "claude-3-opus-20240229", 1_000_000, 100_000, batch=False) == pytest.approx(22.5)
    assert table.cost("anthropic", "claude-3-opus-20240229", 1_000_000, 100_000, batch=True) == pytest.approx(11.25)
    assert table.cost("openai", "meta-llama/Meta-Llama-3-70B-Instruct", 10, 10, batch=False) is None
    bad = tmp_path / "p.yaml"
    bad.write_text("prices:\n  - match: 'x*'\n    input: -1\n    output: 1\n")
    with pytest.raises(PriceTableError, match=r"prices\[0\]: prices must be >= 0"):
        PriceTable.from_file(bad)


def test_distribution():
    assert Distribution.of([5, 1, 3, 2, 4]) == Distribution(5, 1, 3.0, pytest.approx(4.6), 5)
    assert Distribution.of([]) == Distribution(0, 0, 0.0, 0.0, 0)


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
