"""Batch predictions (`llama3med.serve.predict`, `llama3med predict`): batched, grouped by image, resumable after an
interruption, the Python API's answers, and bad records named by file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llama3med.api import ChatRequest
from llama3med.cli.main import app
from llama3med.eval.benchmarks import file_sha256
from llama3med.generation import GenerationSettings
from llama3med.serve.predict import (
    PredictionInputError,
    Question,
    answered_ids,
    batches,
    grouped_by_image,
    image_key,
    predict_file,
    read_questions,
    write_in_input_order,
)

runner = CliRunner()


def write_questions(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def read_answers(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_is_batched_and_resumable(tiny_model_dir, tiny_api, images, tmp_path) -> None:
    for name, source in images.items():
        (tmp_path / f"{name}.png").write_bytes(source.read_bytes())
    records = [{"id": i, "image": ["scan.png", "slide.png"][i % 2], "question": f"What is finding {i}?"} for i in range(5)]
    questions, out = tmp_path / "q.jsonl", tmp_path / "answers" / "a.jsonl"
    command = ["predict", "--input", str(questions), "--out", str(out), "--model", str(tiny_model_dir), "--batch-size", "2", "--max-new-tokens", "8"]

    write_questions(questions, records[:3])
    first = runner.invoke(app, command)
    assert first.exit_code == 0, first.output
    assert "answered 3, skipped 0" in first.output
    # An interrupted run leaves a half-written line: the rerun drops it and redoes that question.
    answers = read_answers(out)
    out.write_text("".join(json.dumps(a) + "\n" for a in answers[:2]) + json.dumps(answers[2])[:20])
    write_questions(questions, records)
    second = runner.invoke(app, command)
    assert second.exit_code == 0, second.output
    assert "answered 3, skipped 2" in second.output

    answers = read_answers(out)
    assert [a["id"] for a in answers] == [0, 1, 2, 3, 4]
    for answer, record in zip(answers, records, strict=True):
        request = ChatRequest(tmp_path / record["image"], [{"role": "user", "content": record["question"]}])
        expected = tiny_api.generate([request], max_new_tokens=8)[0]
        assert (answer["answer"], answer["prompt_tokens"], answer["completion_tokens"]) == (
            expected.text,
            expected.prompt_tokens,
            expected.completion_tokens,
        )
    third = runner.invoke(app, command)
    assert "answered 0, skipped 5" in third.output and len(read_answers(out)) == 5


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"id": 1, "image": "scan.png", "question": "a?"}', '{"id": 2, "image": "scan.png"}'], ":2: missing field(s) question"),
        (['{"id": 1, "image": "scan.png", "question": "a?"}', "{not json"], ":2: not valid JSON"),
        (['{"id": "x", "image": "scan.png", "question": "a?"}', '{"id": "x", "image": "scan.png", "question": "b?"}'], ':2: id "x" already used on line 1'),
        (['{"id": 7, "image": "notes.txt", "question": "a?"}'], ":1 (id 7): image"),
    ],
)
def test_predict_names_the_bad_record(tiny_model_dir, images, tmp_path, lines, message) -> None:
    (tmp_path / "scan.png").write_bytes(images["scan"].read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["predict", "--input", str(questions), "--out", str(tmp_path / "a.jsonl"), "--model", str(tiny_model_dir)])
    assert result.exit_code == 1
    assert f"error: {questions}{message}" in result.output


def test_questions_keep_their_id_type_and_resolve_images_beside_the_file(tmp_path) -> None:
    path = tmp_path / "sub" / "q.jsonl"
    path.parent.mkdir()
    write_questions(path, [{"id": 1, "image": "a.png", "question": "x?"}, {"id": "1", "image": "../b.png", "question": "y?"}])
    first, second = read_questions(path)
    assert (first.line, first.id, first.image, first.key) == (1, 1, path.parent / "a.png", "1")
    assert (second.id, second.key, second.image) == ("1", '"1"', path.parent / "../b.png")  # 1 and "1" differ
    path.write_text('{"id": 3, "image": "a.png", "question": "  "}\n')
    with pytest.raises(PredictionInputError, match=r"q\.jsonl:1: 'image' must be a path string and 'question' a non-empty"):
        read_questions(path)


def test_answered_ids_drop_a_torn_last_line(tmp_path) -> None:
    out = tmp_path / "a.jsonl"
    assert answered_ids(out) == set()
    out.write_text(json.dumps({"id": 1, "answer": "yes"}) + "\n" + json.dumps({"id": "2", "answer": "no"}) + "\n" + '{"id": 3, "ans')
    assert answered_ids(out) == {"1", '"2"'}
    assert out.read_text().count("\n") == 2 and out.read_text().endswith("}\n")  # the torn line is gone
    out.write_text(json.dumps({"answer": "no id"}) + "\n")
    with pytest.raises(PredictionInputError, match=r"a\.jsonl:1: not an answer line with an id"):
        answered_ids(out)


def test_grouping_batches_and_input_order(tmp_path) -> None:
    questions = [Question(i + 1, i, tmp_path / name, "q?") for i, name in enumerate(["a.png", "b.png", "a.png", "c.png", "b.png"])]
    grouped = grouped_by_image(questions)
    assert [q.id for q in grouped] == [0, 2, 1, 4, 3]  # images in order of first appearance, questions in input order
    assert [[q.id for q in batch] for batch in batches(grouped, 2)] == [[0, 2], [1, 4], [3]]
    out = tmp_path / "a.jsonl"
    out.write_text("".join(json.dumps({"id": i, "answer": str(i)}) + "\n" for i in [3, "extra", 0, 2, 1, 4]))
    write_in_input_order(out, questions)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [0, 1, 2, 3, 4, "extra"]


def test_image_key_is_the_file_hash_or_includes_the_options(images) -> None:
    scan = images["scan"]
    assert image_key(scan, {}) == image_key(scan, {"window": None, "frame": None}) == file_sha256(scan.resolve())
    lung = image_key(scan, {"window": "lung", "frame": None})
    assert len(lung) == 64 and lung != file_sha256(scan.resolve()) and lung == image_key(scan, {"window": "lung"})
    assert lung != image_key(scan, {"window": "bone"}) and lung != image_key(images["slide"], {"window": "lung"})


def test_predict_file_answers_grouped_batches_and_writes_in_input_order(tiny_api, images, tmp_path) -> None:
    for name, source in images.items():
        (tmp_path / f"{name}.png").write_bytes(source.read_bytes())
    records = [{"id": f"q{i}", "image": ["scan.png", "slide.png"][i % 2], "question": f"Finding {i}?"} for i in range(5)]
    write_questions(tmp_path / "q.jsonl", records)
    sizes: list[int] = []
    answered = predict_file(tiny_api, tmp_path / "q.jsonl", tmp_path / "a.jsonl", batch_size=2, on_batch=sizes.append,
                            settings=GenerationSettings(max_new_tokens=4))
    assert answered == (5, 0) and sizes == [2, 2, 1]
    answers = read_answers(tmp_path / "a.jsonl")
    assert [a["id"] for a in answers] == [r["id"] for r in records]
    assert all(a["finish_reason"] in ("stop", "length") and a["question"] == r["question"] for a, r in zip(answers, records))
