"""Scoring predictions files: exact figures on a hand-made set, real-data sanity, error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llama3med.cli.main import app
from llama3med.eval.benchmarks import load_benchmark
from llama3med.eval.scoring import PredictionsError, read_predictions, score_benchmark, score_file


def write_predictions(path: Path, pairs: list[tuple[object, object]]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in pairs), encoding="utf-8")
    return path


def test_hand_made_figures(small_benchmark_dir: Path, tmp_path: Path) -> None:
    benchmark = load_benchmark("vqa-rad", small_benchmark_dir)
    predictions = {
        "q1": "the left side",  # open: recall 1/2, EM 0, F1 1/2, BLEU-1 1/2 ([left, side] vs [left, lung])
        "q2": "normal",  # closed "no": LLaVA-Med hit (substring), strict miss
        "q3": "Liver.",  # open: recall 1, EM 1, F1 1, BLEU-1 1
        "q4": "yes",  # closed "Yes": hit in both
    }
    scores = score_benchmark(benchmark, predictions)
    assert scores["llava_med"] == {"open_recall": 75.0, "closed_accuracy": 100.0}
    assert scores["strict"] == {"closed_accuracy": 50.0, "open_exact_match": 50.0, "open_f1": 75.0}
    assert scores["bleu1"] == pytest.approx(75.0)
    assert scores["counts"] == {"open": 2, "closed": 2, "questions": 4, "images": 2}
    by_organ = scores["breakdowns"]["organ"]
    assert by_organ["CHEST"]["count"] == 2 and by_organ["CHEST"]["llava_med_open_recall"] == 50.0
    assert by_organ["ABD"]["strict_closed_accuracy"] == 100.0
    assert scores["breakdowns"]["question_type"]["POS"] == {
        "count": 1, "open": 1, "closed": 0, "llava_med_open_recall": 50.0, "open_exact_match": 0.0, "open_f1": 50.0,
        "bleu1": pytest.approx(50.0), "llava_med_closed_accuracy": None, "strict_closed_accuracy": None,
    }
    assert scores["breakdowns"]["answer_type"]["CLOSED"]["count"] == 2


def test_always_yes_on_real_data_equals_the_share_of_yes_answers(benchmarks_dir: Path) -> None:
    for name in ("vqa-rad", "slake"):
        benchmark = load_benchmark(name, benchmarks_dir / name)
        closed = [q for q in benchmark.questions if q.answer_type == "CLOSED"]
        share_yes = 100.0 * sum(q.answer.lower() == "yes" for q in closed) / len(closed)
        scores = score_benchmark(benchmark, {q.id: "Yes." for q in benchmark.questions})
        assert scores["llava_med"]["closed_accuracy"] == pytest.approx(share_yes)
        assert scores["strict"]["closed_accuracy"] == pytest.approx(share_yes)
        assert scores["llava_med"]["open_recall"] == 0.0  # no open answer is "yes"
        assert scores["counts"]["closed"] == len(closed)


def test_scoring_twice_gives_identical_figures(benchmarks_dir: Path, tmp_path: Path) -> None:
    benchmark = load_benchmark("vqa-rad", benchmarks_dir / "vqa-rad")
    # Predictions of varied quality: the answer itself, a wrong word, or the answer inside a sentence.
    pairs = [(q.id, [q.answer, "normal", f"I think it is {q.answer.lower()}."][i % 3]) for i, q in enumerate(benchmark.questions)]
    path = write_predictions(tmp_path / "p.jsonl", pairs)
    first, second = score_file(benchmark, path), score_file(benchmark, path)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert 0 < first["llava_med"]["open_recall"] < 100 and 0 < first["strict"]["closed_accuracy"] < 100


def test_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    path = write_predictions(tmp_path / "p.jsonl", [("q1", "a"), ("q2", "b"), ("q1", "c"), (7, "d"), ("7", "e")])
    with pytest.raises(PredictionsError, match=r"2 ids appear more than once: 'q1' on lines 1, 3; '7' on lines 4, 5"):
        read_predictions(path)


def test_missing_and_unknown_ids_are_an_error(small_benchmark_dir: Path) -> None:
    benchmark = load_benchmark("vqa-rad", small_benchmark_dir)
    with pytest.raises(PredictionsError, match=r"2 of 4 questions have no prediction \('q2', 'q4'\); 1 predictions have ids that are not questions of vqa-rad \('q9'\)"):
        score_benchmark(benchmark, {"q1": "x", "q3": "y", "q9": "z"})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"p\.jsonl:2: not valid JSON"),
        ('{"id": "q2"}', r'p\.jsonl:2: each line must be an object with "id" and "prediction"'),
        ('{"id": "q2", "prediction": 3}', r"p\.jsonl:2: prediction must be a string, got int"),
        ('{"id": [1], "prediction": "x"}', r"p\.jsonl:2: id must be a string or an integer"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "q1", "prediction": "yes"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(PredictionsError, match=message):
        read_predictions(path)


def test_score_command(small_benchmark_dir: Path, tmp_path: Path) -> None:
    predictions = write_predictions(tmp_path / "p.jsonl", [("q1", "the left side"), ("q2", "normal"), ("q3", "liver"), ("q4", "yes")])
    out = tmp_path / "scores" / "vqa-rad.json"
    args = ["score", "--benchmark", "vqa-rad", "--data-root", str(small_benchmark_dir.parent), "--predictions", str(predictions), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())["benchmarks"]["vqa-rad"]
    assert scores["llava_med"] == {"open_recall": 75.0, "closed_accuracy": 100.0}
    assert scores["official_count_mismatches"][0].startswith("vqa-rad: images = 2, official 203")
    write_predictions(predictions, [("q1", "x"), ("q1", "y")])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "ids appear more than once" in result.output
