"""Batch predictions: questions in a JSONL file -> answers in a JSONL file, batched and resumable.

Input lines: `{"id": ..., "image": "path", "question": "..."}` (relative image paths are resolved against
the input file's folder). Output lines: `{"id", "question", "answer", "prompt_tokens", "completion_tokens",
"finish_reason"}`, appended and flushed batch by batch; a rerun skips ids already in the output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama3med.api import ChatRequest, Llama3Med
from llama3med.data.jsonl import drop_torn_last_line, read_jsonl


class PredictionInputError(ValueError):
    """A bad input record, with the file, line and reason in the message."""


@dataclass
class Question:
    line: int
    id: Any
    image: Path
    question: str

    @property
    def key(self) -> str:
        """The id as JSON, so that 1 and "1" stay different ids."""
        return json.dumps(self.id)


def read_questions(path: Path) -> list[Question]:
    """Parse and check every input line before any work starts."""
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for number, record in read_jsonl(path, PredictionInputError):
        where = f"{path}:{number}"
        missing = [k for k in ("id", "image", "question") if k not in record]
        if missing:
            raise PredictionInputError(f"{where}: missing field(s) {', '.join(missing)}")
        if not isinstance(record["image"], str) or not isinstance(record["question"], str) or not record["question"].strip():
            raise PredictionInputError(f"{where}: 'image' must be a path string and 'question' a non-empty string")
        question = Question(number, record["id"], path.parent / record["image"], record["question"])
        if question.key in seen:
            raise PredictionInputError(f"{where}: id {question.key} already used on line {seen[question.key]}")
        seen[question.key] = number
        questions.append(question)
    return questions


def answered_ids(out: Path) -> set[str]:
    """Ids already in the output. A last line cut short by an interrupted run is removed so it is redone."""
    if not out.exists():
        return set()
    ids = set()
    for number, line in enumerate(drop_torn_last_line(out).decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            ids.add(json.dumps(json.loads(line)["id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise PredictionInputError(f"{out}:{number}: not an answer line with an id; fix or remove it") from None
    return ids


def batches(items: list[Question], size: int) -> Iterator[list[Question]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_file(
    api: Llama3Med,
    questions_path: Path,
    out: Path,
    *,
    batch_size: int = 8,
    image_options: dict[str, Any] | None = None,
    generation: dict[str, Any] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Answer the questions not yet in `out`; returns (answered now, skipped as already answered).

    `on_batch(n)` is called after each batch of `n` answers has been written.
    """
    from llama3med.data.images import ImageLoadError, load_image

    questions = read_questions(questions_path)
    done = answered_ids(out)
    todo = [q for q in questions if q.key not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as handle:
        for batch in batches(todo, batch_size):
            requests = []
            for q in batch:
                try:
                    image = load_image(q.image, **(image_options or {}))
                except ImageLoadError as error:
                    raise PredictionInputError(f"{questions_path}:{q.line} (id {q.key}): image {q.image}: {error.reason}") from None
                requests.append(ChatRequest(image, [{"role": "user", "content": q.question}]))
            results = api.generate(requests, **(generation or {}))
            for q, result in zip(batch, results, strict=True):
                row = {
                    "id": q.id,
                    "question": q.question,
                    "answer": result.text,
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                    "finish_reason": result.finish_reason,
                }
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            if on_batch is not None:
                on_batch(len(batch))
    return len(todo), len(questions) - len(todo)
