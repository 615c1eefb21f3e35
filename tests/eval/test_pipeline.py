"""`evaluate` (`llama3med.eval.pipeline`) on the `tiny` preset: the output folder's files, what the report
records, resuming with the same settings, refusing other settings unless told to start over."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from llama3med.eval.answerers import Llama3MedAnswerer
from llama3med.eval.benchmarks import load_benchmark
from llama3med.eval.pipeline import evaluate
from llama3med.eval.report import UNVERIFIED
from llama3med.eval.runner import ResumeError
from llama3med.eval.templates import PromptTemplates
from llama3med.generation import GenerationSettings

DECODING = GenerationSettings(max_new_tokens=3)
COMMAND = "llama3med eval --model tiny --benchmarks vqa-rad --limit 3"


@pytest.fixture(scope="module")
def answerer(tiny_model_dir: Path) -> Llama3MedAnswerer:
    return Llama3MedAnswerer.from_pretrained(tiny_model_dir, DECODING)


def test_the_folder_and_the_report(answerer, small_benchmark_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    benchmark, templates, out = load_benchmark("vqa-rad", small_benchmark_dir), PromptTemplates.load(), tmp_path / "out"
    batches: list[tuple[str, int]] = []
    report = evaluate(answerer, [benchmark], templates, out, decoding=DECODING, batch_size=2, limit=3,
                      model_dir=tiny_model_dir, command=COMMAND, on_batch=lambda name, n: batches.append((name, n)))
    assert sorted(p.name for p in out.iterdir()) == ["breakdowns.png", "predictions", "report.json", "report.md", "run.json"]
    predictions = out / "predictions" / "vqa-rad.jsonl"
    assert [json.loads(line)["id"] for line in predictions.read_text().splitlines()] == ["q1", "q2", "q3"]
    assert sum(n for _, n in batches) == 3 and {name for name, _ in batches} == {"vqa-rad"}
    run = report["runs"]["vqa-rad"]
    assert (run["limit"], run["full_size"], run["layout"]) == (3, 4, benchmark.layout)
    assert run["predictions_sha256"] == hashlib.sha256(predictions.read_bytes()).hexdigest()
    assert run["official_count_mismatches"] == benchmark.check_counts()
    assert report["benchmarks"]["vqa-rad"]["counts"]["questions"] == 3
    assert (report["label"], report["model"], report["command"]) == (UNVERIFIED, answerer.describe(), COMMAND)
    assert report["decoding"] == DECODING.as_dict() and report["prompts"] == templates.describe()
    assert report["batch_size"] == 2 and "closed" in report["metric_rules"]
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))  # tuples are JSON lists
    settings = json.loads((out / "run.json").read_text())
    assert settings["decoding"] == DECODING.as_dict() and settings["prompts"]["closed"] == templates.describe()["closed"]["sha256"]


def test_a_rerun_resumes_and_other_settings_need_overwrite(answerer, small_benchmark_dir: Path, tmp_path: Path) -> None:
    benchmark, templates, out = load_benchmark("vqa-rad", small_benchmark_dir), PromptTemplates.load(), tmp_path / "out"
    evaluate(answerer, [benchmark], templates, out, decoding=DECODING, limit=2)
    before = (out / "predictions" / "vqa-rad.jsonl").read_bytes()
    batches: list[int] = []
    evaluate(answerer, [benchmark], templates, out, decoding=DECODING, limit=2, on_batch=lambda _, n: batches.append(n))
    assert batches == [] and (out / "predictions" / "vqa-rad.jsonl").read_bytes() == before  # nothing left to answer
    longer = GenerationSettings(max_new_tokens=5)
    with pytest.raises(ResumeError, match=r"holds predictions made with other settings \(changed: decoding"):
        evaluate(answerer, [benchmark], templates, out, decoding=longer, limit=2)
    report = evaluate(answerer, [benchmark], templates, out, decoding=longer, limit=2, overwrite=True)
    assert report["decoding"]["max_new_tokens"] == 5
    assert json.loads((out / "run.json").read_text())["decoding"]["max_new_tokens"] == 5


def test_benchmark_names_must_be_unique(answerer, small_benchmark_dir: Path, tmp_path: Path) -> None:
    benchmark = load_benchmark("vqa-rad", small_benchmark_dir)
    with pytest.raises(ValueError, match=r"benchmark names must be unique, got \['vqa-rad', 'vqa-rad'\]"):
        evaluate(answerer, [benchmark, benchmark], PromptTemplates.load(), tmp_path / "out", decoding=DECODING)
    assert not (tmp_path / "out").exists()
