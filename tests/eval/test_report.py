"""Contamination check on the real VQA-RAD train/test overlap, the Markdown table and the chart."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from llama3med.eval.benchmarks import load_benchmark, load_jsonl_layout
from llama3med.eval.report import (
    NOT_ZERO_SHOT,
    UNVERIFIED,
    ZERO_SHOT,
    ManifestError,
    breakdown_chart,
    breakdown_figure,
    contamination_check,
    markdown_report,
    our_row_cells,
)
from llama3med.eval.scoring import score_benchmark
from llama3med.eval.templates import PromptTemplates


def write_manifest(folder: Path, digests: list[str | None]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "training_manifest.stage2.jsonl"
    path.write_text("".join(json.dumps({"image_sha256": d, "source": "test"}) + "\n" for d in digests), encoding="utf-8")
    return path


def test_vqa_rad_train_images_make_the_test_run_not_zero_shot(benchmarks_dir: Path, tmp_path: Path) -> None:
    test = load_benchmark("vqa-rad", benchmarks_dir / "vqa-rad")
    train = load_jsonl_layout("vqa-rad", benchmarks_dir / "vqa-rad", split="train")
    train_digests = {hashlib.sha256(q.image_bytes()).hexdigest() for q in train.questions}
    test_by_digest: dict[str, list[str]] = {}
    for q in test.questions:
        test_by_digest.setdefault(hashlib.sha256(q.image_bytes()).hexdigest(), []).append(q.id)
    shared = train_digests & set(test_by_digest)
    assert shared  # the README: VQA-RAD's train and test splits share images

    model_dir = tmp_path / "model"
    write_manifest(model_dir, sorted(train_digests) + [None])  # null: a text-only example
    check = contamination_check(model_dir, [test])
    assert check["label"] == NOT_ZERO_SHOT
    assert check["training_images"] == len(train_digests)
    assert check["benchmarks"]["vqa-rad"]["images_in_training_data"] == len(shared)
    assert check["benchmarks"]["vqa-rad"]["questions_on_those_images"] == sum(len(test_by_digest[d]) for d in shared)


def test_labels_without_overlap_and_without_manifest(small_benchmark_dir: Path, tmp_path: Path) -> None:
    benchmark = load_benchmark("vqa-rad", small_benchmark_dir)
    assert contamination_check(tmp_path / "no-manifest", [benchmark])["label"] == UNVERIFIED
    assert contamination_check(None, [benchmark])["label"] == UNVERIFIED
    write_manifest(tmp_path / "clean", ["ab" * 32])
    assert contamination_check(tmp_path / "clean", [benchmark])["label"] == ZERO_SHOT
    red = hashlib.sha256((small_benchmark_dir / "images" / "red.png").read_bytes()).hexdigest()
    write_manifest(tmp_path / "dirty", [red.upper()])
    check = contamination_check(tmp_path / "dirty", [benchmark])
    assert check["label"] == NOT_ZERO_SHOT
    assert check["benchmarks"]["vqa-rad"] == {"label": NOT_ZERO_SHOT, "training_sources_naming_it": [], "test_images": 2,
                                              "images_in_training_data": 1, "questions_on_those_images": 2, "example_question_ids": ["q1"]}


def test_malformed_manifest_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "training_manifest.jsonl").write_text('{"image_sha256": "abc"}\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"training_manifest\.jsonl:1: image_sha256 must be 64 hex characters"):
        contamination_check(tmp_path, [])
    (tmp_path / "training_manifest.jsonl").write_text('{"image": "x.png"}\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r'training_manifest\.jsonl:1: each manifest line needs an "image_sha256" field'):
        contamination_check(tmp_path, [])


def fake_run_report(results: dict, label: str = ZERO_SHOT) -> dict:
    """A report dict as `pipeline.evaluate` builds it, around real scores."""
    return {
        "label": label,
        "model": {"kind": "llama3med", "path": "/models/my-model", "config_sha256": "0" * 64},
        "benchmarks": results,
        "runs": {name: {"data": f"/data/{name}/test.jsonl", "layout": "jsonl", "limit": None, "full_size": r["counts"]["questions"],
                        "official_count_mismatches": []} for name, r in results.items()},
        "contamination": {"label": label, "manifests": [], "training_images": 0, "benchmarks": {}},
        "prompts": PromptTemplates.load().describe(),
        "decoding": {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 0},
        "batch_size": 16,
        "command": "llama3med eval --model /models/my-model",
    }


def test_markdown_table_has_ours_beside_published_baselines(benchmarks_dir: Path, tmp_path: Path) -> None:
    results = {}
    for name in ("vqa-rad", "slake", "pathvqa"):
        benchmark = load_benchmark(name, benchmarks_dir / name).limited(200)
        results[name] = score_benchmark(benchmark, {q.id: "yes" for q in benchmark.questions})
    cells = our_row_cells(results)
    six = [results[n]["llava_med"][k] for n in ("vqa-rad", "slake", "pathvqa") for k in ("open_recall", "closed_accuracy")]
    assert cells == six + [pytest.approx(sum(six) / 6)]
    text = markdown_report(fake_run_report(results))
    ours = next(line for line in text.splitlines() if line.startswith("| **my-model (ours)** | zero-shot |"))
    assert ours.endswith(f"| {sum(six) / 6:.2f} |")
    assert "| LLaVA-7B (general) | published, not re-run; other protocol | 20.74 | 59.19 | 26.82 | 50.24 | 8.74 | 45.65 | 35.23 |" in text
    assert "| LLaVA-Med 13B | published, not re-run; other protocol | 31.66 | 61.40 | 37.71 | 49.76 | 11.34 | 49.63 | 40.25 |" in text
    assert "Reproduce: `llama3med eval --model /models/my-model`" in text

    breakdown_chart(fake_run_report(results), tmp_path / "chart.png")
    with Image.open(tmp_path / "chart.png") as chart:
        assert chart.format == "PNG" and chart.width == 800 and chart.height > 1000  # 6 panels stacked


def test_average_needs_all_three_benchmarks(small_benchmark_dir: Path) -> None:
    benchmark = load_benchmark("vqa-rad", small_benchmark_dir)
    results = {"vqa-rad": score_benchmark(benchmark, {"q1": "left lung", "q2": "no", "q3": "x", "q4": "no"})}
    assert our_row_cells(results) == [50.0, 50.0, None, None, None, None, None]
    assert "| **my-model (ours)** | not zero-shot | 50.00 | 50.00 | – | – | – | – | – |" in markdown_report(fake_run_report(results, NOT_ZERO_SHOT))


def test_partial_runs_are_labelled_and_never_averaged_beside_published_rows(small_benchmark_dir: Path) -> None:
    benchmark = load_benchmark("vqa-rad", small_benchmark_dir)
    subset = benchmark.limited(2)
    results = {"vqa-rad": score_benchmark(subset, {"q1": "left lung", "q2": "no"})}
    report = fake_run_report(results)
    report["runs"]["vqa-rad"].update(limit=2, full_size=4)
    text = markdown_report(report)
    assert "published, not re-run" not in text and "| Avg |" not in text  # nothing full-test to compare with
    assert "| VQA-RAD | first 2 of 4 | 100.00 | 100.00 |" in text
    assert "| VQA-RAD | first 2 of 4 | 1 | /data/vqa-rad/test.jsonl (jsonl) | matches |" in text


def test_custom_data_sets_are_in_the_table_without_an_official_size_check(small_benchmark_dir: Path, benchmarks_dir: Path) -> None:
    official = load_benchmark("vqa-rad", benchmarks_dir / "vqa-rad")
    custom = load_benchmark("vqa-rad", small_benchmark_dir)
    results = {"vqa-rad": score_benchmark(official, {q.id: "yes" for q in official.questions}),
               "my-data/test": score_benchmark(custom, {"q1": "left lung", "q2": "no", "q3": "x", "q4": "no"})}
    report = fake_run_report(results)
    text = markdown_report(report)
    rad = results["vqa-rad"]["llava_med"]
    assert f"| **my-model (ours)** | zero-shot | {rad['open_recall']:.2f} | {rad['closed_accuracy']:.2f} | – | – | – | – | – |" in text
    assert "| my-data/test | 4 | 50.00 | 50.00 |" in text  # LLaVA-Med figures of the custom set, not "–"
    assert "| my-data/test | 4 | 2 | /data/my-data/test/test.jsonl (jsonl) | – (no official size) |" in text
    assert "| VQA-RAD | 451 | 203 | /data/vqa-rad/test.jsonl (jsonl) | matches |" in text


@pytest.mark.parametrize(("model", "title"), [
    ({"kind": "llama3med", "path": "/models/my-model"}, "my-model (ours)"),
    ({"kind": "hf", "path": "/models/llava-1.5-7b-hf", "architecture": "LlavaForConditionalGeneration"}, "llava-1.5-7b-hf"),
    ({"kind": "openai-endpoint", "path": "http://127.0.0.1:8000/v1", "model": "llava-med"}, "llava-med"),
])
def test_only_llama3med_models_are_ours(small_benchmark_dir: Path, model: dict, title: str) -> None:
    benchmark = load_benchmark("vqa-rad", small_benchmark_dir)
    report = fake_run_report({"my-data/test": score_benchmark(benchmark, {"q1": "x", "q2": "no", "q3": "x", "q4": "no"})})
    report["model"] = model
    text = markdown_report(report)
    assert text.startswith(f"# Evaluation of {title}\n")
    assert ("(ours)" in text) == (model["kind"] == "llama3med")


def test_chart_has_values_and_a_title_with_model_protocol_label_and_n(small_benchmark_dir: Path, tmp_path: Path) -> None:
    benchmark = load_benchmark("vqa-rad", small_benchmark_dir)
    results = {"vqa-rad": score_benchmark(benchmark, {"q1": "the left side", "q2": "no", "q3": "x", "q4": "no"})}
    report = fake_run_report(results, label="fine-tuned")
    figure = breakdown_figure(report)
    assert figure.get_suptitle() == "my-model (ours): greedy, fixed prompt templates; fine-tuned; n = 4 questions"
    report["protocol"] = "llava-med"
    assert breakdown_figure(report).get_suptitle() == "my-model (ours): llava-med; fine-tuned; n = 4 questions"
    by_type = next(axis for axis in figure.axes if axis.get_title() == "VQA-RAD by answer_type (n=4)")
    # rows CLOSED (q2 hit, q4 "Yes" missed) and OPEN (recalls 0.5 and 0): the open bars, then the closed bars
    assert [text.get_text() for text in by_type.texts] == ["n/a", "25.0", "50.0", "n/a"]
    breakdown_chart(report, tmp_path / "chart.png")
    with Image.open(tmp_path / "chart.png") as chart:
        assert chart.format == "PNG" and chart.width == 800
