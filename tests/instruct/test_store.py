"""The crash-safe output store (`llama3med.instruct.store`): whole lines, torn tails, one run per folder."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from llama3med.instruct.store import (
    CONVERSATIONS_FILE,
    FAILURES_FILE,
    JsonlAppender,
    OutputStore,
    ResultKey,
    StoreError,
    load_contents,
)


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


def test_reopened_store_knows_what_is_done_and_cuts_torn_tails(tmp_path):
    store = OutputStore(tmp_path)
    store.accepted.append({**entry("a"), "conversations": []})
    store.rejected.append({**entry("b"), "reason": "malformed"})
    store.failures.append({**entry("c"), "error": "HTTP 500"})
    store.close()
    with (tmp_path / CONVERSATIONS_FILE).open("ab") as handle:
        handle.write(b'{"record_id": "d", "gen')  # killed mid-write
    assert load_contents(tmp_path).done == {ResultKey("a", "g", "conversation"), ResultKey("b", "g", "conversation")}
    store = OutputStore(tmp_path)
    assert store.repaired_bytes == len(b'{"record_id": "d", "gen')
    assert store.contents.done == {ResultKey("a", "g", "conversation"), ResultKey("b", "g", "conversation")}
    assert [ResultKey.of(e) for e in store.contents.failures] == [ResultKey("c", "g", "conversation")]
    store.close()


def test_a_line_without_its_key_fields_is_refused(tmp_path):
    (tmp_path / FAILURES_FILE).write_text(json.dumps({"record_id": "a", "generator": "g"}) + "\n")
    with pytest.raises(StoreError, match=r"failures\.jsonl: a line lacks the string field 'kind'"):
        load_contents(tmp_path)
