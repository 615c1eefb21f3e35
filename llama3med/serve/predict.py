"""Batch predictions: questions in a JSONL file -> answers in a JSONL file, batched and resumable.

Input lines: `{"id": ..., "image": "path", "question": "..."}` (relative image paths are resolved against
the input file's folder). Output lines: `{"id", "question", "answer", "prompt_tokens", "completion_tokens",
"finish_reason"}`, appended and flushed batch by batch; a rerun skips ids already in the output.

Questions are answered grouped by image file, so all questions on one image pass while its features are held
(each image is encoded once); when every question is answered the output is rewritten in the input's order.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from llama3med.api import ChatRequest, Llama3Med
from llama3med.generation import GenerationSettings
from llama3med.io.jsonl import drop_torn_last_line, jsonl_line, read_jsonl, sort_jsonl


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
    drop_torn_last_line(out)
    ids = set()
    for number, record in read_jsonl(out, PredictionInputError, hint="fix or remove it"):
        if "id" not in record:
            raise PredictionInputError(f"{out}:{number}: not an answer line with an id; fix or remove it")
        ids.add(json.dumps(record["id"]))
    return ids


def batches(items: list[Question], size: int) -> Iterator[list[Question]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def grouped_by_image(questions: list[Question]) -> list[Question]:
    """`questions` reordered so that those on one image file follow each other: files in order of first
    appearance, each file's questions in input order."""
    groups: dict[Path, list[Question]] = {}
    for question in questions:
        groups.setdefault(question.image.resolve(), []).append(question)
    return [question for group in groups.values() for question in group]


def image_key(path: Path, image_options: dict[str, Any]) -> str:
    """Names the image the model sees for `path` loaded with `image_options` (window, frame, slice): the file's
    sha256 with default options (the training feature cache's key), else a sha256 over it and the options."""
    from llama3med.eval.benchmarks import file_sha256

    content = file_sha256(path.resolve())
    chosen = {k: v for k, v in sorted(image_options.items()) if v is not None}
    if not chosen:
        return content
    return hashlib.sha256(json.dumps([content, chosen], sort_keys=True, default=str).encode()).hexdigest()


def write_in_input_order(out: Path, questions: list[Question]) -> None:
    """Rewrite the output with its lines (kept byte for byte) in the input's order; lines of ids that are not
    in the input (an output shared with another run) follow in their own order. Atomic (temporary file +
    rename); a file already in order is left alone."""
    position = {q.key: index for index, q in enumerate(questions)}
    sort_jsonl(out, lambda record: position.get(json.dumps(record.get("id")), len(position)), PredictionInputError)


def predict_file(
    api: Llama3Med,
    questions_path: Path,
    out: Path,
    *,
    batch_size: int = 8,
    image_options: dict[str, Any] | None = None,
    settings: GenerationSettings | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Answer the questions not yet in `out`, grouped by image; returns (answered now, skipped as already
    answered). When all are answered, `out` is rewritten in the input's order. Decoding follows `settings`
(default: `GenerationSettings()`).

    `on_batch(n)` is called after each batch of `n` answers has been written.
    """
    from llama3med.io.images import ImageLoadError, load_image

    questions = read_questions(questions_path)
    done = answered_ids(out)
    todo = grouped_by_image([q for q in questions if q.key not in done])
    options = image_options or {}
    load = lru_cache(maxsize=16)(lambda path: load_image(path, **options))  # one image's questions follow each other
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as handle:
        for batch in batches(todo, batch_size):
            requests = []
            for q in batch:
                try:
                    image = load(q.image)
                    key = image_key(q.image, options)
                except (ImageLoadError, OSError) as error:
                    reason = error.reason if isinstance(error, ImageLoadError) else str(error)
                    raise PredictionInputError(f"{questions_path}:{q.line} (id {q.key}): image {q.image}: {reason}") from None
                requests.append(ChatRequest(image, [{"role": "user", "content": q.question}], image_key=key))
            results = api.generate(requests, settings=settings)
            for q, result in zip(batch, results, strict=True):
                row = {
                    "id": q.id,
                    "question": q.question,
                    "answer": result.text,
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                    "finish_reason": result.finish_reason,
                }
                handle.write(jsonl_line(row))
            handle.flush()
            os.fsync(handle.fileno())
            if on_batch is not None:
                on_batch(len(batch))
    write_in_input_order(out, questions)
    return len(todo), len(questions) - len(todo)
