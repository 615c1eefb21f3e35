"""Score a predictions JSONL (ours or LLaVA-Med's answers file) against a benchmark — no model needed, so
predictions from anywhere can be scored the same way.

Per benchmark the result holds (percent, as published):

- `llava_med.open_recall` (OPEN questions), `llava_med.closed_accuracy` (CLOSED questions);
- `strict.closed_accuracy`, `strict.open_exact_match`, `strict.open_f1`; `bleu1` (OPEN questions);
- `counts.open`, `counts.closed`, `counts.questions`, `counts.images`;
- `breakdowns`: the same figures by answer type and by the dataset's own categories, with counts.

A figure over zero questions is `null`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llama3med.eval.benchmarks import Benchmark, Question
from llama3med.eval.metrics import CLOSED, OPEN, score_answer
from llama3med.io.jsonl import read_jsonl

OPEN_METRICS = ("llava_med_open_recall", "open_exact_match", "open_f1", "bleu1")
CLOSED_METRICS = ("llava_med_closed_accuracy", "strict_closed_accuracy")


class PredictionsError(ValueError):
    """A predictions file is malformed or does not match the benchmark's questions."""


def few(ids: Iterable[str], n: int = 5) -> str:
    ids = list(ids)
    return ", ".join(repr(i) for i in ids[:n]) + (", ..." if len(ids) > n else "")


# Predictions file formats: (id key, prediction key) -> description. LLaVA-Med's `model_vqa` answers files hold
# `{"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}` lines.
PREDICTION_FORMATS = {
    ("id", "prediction"): 'llama3med predictions JSONL ({"id", "prediction"})',
    ("question_id", "text"): 'LLaVA-Med answers JSONL ({"question_id", "text"})',
}


def predictions_format(path: str | Path) -> tuple[str, str]:
    """The (id key, prediction key) of a predictions file, from its first line."""
    first = next((record for _, record in read_jsonl(Path(path), PredictionsError)), None)
    for keys in PREDICTION_FORMATS:
        if first is not None and keys[0] in first and keys[1] in first:
            return keys
    return ("id", "prediction")  # the usual format; its per-line check names what is missing


def read_predictions(path: str | Path) -> dict[str, str]:
    """`{"id", "prediction"}` per line, or LLaVA-Med's `{"question_id", "text"}` (detected from the first line)
    -> {id: prediction}. Ids may be strings or integers (compared as text). Malformed lines and repeated ids
    raise `PredictionsError` naming the file and lines."""
    path = Path(path)
    id_key, prediction_key = predictions_format(path)
    predictions: dict[str, str] = {}
    lines: dict[str, list[int]] = {}
    for number, record in read_jsonl(path, PredictionsError):
        where = f"{path}:{number}"
        if id_key not in record or prediction_key not in record:
            raise PredictionsError(f'{where}: each line must be an object with "{id_key}" and "{prediction_key}"')
        qid, prediction = record[id_key], record[prediction_key]
        if isinstance(qid, bool) or not isinstance(qid, (str, int)):
            raise PredictionsError(f"{where}: id must be a string or an integer, got {qid!r}")
        if not isinstance(prediction, str):
            raise PredictionsError(f"{where}: prediction must be a string, got {type(prediction).__name__}")
        predictions[str(qid)] = prediction
        lines.setdefault(str(qid), []).append(number)
    repeated = {qid: numbers for qid, numbers in lines.items() if len(numbers) > 1}
    if repeated:
        shown = "; ".join(f"{qid!r} on lines {', '.join(map(str, n))}" for qid, n in list(repeated.items())[:5])
        raise PredictionsError(f"{path}: {len(repeated)} ids appear more than once: {shown}")
    return predictions


