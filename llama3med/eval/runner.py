"""The evaluation protocol: fixed prompt templates, batched answers, predictions streamed to JSONL.

Predictions are appended one line per question (`prediction_record`: id, prediction, question, reference
answer, answer type, per-item scores) and flushed after every batch, so an interrupted run loses at most one
batch; a rerun reads the file, drops a torn last line, and answers only the questions without a prediction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from llama3med.eval.answerers import Answerer
from llama3med.eval.benchmarks import Benchmark, Question
from llama3med.eval.metrics import score_answer
from llama3med.eval.templates import PromptTemplates
from llama3med.io.jsonl import drop_torn_last_line, jsonl_line, read_jsonl, sort_jsonl

T = TypeVar("T")


class ResumeError(ValueError):
    """An existing predictions file cannot be continued (corrupt line, foreign ids, other settings)."""


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def completed_predictions(path: Path, benchmark: Benchmark) -> dict[str, str]:
    """Predictions already in `path` (empty if it does not exist). A torn last line (the process was
    killed while writing) is cut off; any other bad line, an unknown id or a repeated id is an error."""
    if not path.exists():
        return {}
    drop_torn_last_line(path)  # the torn line's question is answered again
    known = {q.id for q in benchmark.questions}
    done: dict[str, str] = {}
    for number, record in read_jsonl(path, ResumeError, hint="remove the file to start over"):
        try:
            qid, prediction = str(record["id"]), record["prediction"]
        except KeyError as error:
            raise ResumeError(f"{path}:{number}: not a prediction line ({error}); remove the file to start over") from error
        if qid not in known:
            raise ResumeError(f"{path}:{number}: id {qid!r} is not a question of {benchmark.name} ({benchmark.source})")
        if qid in done:
            raise ResumeError(f"{path}:{number}: id {qid!r} appears twice")
        done[qid] = prediction
    return done


def check_run_settings(path: Path, settings: dict[str, Any]) -> None:
    """Record `settings` in `path` (JSON) on the first run; on a rerun, refuse to continue predictions that
    were made with other settings (a different model, decoding, prompts or test data)."""
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in settings.keys() | previous.keys() if settings.get(k) != previous.get(k))
        if changed:
            raise ResumeError(
                f"{path.parent} holds predictions made with other settings (changed: {', '.join(changed)});"
                " use a new --out folder or --overwrite"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def run_benchmark(
    answerer: Answerer,
    benchmark: Benchmark,
    templates: PromptTemplates,
    predictions_path: Path,
    *,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, str]:
    """Answer every question of `benchmark` that has no prediction in `predictions_path` yet.

    The questions are answered grouped by image (`grouped_by_image`), so all questions on one image pass while
    its features are held and each image is encoded once; lines are appended in that order as batches finish
    (an interrupted run keeps them), and the finished file is rewritten in the benchmark's question order.
    Images are loaded through `llama3med.io.images.load_image` (the last few kept in memory). Returns all
    predictions by id, in question order.
    """
    from llama3med.io.images import load_image

    load = lru_cache(maxsize=64)(load_image)
    done = completed_predictions(predictions_path, benchmark)
    todo = grouped_by_image([q for q in benchmark.questions if q.id not in done])
    predictions_path.parent.mkdir(parents=True, exist_ok=True)
    with predictions_path.open("a", encoding="utf-8") as out:
        for batch in batched(todo, batch_size):
            answers = answer_batch(answerer, batch, templates, load)
            for question, answer in zip(batch, answers, strict=True):
                out.write(jsonl_line(prediction_record(question, answer)))
                done[question.id] = answer
            out.flush()
            if on_batch is not None:
                on_batch(len(batch))
    write_in_question_order(predictions_path, benchmark)
    return {q.id: done[q.id] for q in benchmark.questions}


def grouped_by_image(questions: Sequence[Question]) -> list[Question]:
    """`questions` reordered so that those on one image (same content, `Question.image_sha256`) follow each
    other: images in order of first appearance, each image's questions in their own order."""
    groups: dict[str, list[Question]] = {}
    for question in questions:
        groups.setdefault(question.image_sha256(), []).append(question)
    return [question for group in groups.values() for question in group]


def write_in_question_order(path: Path, benchmark: Benchmark) -> None:
    """Rewrite a complete predictions file with its lines (kept byte for byte) in the benchmark's question
    order; atomic (temporary file + rename), and a file already in order is left alone."""
    position = {q.id: index for index, q in enumerate(benchmark.questions)}
    sort_jsonl(path, lambda record: position.get(str(record.get("id")), len(position)), ResumeError)


def prediction_record(question: Question, prediction: str) -> dict[str, Any]:
    """One predictions line: the id and prediction (what resuming and `score` read), then the question, its
    reference answer and answer type, and this prediction's score under every metric that applies to it."""
    return {
        "id": question.id,
        "prediction": prediction,
        "question": question.question,
        "reference": question.answer,
        "answer_type": question.answer_type,
        "scores": score_answer(prediction, question.answer, question.answer_type),
    }


def answer_batch(answerer: Answerer, batch: Sequence[Question], templates: PromptTemplates, load: Callable[[Any], Any]) -> list[str]:
    images = [load(q.image) for q in batch]
    # Every image is loaded with `load_image`'s defaults, so the content digest names the pixels the model sees.
    answers = answerer.answer(images, [templates.render(q) for q in batch], image_keys=[q.image_sha256() for q in batch])
    if len(answers) != len(batch) or not all(isinstance(a, str) for a in answers):
        raise TypeError(f"answerer returned {len(answers)} answers for {len(batch)} questions (ids {batch[0].id}..{batch[-1].id})")
    return answers
