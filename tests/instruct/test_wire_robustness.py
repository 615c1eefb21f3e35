"""The real `anthropic` and `openai` SDKs against a scripted server on 127.0.0.1: normal answers, 429 with
retry-after, 500, a hang past the client timeout, malformed JSON, bad replies and 401."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from llama3med.instruct.generate import GenerationAborted, GenerationConfig, generate
from llama3med.instruct.generators import resolve_generators
from llama3med.instruct.retry import RetryPolicy
from llama3med.instruct.store import load_contents

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")
KINDS = ("conversation", "closed_qa")
SCRIPT = {
    "r01": ["429", "ok"],
    "r02": ["500", "500", "ok"],
    "r03": ["hang", "ok"],
    "r04": ["malformed", "ok"],
    "r05": ["leak"],
    "r06": ["long"],
    "r07": ["garbage"],
    "r08": ["500", "500", "500", "ok"],  # fails all 3 attempts of the first run, answers on the rerun
}


def generator_option(provider: str, url: str) -> str:
    return f"anthropic:claude-3-opus-20240229@{url}" if provider == "anthropic" else f"openai:llama-3-70b@{url}/v1"


def make_config(
    input_path: Path, out: Path, option: str, concurrency: int = 4, kinds: tuple[str, ...] = KINDS
) -> GenerationConfig:
    defaults = {"concurrency": concurrency, "timeout": 0.5, "max_tokens": 512, "temperature": 0.7}
    return GenerationConfig(
        input_path=input_path,
        out_dir=out,
        generators=tuple(resolve_generators([option], None, defaults)),
        kinds=kinds,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
        show_progress=False,
    )


def keys_of(entries: list[dict]) -> list[tuple[str, str]]:
    return [(e["record_id"], e["kind"]) for e in entries]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_every_record_generated_or_rejected_with_reason(provider, tmp_path, write_records, wire_server, api_keys):
    server = wire_server(script=SCRIPT, retry_after="0.3", hang_seconds=1.0)
    input_path = write_records(9)
    out = tmp_path / "out"
    option = generator_option(provider, server.url)

    summary = generate(make_config(input_path, out, option))

    contents = load_contents(out)
    expected = {(f"case-{i:02d}", kind) for i in range(9) for kind in KINDS}
    failed = {("case-08", kind) for kind in KINDS}
    finished = keys_of(contents.accepted) + keys_of(contents.rejected)
    assert len(finished) == len(set(finished))
    assert set(finished) == expected - failed
    assert {(e["record_id"], e["kind"]) for e in contents.failures} == failed
    assert all(e["attempts"] == 3 and e["error"].startswith("HTTP 500") for e in contents.failures)
    reasons = {(e["record_id"], e["kind"]): e["reason"] for e in contents.rejected}
    assert reasons == {
        ("case-05", "conversation"): "source_leak",
        ("case-05", "closed_qa"): "source_leak",
        ("case-06", "conversation"): "malformed",  # one pair; a conversation needs at least two
        ("case-06", "closed_qa"): "answer_too_long",
        ("case-07", "conversation"): "malformed",
        ("case-07", "closed_qa"): "malformed",
    }
    assert all(e["detail"] and e["output"] for e in contents.rejected)
    tally = summary.tallies[summary_name := next(iter(summary.tallies))]
    assert summary_name.startswith(provider)
    assert (tally.accepted, tally.rejected, tally.failed) == (10, 6, 2)
    # Retries: 429, hang and malformed once, 500 twice, and r08's two retries per kind.
    assert tally.retries == 2 * (1 + 2 + 1 + 1 + 2)

    attempts = server.attempts
    r01 = sorted(a.time for a in attempts if a.tag == "r01" and a.kind == "conversation")
    assert len(r01) == 2 and r01[1] - r01[0] >= 0.3  # retry-after honoured (base delay is 0.01 s)
    assert Counter(a.action for a in attempts if a.tag == "r03") == {"hang": 2, "ok": 2}

    # Usage comes from the responses: the stored totals equal what the server reported.
    reported_in = sum(a.input_tokens for a in attempts)
    reported_out = sum(a.output_tokens for a in attempts)
    stored = contents.accepted + contents.rejected
    assert sum(e["usage"]["input_tokens"] for e in stored) == reported_in == tally.input_tokens
    assert sum(e["usage"]["output_tokens"] for e in stored) == reported_out == tally.output_tokens
    cost = summary.costs[summary_name]
    if provider == "anthropic":  # default price table: Claude 3 Opus $15 / $75 per million tokens
        assert cost == pytest.approx((reported_in * 15 + reported_out * 75) / 1e6)
    else:
        assert cost is None  # no per-token price for a self-hosted Llama-3-70B

    for entry in contents.accepted:
        turns = entry["conversations"]
        assert turns[0]["value"].startswith("<image>\n")
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert entry["image"].startswith("images/case-")

    # The rerun finishes the two failed keys and nothing else.
    before = len(server.attempts)
    summary = generate(make_config(input_path, out, option))
    contents = load_contents(out)
    finished = keys_of(contents.accepted) + keys_of(contents.rejected)
    assert sorted(finished) == sorted(expected)
    assert summary.planned == 2 and summary.already_done == 16
    assert len(server.attempts) - before == 2


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_wrong_key_stops_at_once_without_leaking_it(provider, tmp_path, write_records, wire_server, monkeypatch):
    server = wire_server()
    wrong_key = "sk-wrong-0a1b2c3d"
    monkeypatch.setenv("ANTHROPIC_API_KEY", wrong_key)
    monkeypatch.setenv("OPENAI_API_KEY", wrong_key)
    out = tmp_path / "out"
    with pytest.raises(GenerationAborted) as raised:
        generate(make_config(write_records(6), out, generator_option(provider, server.url), concurrency=1))
    message = str(raised.value)
    assert "authentication failed (HTTP 401" in message
    assert ("ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY") in message
    assert wrong_key not in message
    assert len(server.attempts) == 1
    assert all(wrong_key not in p.read_text() for p in out.iterdir() if p.is_file())


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_401_mid_run_stops_before_the_next_request(provider, tmp_path, write_records, wire_server, api_keys):
    server = wire_server(script={"r03": ["401"]})
    input_path = write_records(6)
    out = tmp_path / "out"
    option = generator_option(provider, server.url)
    with pytest.raises(GenerationAborted, match="record 'case-03', kind conversation: .*HTTP 401"):
        generate(make_config(input_path, out, option, concurrency=1))
    assert len(server.attempts) == 7  # records 0-2 x 2 kinds, then the 401
    contents = load_contents(out)
    assert sorted(keys_of(contents.accepted)) == sorted((f"case-{i:02d}", k) for i in range(3) for k in KINDS)

    server.state.script.clear()  # the key works again: the rerun does the rest
    generate(make_config(input_path, out, option, concurrency=1))
    contents = load_contents(out)
    assert len(contents.accepted) == 12 and len({tuple(k) for k in keys_of(contents.accepted)}) == 12


def test_missing_key_is_a_clear_error(tmp_path, write_records, wire_server, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    server = wire_server()
    with pytest.raises(GenerationAborted, match="environment variable ANTHROPIC_API_KEY is not set"):
        generate(make_config(write_records(2), tmp_path / "out", generator_option("anthropic", server.url)))
    assert server.attempts == []


def test_refused_connection_is_retried_then_logged_as_failure(tmp_path, write_records, api_keys):
    import socket

    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out"
    summary = generate(make_config(write_records(1), out, f"openai:m@http://127.0.0.1:{port}/v1"))
    assert summary.failed == 2
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert all(f["error"].startswith("connection error") and f["attempts"] == 3 for f in failures)
    assert load_contents(out).done == set()


def test_output_is_read_by_the_training_reader(tmp_path, write_records, wire_server, api_keys):
    from llama3med.train.data.conversations import DataReport, DataSource, read_source

    server = wire_server()
    out = tmp_path / "out"
    generate(make_config(write_records(3), out, generator_option("openai", server.url), kinds=("conversation", "detailed_description", "open_qa")))
    report = DataReport(strict=True)  # any record the trainer cannot use raises
    conversations = read_source(DataSource(out / "conversations.jsonl", "llava", image_root=tmp_path), report)
    assert len(conversations) == 9 and sum(report.read.values()) == 9
    for conversation in conversations:
        roles = [m["role"] for m in conversation.messages]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert "<image>" in conversation.messages[0]["content"]
        assert conversation.image == tmp_path / conversation.image_relpath
