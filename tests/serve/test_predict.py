"""`llama3med ask` and `llama3med predict` (batched, resumable) give the Python API's answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llama3med.api import ChatRequest
from llama3med.cli.main import app

runner = CliRunner()


def test_ask_prints_the_python_api_answer(tiny_model_dir, tiny_api, images) -> None:
    result = runner.invoke(app, ["ask", str(images["scan"]), "Is there a fracture?", "--model", str(tiny_model_dir), "--max-new-tokens", "14"])
    assert result.exit_code == 0, result.output
    assert result.stdout == tiny_api.chat(images["scan"], "Is there a fracture?", max_new_tokens=14) + "\n"


def test_ask_with_a_bad_image_names_the_file(tiny_model_dir, tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = runner.invoke(app, ["ask", str(broken), "What?", "--model", str(tiny_model_dir)])
    assert result.exit_code == 1
    assert "broken.png" in result.output


def test_ask_with_a_folder_that_is_no_model(tmp_path, images) -> None:
    result = runner.invoke(app, ["ask", str(images["scan"]), "What?", "--model", str(tmp_path)])
    assert result.exit_code == 2 and "no config.json" in result.output


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


def test_image_options_reach_the_loader(tiny_model_dir, tiny_api, tmp_path) -> None:
    import nibabel as nib
    import numpy as np

    from llama3med.io.images import load_image

    volume = np.random.default_rng(3).normal(50, 40, size=(48, 40, 6)).astype(np.float32)  # [x, y, slices]
    volume[..., 4] += 300  # slice 4 is much brighter: a different slice or window is a different image
    path = tmp_path / "volume.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    chosen = load_image(path, slice_index=4, window="300,200")
    assert np.asarray(chosen).tolist() != np.asarray(load_image(path)).tolist()

    result = runner.invoke(
        app, ["ask", str(path), "Which slice?", "--model", str(tiny_model_dir), "--slice", "4", "--window", "300,200", "--max-new-tokens", "8"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == tiny_api.chat(chosen, "Which slice?", max_new_tokens=8) + "\n"

    bad = runner.invoke(app, ["ask", str(path), "Which slice?", "--model", str(tiny_model_dir), "--window", "sideways"])
    assert bad.exit_code == 2 and "invalid window" in bad.output
