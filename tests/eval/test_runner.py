"""The `eval` protocol end to end on our own checkpoints (`llama3med.eval.runner`): full VQA-RAD on the `tiny`
preset, resume after an interruption, refusal to mix settings; a 50-question run on the `small` preset (slow).
Grouped by image: with room for only one image's features in memory, every image is encoded exactly once per
run; predictions land in dataset order, equal to the one-question-per-call loop's; a run interrupted between
batches resumes to the same file; `--feature-cache` makes a rerun encode nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from llama3med.api import Llama3Med
from llama3med.cli.main import app
from llama3med.eval.answerers import Llama3MedAnswerer, config_sha256
from llama3med.eval.benchmarks import Benchmark, load_benchmark
from llama3med.eval.runner import ResumeError, completed_predictions, grouped_by_image, run_benchmark
from llama3med.eval.templates import PromptTemplates
from llama3med.generation import GenerationSettings
from llama3med.model.image_feature_cache import pixel_key


def run_eval(model: Path, data_root: Path, out: Path, *extra: str) -> None:
    args = ["eval", "--model", str(model), "--benchmarks", "vqa-rad", "--data-root", str(data_root), "--out", str(out), *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def test_full_vqa_rad_run_on_the_tiny_preset(tiny_model_dir: Path, benchmarks_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny-eval"
    run_eval(tiny_model_dir, benchmarks_dir, out, "--max-new-tokens", "3", "--batch-size", "32")
    predictions = out / "predictions" / "vqa-rad.jsonl"
    ids = [json.loads(line)["id"] for line in predictions.read_text().splitlines()]
    assert ids == [q.id for q in load_benchmark("vqa-rad", benchmarks_dir / "vqa-rad").questions]
    report = json.loads((out / "report.json").read_text())
    scores = report["benchmarks"]["vqa-rad"]
    assert scores["counts"] == {"open": 179, "closed": 272, "questions": 451, "images": 203}
    assert set(scores) >= {"llava_med", "strict", "bleu1", "counts", "breakdowns"}
    assert set(scores["llava_med"]) == {"open_recall", "closed_accuracy"}
    assert set(scores["strict"]) == {"closed_accuracy", "open_exact_match", "open_f1"}
    assert report["runs"]["vqa-rad"]["official_count_mismatches"] == []
    assert report["model"] == {"kind": "llama3med", "path": str(tiny_model_dir), "config_sha256": config_sha256(tiny_model_dir)}
    assert report["prompts"]["closed"]["text"] == PromptTemplates.load().texts["CLOSED"]
    assert report["decoding"] == {"max_new_tokens": 3, "temperature": 0.0, "top_p": 1.0, "seed": 0}
    assert report["label"].startswith("zero-shot (unverified") and "torch" in report["packages"]
    assert "| **" in (out / "report.md").read_text() and (out / "breakdowns.png").stat().st_size > 10_000

    # A rerun finds every prediction done: nothing is generated again and the figures are the same.
    before = predictions.read_bytes()
    run_eval(tiny_model_dir, benchmarks_dir, out, "--max-new-tokens", "3", "--batch-size", "32")
    assert predictions.read_bytes() == before
    assert json.loads((out / "report.json").read_text())["benchmarks"] == report["benchmarks"]

    # `score` on the same predictions gives the same figures as `eval` wrote.
    result = CliRunner().invoke(app, ["score", "--benchmark", "vqa-rad", "--data-root", str(benchmarks_dir),
                                      "--predictions", str(predictions), "--out", str(tmp_path / "scores.json")])
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "scores.json").read_text())["benchmarks"]["vqa-rad"]
    assert {k: scored[k] for k in ("llava_med", "strict", "bleu1", "counts", "breakdowns")} == {
        k: scores[k] for k in ("llava_med", "strict", "bleu1", "counts", "breakdowns")
    }


def test_resume_after_an_interruption(tiny_model_dir: Path, small_benchmark_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    options = ("--max-new-tokens", "4", "--batch-size", "2")
    run_eval(tiny_model_dir, small_benchmark_dir.parent, out, *options)
    predictions = out / "predictions" / "vqa-rad.jsonl"
    complete = predictions.read_text()
    # Killed while writing the second batch: one full batch on disk and a torn line.
    predictions.write_text("".join(complete.splitlines(keepends=True)[:2]) + '{"id": "q3", "predic')
    run_eval(tiny_model_dir, small_benchmark_dir.parent, out, *options)
    assert predictions.read_text() == complete

    result = CliRunner().invoke(app, ["eval", "--model", str(tiny_model_dir), "--benchmarks", "vqa-rad", "--data-root",
                                      str(small_benchmark_dir.parent), "--out", str(out), "--max-new-tokens", "5"])
    assert result.exit_code == 1 and "holds predictions made with other settings (changed: decoding)" in result.output
    run_eval(tiny_model_dir, small_benchmark_dir.parent, out, "--max-new-tokens", "5", "--overwrite")
    assert json.loads((out / "run.json").read_text())["decoding"]["max_new_tokens"] == 5


def test_corrupt_or_foreign_prediction_lines_stop_a_resume(small_benchmark_dir: Path, tmp_path: Path) -> None:
    benchmark = load_benchmark("vqa-rad", small_benchmark_dir)
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "q1", "prediction": "a"}\nnot json\n{"id": "q2", "prediction": "b"}\n')
    with pytest.raises(ResumeError, match=r"p\.jsonl:2: not valid JSON \(.*\); remove the file to start over"):
        completed_predictions(path, benchmark)
    path.write_text('{"id": "q1", "prediction": "a"}\n{"id": "q2"}\n')
    with pytest.raises(ResumeError, match=r"p\.jsonl:2: not a prediction line \('prediction'\); remove the file"):
        completed_predictions(path, benchmark)
    path.write_text('{"id": "q1", "prediction": "a"}\n{"id": "zz", "prediction": "b"}\n')
    with pytest.raises(ResumeError, match=r"p\.jsonl:2: id 'zz' is not a question of vqa-rad"):
        completed_predictions(path, benchmark)


def test_llama3med_batched_answers_equal_one_at_a_time(tiny_model_dir: Path) -> None:
    answerer = Llama3MedAnswerer.from_pretrained(tiny_model_dir, GenerationSettings(max_new_tokens=6))
    images = [Image.new("RGB", (50 + 13 * i, 40), (40 * i, 90, 200 - 30 * i)) for i in range(4)]
    prompts = ["Is there a nodule?", "What organ is shown in this image? Answer with a single word.", "Where?", "Is this a CT scan?"]
    batched = answerer.answer(images, prompts)
    assert batched == [answerer.answer([image], [prompt])[0] for image, prompt in zip(images, prompts, strict=True)]


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~20 s a question on a busy 2-core CPU: the 21-tile image encoding dominates
def test_fifty_questions_on_the_small_preset(benchmarks_dir: Path, tmp_path: Path) -> None:
    from llama3med.model.presets import build_preset

    model_dir = tmp_path / "small"
    model, processor = build_preset("small")
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    out = tmp_path / "small-eval"
    run_eval(model_dir, benchmarks_dir, out, "--limit", "50", "--batch-size", "16", "--max-new-tokens", "16")
    report = json.loads((out / "report.json").read_text())
    scores = report["benchmarks"]["vqa-rad"]
    assert scores["counts"]["questions"] == 50
    assert all(v is None or 0.0 <= v <= 100.0 for v in (*scores["llava_med"].values(), *scores["strict"].values()))
    assert report["runs"]["vqa-rad"]["limit"] == 50 and report["runs"]["vqa-rad"]["full_size"] == 451
    assert "(first 50 of 451)" in (out / "report.md").read_text()
    assert (out / "breakdowns.png").is_file()


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
