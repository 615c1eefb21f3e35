"""Honest reports: named protocols, metric ceilings, the closed rule stated, published rows marked as another
protocol, and the zero-shot label from the training data's sources as well as image overlap."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llama3med.cli.main import app
from llama3med.eval.benchmarks import load_benchmark
from llama3med.eval.protocols import PROTOCOLS, describe_protocol, get_protocol
from llama3med.eval.report import FINE_TUNED_ON, NOT_ZERO_SHOT, ZERO_SHOT, contamination_check
from llama3med.eval.scoring import metric_ceilings
from llama3med.eval.templates import PromptTemplates


def run_eval(model: Path, data_root: Path, out: Path, *extra: str) -> dict:
    args = ["eval", "--model", str(model), "--benchmarks", "vqa-rad", "--data-root", str(data_root), "--out", str(out),
            "--limit", "10", "--batch-size", "10", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


def test_both_protocols_run_on_ten_vqa_rad_questions(tiny_model_dir: Path, benchmarks_dir: Path, tmp_path: Path) -> None:
    ours = run_eval(tiny_model_dir, benchmarks_dir, tmp_path / "ours")
    assert ours["protocol"]["name"] == "ours" and ours["protocol"]["changed"] == {}
    assert ours["decoding"] == {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 0}
    assert "yes" in ours["prompts"]["closed"]["text"]

    llava = run_eval(tiny_model_dir, benchmarks_dir, tmp_path / "llava-med", "--protocol", "llava-med")
    assert llava["protocol"]["name"] == "llava-med" and llava["protocol"]["changed"] == {}
    assert llava["decoding"] == {"max_new_tokens": 1024, "temperature": 0.7, "top_p": 1.0, "seed": 0}
    assert llava["prompts"]["closed"]["text"].strip() == "{question}" == llava["prompts"]["open"]["text"].strip()
    assert "--protocol llava-med" in llava["command"]

    for report, out in ((ours, tmp_path / "ours"), (llava, tmp_path / "llava-med")):
        ceilings = report["ceilings"]["vqa-rad"]
        assert ceilings["llava_med_open_recall"] == 100.0 and ceilings["strict_closed_accuracy"] == 100.0
        assert 0 < ceilings["llava_med_closed_accuracy"] <= 100.0
        assert "fix #35" in report["metric_rules"]["closed"]
        assert "other protocol" in report["published_baselines"]["label"]
        markdown = (out / "report.md").read_text()
        assert f"Protocol: **{report['protocol']['name']}**" in markdown
        assert "## Metric ceilings" in markdown and "fix #35 (commit b9a98a7, 2023-12-11)" in markdown
        predictions = (out / "predictions" / "vqa-rad.jsonl").read_text().splitlines()
        assert len(predictions) == 10


def test_changed_settings_are_named_and_a_rerun_with_another_protocol_is_refused(
    tiny_model_dir: Path, benchmarks_dir: Path, tmp_path: Path
) -> None:
    report = run_eval(tiny_model_dir, benchmarks_dir, tmp_path / "run", "--protocol", "llava-med", "--max-new-tokens", "4")
    assert report["protocol"]["changed"] == {"max_new_tokens": 4}
    assert "changed here: max_new_tokens=4" in (tmp_path / "run" / "report.md").read_text()
    args = ["eval", "--model", str(tiny_model_dir), "--benchmarks", "vqa-rad", "--data-root", str(benchmarks_dir),
            "--out", str(tmp_path / "run"), "--limit", "10", "--max-new-tokens", "4"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code != 0 and "protocol" in refused.output
    unknown = CliRunner().invoke(app, [*args[:-2], "--protocol", "medpalm"])
    assert unknown.exit_code != 0 and "unknown protocol 'medpalm'" in unknown.output


def test_python_api_runs_are_described_by_the_protocol_they_match() -> None:
    ours = get_protocol("ours")
    assert describe_protocol(ours.decoding, PromptTemplates.load())["name"] == "ours"
    llava = PROTOCOLS["llava-med"]
    assert describe_protocol(llava.decoding, llava.templates())["name"] == "llava-med"
    assert describe_protocol(llava.decoding, PromptTemplates.load())["name"] == "custom"


def test_ceilings_of_the_real_test_sets(benchmarks_dir: Path) -> None:
    # LLaVA-Med's (llava/eval/run_eval.py) closed rule cannot score option questions ("left or right?").
    assert metric_ceilings(load_benchmark("vqa-rad", benchmarks_dir / "vqa-rad"))["llava_med_closed_accuracy"] == pytest.approx(93.38, abs=0.01)
    assert metric_ceilings(load_benchmark("slake", benchmarks_dir / "slake"))["llava_med_closed_accuracy"] == pytest.approx(85.34, abs=0.01)


def write_manifest(folder: Path, lines: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "training_manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def test_training_on_a_benchmarks_train_split_is_fine_tuned_even_with_disjoint_images(
    make_benchmark, tmp_path: Path
) -> None:
    slake = load_benchmark("slake", make_benchmark(tmp_path / "data" / "slake", [
        {"id": "s1", "image": "a.png", "question": "Is this a CT?", "answer": "yes", "answer_type": "CLOSED"},
        {"id": "s2", "image": "b.png", "question": "Which organ?", "answer": "liver", "answer_type": "OPEN"},
    ], {"a.png": (1, 2, 3), "b.png": (4, 5, 6)}))
    rad = load_benchmark("vqa-rad", make_benchmark(tmp_path / "data" / "vqa-rad", [
        {"id": "r1", "image": "c.png", "question": "Is it normal?", "answer": "no", "answer_type": "CLOSED"},
    ], {"c.png": (7, 8, 9)}))
    other_image = hashlib.sha256(b"an image no test set holds").hexdigest()
    model = tmp_path / "model"
    write_manifest(model, [
        {"source": "slake/train", "image": "x.png", "image_sha256": other_image, "data_file": "/data/slake/train.jsonl"},
        {"source": "llava_med_instruct_60k", "image": "y.png", "image_sha256": other_image},
    ])
    check = contamination_check(model, [slake, rad])
    assert check["benchmarks"]["slake"]["label"] == FINE_TUNED_ON + "SLAKE" == "fine-tuned on SLAKE"
    assert check["benchmarks"]["slake"]["images_in_training_data"] == 0  # the images are disjoint
    assert check["benchmarks"]["vqa-rad"]["label"] == ZERO_SHOT
    assert check["label"] == "fine-tuned on SLAKE"

    # Only the data file names the benchmark (a custom source name): still caught.
    write_manifest(model, [{"source": "my-mix", "image": "x.png", "image_sha256": other_image, "data_file": "/d/PathVQA_train.json"}])
    check = contamination_check(model, [slake, rad])
    assert check["label"] == ZERO_SHOT and check["benchmarks_in_training_sources"] == ["pathvqa"]
    # Sources that merely contain the letters do not count ("radiology", "slaked").
    write_manifest(model, [{"source": "radiology/slaked", "image": "x.png", "image_sha256": other_image}])
    assert contamination_check(model, [slake, rad])["label"] == ZERO_SHOT
    # Image overlap without a naming source stays "not zero-shot".
    red = hashlib.sha256((tmp_path / "data" / "vqa-rad" / "images" / "c.png").read_bytes()).hexdigest()
    write_manifest(model, [{"source": "mystery", "image": "z.png", "image_sha256": red}])
    assert contamination_check(model, [slake, rad])["label"] == NOT_ZERO_SHOT
