"""Evaluation grouped by image on the `tiny` preset: with room for only one image's features in memory, every
image is encoded exactly once per run; predictions land in dataset order, equal to the one-question-per-call
loop's; a run interrupted between batches resumes to the same file; `--feature-cache` makes a rerun encode
nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from llama3med.api import Llama3Med
from llama3med.cli.main import app
from llama3med.eval.answerers import Llama3MedAnswerer
from llama3med.eval.benchmarks import Benchmark, load_benchmark
from llama3med.eval.runner import grouped_by_image, run_benchmark
from llama3med.eval.templates import PromptTemplates
from llama3med.generation import GenerationSettings
from llama3med.model.image_feature_cache import pixel_key

# Three images, their questions interleaved in the file: no two neighbours share an image.
IMAGE_ORDER = ["a", "b", "a", "c", "b", "a", "c", "a", "b", "c", "a"]
QUESTIONS = ["Is there a nodule?", "Which organ is shown?", "Is this normal?", "Where is the lesion?", "Is it a CT scan?"]
DECODING = GenerationSettings(max_new_tokens=6)


@pytest.fixture
def interleaved_dir(tmp_path: Path, make_benchmark) -> Path:
    records = [
        {"id": f"q{i}", "image": f"{name}.png", "question": QUESTIONS[i % len(QUESTIONS)], "answer": "yes" if i % 2 else "liver",
         "answer_type": "CLOSED" if i % 2 else "OPEN", "question_type": "PRES", "image_organ": "ABD"}
        for i, name in enumerate(IMAGE_ORDER)
    ]
    folder = make_benchmark(tmp_path / "vqa-rad", records, {f"{name}.png": (0, 0, 0) for name in "abc"})
    rng = np.random.default_rng(3)
    for name, size in zip("abc", [(60, 80), (90, 50), (64, 64)], strict=True):  # distinct content and shapes
        Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(folder / "images" / f"{name}.png")
    return folder


def one_image_of_memory(api: Llama3Med) -> None:
    """Bound the in-memory features to a single image's: reuse then rests on the grouping alone."""
    api.image_features.max_bytes = api.processor.num_image_tokens * api.model.config.connector_input_size * 4


def count_encoded_images(api: Llama3Med, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every image that reaches the vision encoder, by pixel digest, in order."""
    seen: list[str] = []
    encode = api.model.encode_images

    def counting(pixel_values):  # [M, 3, S, S]
        seen.extend(pixel_key(p) for p in pixel_values)
        return encode(pixel_values)

    monkeypatch.setattr(api.model, "encode_images", counting)
    return seen


def loop_answers(model_dir: Path, benchmark: Benchmark) -> list[str]:
    """The reference: one question per call in file order, nothing reused between calls."""
    from llama3med.io.images import load_image

    answerer = Llama3MedAnswerer.from_pretrained(model_dir, DECODING)
    answerer.api.image_features.max_bytes = 0
    templates = PromptTemplates.load()
    return [answerer.answer([load_image(q.image)], [templates.render(q)])[0] for q in benchmark.questions]


def test_grouped_run_encodes_each_image_once_and_writes_the_loop_answers_in_dataset_order(
    tiny_model_dir: Path, interleaved_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    benchmark = load_benchmark("vqa-rad", interleaved_dir)
    assert [q.image.stem for q in grouped_by_image(benchmark.questions)] == sorted(IMAGE_ORDER)
    expected = loop_answers(tiny_model_dir, benchmark)

    answerer = Llama3MedAnswerer.from_pretrained(tiny_model_dir, DECODING)
    one_image_of_memory(answerer.api)
    encoded = count_encoded_images(answerer.api, monkeypatch)
    path = tmp_path / "predictions.jsonl"
    predictions = run_benchmark(answerer, benchmark, PromptTemplates.load(), path, batch_size=4)

    assert len(encoded) == 3 and len(set(encoded)) == 3  # a, b and c, each exactly once
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["id"] for line in lines] == [q.id for q in benchmark.questions]
    assert [line["prediction"] for line in lines] == expected
    assert list(predictions.values()) == expected
    assert len(set(expected)) > 1  # the answers do depend on the image and question

    # Interrupted after the first batch (4 questions on image a, in the order they were answered), then resumed
    # by a new process: the same file, byte for byte, and only the images still needed are encoded.
    class Interrupted(Exception):
        pass

    def stop(_: int) -> None:
        raise Interrupted

    resumed = tmp_path / "resumed.jsonl"
    with pytest.raises(Interrupted):
        run_benchmark(Llama3MedAnswerer.from_pretrained(tiny_model_dir, DECODING), benchmark, PromptTemplates.load(),
                      resumed, batch_size=4, on_batch=stop)
    assert [json.loads(line)["id"] for line in resumed.read_text().splitlines()] == ["q0", "q2", "q5", "q7"]
    second = Llama3MedAnswerer.from_pretrained(tiny_model_dir, DECODING)
    one_image_of_memory(second.api)
    encoded_on_resume = count_encoded_images(second.api, monkeypatch)
    run_benchmark(second, benchmark, PromptTemplates.load(), resumed, batch_size=4)
    assert resumed.read_bytes() == path.read_bytes()
    assert len(encoded_on_resume) == 3  # a's last question, then b and c


def test_feature_cache_folder_spares_the_encoder_on_a_rerun(tiny_model_dir: Path, interleaved_dir: Path, tmp_path: Path) -> None:
    features = tmp_path / "features"
    command = ["eval", "--model", str(tiny_model_dir), "--benchmarks", "vqa-rad", "--data-root", str(interleaved_dir.parent),
               "--max-new-tokens", "4", "--batch-size", "4", "--feature-cache", str(features)]
    first = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "first")])
    assert first.exit_code == 0, first.output
    assert "3 images encoded" in first.output and len(list(features.rglob("*.safetensors"))) == 3
    second = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "second")])
    assert second.exit_code == 0, second.output
    assert "0 images encoded" in second.output and "3 from disk" in second.output
    first_lines, second_lines = ((tmp_path / run / "predictions" / "vqa-rad.jsonl").read_text() for run in ("first", "second"))
    assert first_lines == second_lines
