"""The generation job's planning and concurrency (`llama3med.instruct.generate`). Whole runs through the real
SDKs against the scripted server (retries, fatal errors, reruns) are in test_wire_robustness.py, test_batches.py
and test_sigkill_resume.py."""

from __future__ import annotations

import asyncio

import pytest

from llama3med.instruct.generate import GenerationSummary, plan_tasks, run_until_first_error
from llama3med.instruct.generators import GeneratorSpec, choose_generator
from llama3med.instruct.records import CaptionRecord
from llama3med.instruct.results import GeneratorTally
from llama3med.instruct.store import ResultKey

GENERATORS = (GeneratorSpec("claude", "anthropic", "c", weight=1.0), GeneratorSpec("llama", "openai", "l", weight=1.0))
RECORDS = [CaptionRecord(f"r{i}", f"r{i}.png", "c") for i in range(6)]


def test_tasks_follow_record_then_kind_order_with_one_drawn_generator_per_record():
    tasks, skipped = plan_tasks(RECORDS, GENERATORS, ("conversation", "open_qa"), 3, set())
    assert skipped == 0
    assert [(t.record.id, t.kind) for t in tasks] == [(r.id, k) for r in RECORDS for k in ("conversation", "open_qa")]
    for task in tasks:
        assert task.generator == choose_generator(list(GENERATORS), task.record.id, 3)
    assert {t.generator.name for t in tasks} == {"claude", "llama"}  # six records: both are drawn


def test_done_keys_are_skipped_and_counted():
    first = plan_tasks(RECORDS, GENERATORS, ("conversation", "open_qa"), 0, set())[0]
    done = {first[0].key, first[3].key, ResultKey("r9", "claude", "conversation")}  # r9 is not in this input
    tasks, skipped = plan_tasks(RECORDS, GENERATORS, ("conversation", "open_qa"), 0, done)
    assert skipped == 2 and tasks == [t for i, t in enumerate(first) if i not in (0, 3)]


def test_the_first_error_cancels_the_other_coroutines():
    finished, cancelled = [], []

    async def slow(name: str) -> None:
        try:
            await asyncio.sleep(5)
            finished.append(name)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("HTTP 401")

    async def quick() -> None:
        finished.append("quick")

    with pytest.raises(ValueError, match="HTTP 401"):
        asyncio.run(run_until_first_error([slow("a"), quick(), failing(), slow("b")]))
    assert finished == ["quick"] and sorted(cancelled) == ["a", "b"]
    asyncio.run(run_until_first_error([quick(), quick()]))
    assert finished == ["quick"] * 3


def test_summary_counts_failures_over_generators():
    summary = GenerationSummary(
        planned=5, already_done=1, tallies={"a": GeneratorTally(failed=2), "b": GeneratorTally(accepted=3, failed=1)},
        costs={"a": None, "b": 0.5}, repaired_bytes=0,
    )
    assert summary.failed == 3
