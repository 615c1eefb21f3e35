"""Anthropic Message Batches through the real SDK against the scripted server."""

from __future__ import annotations

import json

import pytest

from llama3med.instruct.batches import BATCHES_FILE, custom_id
from llama3med.instruct.generate import GenerationConfig, generate
from llama3med.instruct.generators import resolve_generators
from llama3med.instruct.retry import RetryPolicy
from llama3med.instruct.store import ResultKey, load_contents

MODEL = "claude-3-5-sonnet-20240620"


def batch_config(input_path, out, url, batch_size=100):
    return GenerationConfig(
        input_path=input_path,
        out_dir=out,
        generators=tuple(resolve_generators([f"anthropic-batch:{MODEL}@{url}"], None)),
        kinds=("conversation", "open_qa"),
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
        batch_size=batch_size,
        batch_poll_interval=0.02,
        show_progress=False,
    )


def test_batches_store_results_log_errors_and_retry_them_next_run(tmp_path, write_records, wire_server, api_keys):
    server = wire_server(script={"r02": ["errored"]}, batch_ready_after=0.1)
    input_path, out = write_records(4), tmp_path / "out"

    summary = generate(batch_config(input_path, out, server.url, batch_size=3))

    assert sorted(server.state.batches) == ["msgbatch_0001", "msgbatch_0002", "msgbatch_0003"]  # 8 requests / 3
    contents = load_contents(out)
    assert len(contents.accepted) == 6
    assert {(f["record_id"], f["kind"]) for f in contents.failures} == {("case-02", "conversation"), ("case-02", "open_qa")}
    assert all("request errored: api_error overloaded" in f["error"] for f in contents.failures)
    tally = summary.tallies[f"anthropic:{MODEL}"]
    assert (tally.accepted, tally.failed) == (6, 2)
    # Batch price: half of $3 / $15 per million tokens.
    expected = 0.5 * (tally.input_tokens * 3 + tally.output_tokens * 15) / 1e6
    assert tally.input_tokens > 0 and summary.costs[f"anthropic:{MODEL}"] == pytest.approx(expected)
    assert all(entry["batch"] is True for entry in contents.accepted)

    summary = generate(batch_config(input_path, out, server.url))
    assert len(server.state.batches) == 4
    assert [r["custom_id"] for r in server.state.batches["msgbatch_0004"]["results"]] == [
        custom_id(ResultKey("case-02", f"anthropic:{MODEL}", kind)) for kind in ("conversation", "open_qa")
    ]
    contents = load_contents(out)
    assert len(contents.accepted) == 8 and len(contents.done) == 8
    events = [json.loads(line)["event"] for line in (out / BATCHES_FILE).read_text().splitlines()]
    assert events.count("submitted") == events.count("collected") == 4


def test_custom_ids_fit_the_api_pattern_and_differ():
    keys = [ResultKey(f"record/{i} with spaces", "anthropic:claude", kind) for i in range(50) for kind in ("a", "b")]
    ids = [custom_id(key) for key in keys]
    assert len(set(ids)) == len(ids)
    assert all(len(i) <= 64 and i.replace("_", "").replace("-", "").isalnum() for i in ids)
