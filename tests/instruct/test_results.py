"""What happens to one reply (`llama3med.instruct.results`): kept as a LLaVA conversation, rejected with its
reason, or logged as a failure; tallies and the progress listener follow."""

from __future__ import annotations

import pytest

from llama3med.instruct.backends import Completion
from llama3med.instruct.dedup import DuplicateIndex
from llama3med.instruct.generators import GeneratorSpec
from llama3med.instruct.prompting import human_question, load_prompts
from llama3med.instruct.records import CaptionRecord
from llama3med.instruct.results import GeneratorTally, ResultSink, Task
from llama3med.instruct.store import OutputStore, ResultKey, load_contents

CLAUDE = GeneratorSpec("claude", "anthropic", "claude-3-opus-20240229")
REPLY = "Question: What is seen?\nAnswer: A 4 cm lesion in the liver.\nQuestion: Where is it?\nAnswer: In segment seven."


class CountingListener:
    """Records every progress call (the progress bar's part of the protocol)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, int]] = []

    def advance(self, generator: str, tally: GeneratorTally) -> None:
        self.calls.append((generator, tally.accepted, tally.rejected, tally.failed))


@pytest.fixture
def sink(tmp_path):
    templates = load_prompts(kinds=("conversation", "detailed_description"))
    store = OutputStore(tmp_path)
    listener = CountingListener()
    yield ResultSink(store, templates, DuplicateIndex({k: t.dedup for k, t in templates.items()}), 0, listener)
    store.close()


def task(record_id: str, kind: str = "conversation") -> Task:
    return Task(CaptionRecord(record_id, f"images/{record_id}.png", "Axial CT."), CLAUDE, kind)


def test_a_good_reply_is_kept_once_with_its_usage(sink, tmp_path):
    assert sink.accept(task("r1"), Completion(REPLY, 120, 30, False, "claude-3-opus-20240229"))
    assert not sink.accept(task("r1"), Completion(REPLY, 99, 9, False, "x"))  # done already: not stored again
    [entry] = load_contents(tmp_path).accepted
    assert entry["id"] == "r1:conversation:claude" and entry["image"] == "images/r1.png"
    assert entry["conversations"][0] == {"from": "human", "value": "<image>\nWhat is seen?"}
    assert (entry["provider"], entry["model"], entry["batch"]) == ("anthropic", "claude-3-opus-20240229", False)
    assert entry["usage"] == {"input_tokens": 120, "output_tokens": 30}
    tally = sink.tally("claude")
    assert (tally.accepted, tally.input_tokens, tally.output_tokens) == (1, 120, 30)
    assert sink.done == {ResultKey("r1", "claude", "conversation")} and sink.progress.calls == [("claude", 1, 0, 0)]


def test_rejections_are_stored_with_reason_and_output(sink, tmp_path):
    leak = REPLY.replace("A 4 cm lesion", "As the caption says, a lesion")
    assert not sink.accept(task("r1"), Completion(leak, 10, 5, False, "m"))
    assert sink.accept(task("r2"), Completion(REPLY, 10, 5, False, "m"))
    assert not sink.accept(task("r3"), Completion(REPLY, 10, 5, False, "m"))  # the same text as r2's
    rejected = load_contents(tmp_path).rejected
    assert [(e["record_id"], e["reason"]) for e in rejected] == [("r1", "source_leak"), ("r3", "exact_duplicate")]
    assert rejected[0]["output"] == leak and rejected[0]["image"] == "images/r1.png" and rejected[0]["detail"]
    tally = sink.tally("claude")
    assert (tally.accepted, tally.rejected, tally.rejected_by_reason) == (1, 2, {"source_leak": 1, "exact_duplicate": 1})
    assert len(sink.done) == 3


def test_answer_kinds_get_the_question_fixed_by_seed_and_record(sink, tmp_path):
    description = task("r7", "detailed_description")
    question = sink.question_for(description)
    assert question == human_question(sink.templates["detailed_description"], "r7", 0)
    assert sink.question_for(task("r7")) is None  # a conversation brings its own questions
    assert sink.accept(description, Completion("Answer: An axial CT of the abdomen with a liver lesion.", 1, 1, False, "m"))
    [entry] = load_contents(tmp_path).accepted
    assert entry["conversations"][0]["value"] == "<image>\n" + question


def test_a_failure_is_logged_and_stays_to_do(sink, tmp_path):
    sink.fail(task("r1"), "HTTP 500: busy", 3)
    [failure] = load_contents(tmp_path).failures
    assert (failure["record_id"], failure["error"], failure["attempts"]) == ("r1", "HTTP 500: busy", 3)
    assert "usage" not in failure and failure["time"].endswith("+00:00")
    assert sink.done == set() and sink.tally("claude").failed == 1
    assert sink.progress.calls == [("claude", 0, 0, 1)]