def match_predictions(benchmark: Benchmark, predictions: dict[str, str], source: str = "predictions") -> list[tuple[Question, str]]:
    """(question, prediction) for every question; a missing or unknown id raises `PredictionsError`."""
    known = {q.id for q in benchmark.questions}
    missing = [q.id for q in benchmark.questions if q.id not in predictions]
    unknown = [qid for qid in predictions if qid not in known]
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {len(known)} questions have no prediction ({few(missing)})")
    if unknown:
        problems.append(f"{len(unknown)} predictions have ids that are not questions of {benchmark.name} ({few(unknown)})")
    if problems:
        raise PredictionsError(f"{source} vs {benchmark.source}: " + "; ".join(problems))
    return [(q, predictions[q.id]) for q in benchmark.questions]


def mean_percent(values: list[float]) -> float | None:
    return 100.0 * sum(values) / len(values) if values else None


def summarize(scored: list[tuple[Question, dict[str, float]]]) -> dict[str, Any]:
    """Mean of each metric over the questions it applies to, with counts."""
    by_metric: dict[str, list[float]] = {name: [] for name in OPEN_METRICS + CLOSED_METRICS}
    for _, scores in scored:
        for name, value in scores.items():
            by_metric[name].append(value)
    return {
        "count": len(scored),
        "open": sum(q.answer_type == OPEN for q, _ in scored),
        "closed": sum(q.answer_type == CLOSED for q, _ in scored),
        **{name: mean_percent(values) for name, values in by_metric.items()},
    }


def breakdowns(scored: list[tuple[Question, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Figures per answer type and per value of each of the dataset's categories (sorted by value)."""
    groups: dict[str, dict[str, list[tuple[Question, dict[str, float]]]]] = {"answer_type": {}}
    for item in scored:
        question = item[0]
        groups["answer_type"].setdefault(question.answer_type, []).append(item)
        for category, value in question.categories.items():
            groups.setdefault(category, {}).setdefault(value, []).append(item)
    return {category: {value: summarize(items) for value, items in sorted(values.items())} for category, values in groups.items()}


def score_benchmark(benchmark: Benchmark, predictions: dict[str, str], source: str = "predictions") -> dict[str, Any]:
    """All figures for one benchmark (see the module docstring for the keys)."""
    pairs = match_predictions(benchmark, predictions, source)
    scored = [(question, score_answer(prediction, question.answer, question.answer_type)) for question, prediction in pairs]
    overall = summarize(scored)
    counts = benchmark.counts()
    return {
        "llava_med": {"open_recall": overall["llava_med_open_recall"], "closed_accuracy": overall["llava_med_closed_accuracy"]},
        "strict": {
            "closed_accuracy": overall["strict_closed_accuracy"],
            "open_exact_match": overall["open_exact_match"],
            "open_f1": overall["open_f1"],
        },
        "bleu1": overall["bleu1"],
        "counts": {"open": counts.open, "closed": counts.closed, "questions": counts.questions, "images": counts.images},
        "breakdowns": breakdowns(scored),
    }


def score_file(benchmark: Benchmark, predictions_path: str | Path) -> dict[str, Any]:
    """`score_benchmark` for a predictions file, plus where the figures came from."""
    predictions = read_predictions(predictions_path)
    return {
        **score_benchmark(benchmark, predictions, str(predictions_path)),
        "source": {"data": benchmark.source, "layout": benchmark.layout, "predictions": str(predictions_path),
                   "predictions_format": PREDICTION_FORMATS[predictions_format(predictions_path)]},
    }


def metric_ceilings(benchmark: Benchmark) -> dict[str, float | None]:
    """Each metric's score when the gold answers themselves are the predictions: the most any model can reach
    on this test set. LLaVA-Med's closed rule needs "yes" or "no" in the prediction, so a closed option
    question ("left or right?" -> "left") can never score and the closed ceiling stays below 100 %."""
    scores = score_benchmark(benchmark, {q.id: q.answer for q in benchmark.questions}, "gold answers")
    return {
        "llava_med_open_recall": scores["llava_med"]["open_recall"],
        "llava_med_closed_accuracy": scores["llava_med"]["closed_accuracy"],
        "strict_closed_accuracy": scores["strict"]["closed_accuracy"],
        "open_exact_match": scores["strict"]["open_exact_match"],
        "open_f1": scores["strict"]["open_f1"],
        "bleu1": scores["bleu1"],
    }
