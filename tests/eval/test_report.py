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
    assert check["benchmarks"]["vqa-rad"] == {"test_images": 2, "images_in_training_data": 1, "questions_on_those_images": 2, "example_question_ids": ["q1"]}


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
    ours = next(line for line in text.splitlines() if line.startswith("| **my-model** (ours) | zero-shot |"))
    assert ours.endswith(f"| {sum(six) / 6:.2f} |")
    assert "| LLaVA-7B (general) | published, not re-run | 20.74 | 59.19 | 26.82 | 50.24 | 8.74 | 45.65 | 35.23 |" in text
    assert "| LLaVA-Med 13B | published, not re-run | 31.66 | 61.40 | 37.71 | 49.76 | 11.34 | 49.63 | 40.25 |" in text
    assert "Reproduce: `llama3med eval --model /models/my-model`" in text

    breakdown_chart(results, tmp_path / "chart.png")
    with Image.open(tmp_path / "chart.png") as chart:
        assert chart.format == "PNG" and chart.width == 800 and chart.height > 1000  # 6 panels stacked


def test_average_needs_all_three_benchmarks(small_benchmark_dir: Path) -> None:
    benchmark = load_benchmark("vqa-rad", small_benchmark_dir)
    results = {"vqa-rad": score_benchmark(benchmark, {"q1": "left lung", "q2": "no", "q3": "x", "q4": "no"})}
    assert our_row_cells(results) == [50.0, 50.0, None, None, None, None, None]
    assert "| **my-model** (ours) | not zero-shot | 50.00 | 50.00 | – | – | – | – | – |" in markdown_report(fake_run_report(results, NOT_ZERO_SHOT))
