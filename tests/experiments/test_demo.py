"""`llama3med demo` end to end on `tiny` (probe -> stage 1 -> stage 2 -> evaluation -> an answer), data-folder
handling, and the confidence intervals of the scales experiment."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from llama3med.cli.main import app
from llama3med.experiments.demo import DemoSettings, demo_command, stage_data, stage_recipe
from llama3med.train.recipe import load_recipe

DEMO_ARGS = ["--preset", "tiny", "--align-steps", "2", "--instruct-steps", "2", "--probe-train", "8", "--probe-test", "3"]


def test_tiny_demo_trains_evaluates_answers_and_reuses_finished_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA3MED_CACHE", str(tmp_path / "cache"))  # the feature cache goes here
    out = tmp_path / "demo"
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--out", str(out), *DEMO_ARGS])
    assert first.exit_code == 0, first.output
    assert (out / "align" / "config.json").is_file() and (out / "align" / "model.safetensors").is_file()
    # stage 2 trains LoRA adapters by default: the model folder is a PEFT folder on its saved base
    assert (out / "model" / "adapter_config.json").is_file() and (out / "model" / "adapter_model.safetensors").is_file()
    assert (out / "model" / "base-model" / "config.json").is_file()
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["label"] == "fine-tuned"
    assert list(report["benchmarks"]) == ["probe/test"]  # named from its folder
    command = shlex.split(report["command"])
    assert command[:4] == ["llama3med", "demo", "--out", str(out)]
    assert all(command[command.index(option) + 1] == value for option, value in zip(DEMO_ARGS[::2], DEMO_ARGS[1::2]))
    assert f"Reproduce: `{report['command']}`" in (out / "eval" / "report.md").read_text()
    results = next(iter(report["benchmarks"].values()))
    # stage 2 learnt the presence questions of the train images, and only the test images' presence questions are asked
    taught = [json.loads(line) for line in (out / "presence-train.jsonl").read_text().splitlines()]
    assert len(taught) == 8 and {row["question_type"] for row in taught} == {"PRES"}
    questions = [json.loads(line) for line in (out / "probe" / "test.jsonl").read_text().splitlines()]
    assert len(questions) > 3 and results["counts"]["closed"] + results["counts"]["open"] == 3
    assert results["counts"]["closed"] == sum(row["question_type"] == "PRES" for row in questions)
    assert "closed (all)" in first.output and "open (all)" in first.output
    assert "answer:" in first.output and str(out / "model") in first.output.replace("\n", "")
    # stage 2 inherits stage 1's training images in its manifest (for the contamination check)
    manifest = [json.loads(line) for line in (out / "model" / "training_manifest.jsonl").read_text().splitlines()]
    train_images = {json.loads(line)["image"] for line in (out / "probe" / "captions.jsonl").read_text().splitlines()}
    assert len(train_images) == 8
    by_source: dict[str, set[str]] = {}
    for entry in manifest:
        by_source.setdefault(entry["source"], set()).add(entry["image"])
    assert len(by_source) == 2 and all(images == train_images for images in by_source.values())

    weights = (out / "model" / "adapter_model.safetensors").stat().st_mtime_ns
    second = runner.invoke(app, ["demo", "--out", str(out), *DEMO_ARGS])
    assert second.exit_code == 0, second.output
    assert second.output.count("already done") == 2
    assert (out / "model" / "adapter_model.safetensors").stat().st_mtime_ns == weights


def test_a_benchmark_folder_trains_both_stages_on_its_train_split(benchmarks_dir: Path) -> None:
    align, instruct, label = stage_data(benchmarks_dir / "vqa-rad")
    assert align == instruct
    assert align == [{"path": str(benchmarks_dir / "vqa-rad" / "train.jsonl"), "format": "vqa",
                      "image_root": str(benchmarks_dir / "vqa-rad" / "images")}]
    assert "not zero-shot" in label


def test_stage_recipes_equal_the_shipped_recipes_with_the_matching_command_line_overrides(tmp_path: Path) -> None:
    for name in ("captions.jsonl", "conversations.jsonl", "targets.jsonl", "test.jsonl"):
        (tmp_path / name).write_text("")
    rows = [{"id": f"train-0-{kind.lower()}", "image": "train-0.png", "question": "q", "answer": "a", "question_type": kind}
            for kind in ("PRES", "COUNT", "POS")]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    align_data, instruct_data, _ = stage_data(tmp_path, "conversations")
    assert instruct_data == [{"path": str(tmp_path / "conversations.jsonl"), "format": "llava",
                              "image_root": str(tmp_path / "images")}]
    _, presence_data, _ = stage_data(tmp_path, "presence", tmp_path / "work")
    assert presence_data == [{"path": str(tmp_path / "work" / "presence-train.jsonl"), "format": "vqa",
                              "image_root": str(tmp_path / "images")}]
    assert [json.loads(line) for line in (tmp_path / "work" / "presence-train.jsonl").read_text().splitlines()] == rows[:1]
    with pytest.raises(ValueError, match="needs a work_dir"):
        stage_data(tmp_path, "presence")
    with pytest.raises(ValueError, match="instruct_data must be one of"):
        stage_data(tmp_path, "captions")
    settings = DemoSettings(preset="tiny", seed=3, batch_size=2, model_args={"scales": [32, 64], "tile_size": 32})
    common = ["seed=3", "training.per_device_train_batch_size=2", "training.logging_steps=4",
              "training.save_steps=1000000", "training.dataloader_num_workers=0",
              "model_args.scales=[32, 64]", "model_args.tile_size=32"]
    out = tmp_path / "demo"
    align = stage_recipe("align", settings, out / "align", align_data, 5)
    instruct = stage_recipe("instruct", settings, out / "model", instruct_data, 7, {"lr_scheduler_type": "constant"},
                            connector=str(out / "align"), feature_cache=True,
                            learning_rates={"connector": 1e-3, "llm": 2e-4})
    expected_align = load_recipe("tiny-align", [f"output_dir={out / 'align'}", "data=" + json.dumps(align_data),
                                                "training.max_steps=5", *common])
    expected_instruct = load_recipe("tiny-instruct", [f"output_dir={out / 'model'}", f"connector={out / 'align'}",
                                                      "data=" + json.dumps(instruct_data), "feature_cache=true",
                                                      "training.max_steps=7", "training.lr_scheduler_type=constant",
                                                      "learning_rates.connector=1e-3", "learning_rates.llm=2e-4",
                                                      *common])
    for recipe, expected in ((align, expected_align), (instruct, expected_instruct)):
        assert recipe.to_dict() == expected.to_dict()
        assert recipe.sources == expected.sources  # rebuilt from the new data list, not the shipped one
    assert align.stage == "align" and instruct.stage == "instruct" and instruct.use_feature_cache


def test_the_reproduce_line_parses_back_to_the_same_settings() -> None:
    settings = DemoSettings(preset="tiny", seed=3, align_steps=5, instruct_steps=7, eval_limit=5)
    for data in (Path("data/my set"), None):
        args = shlex.split(demo_command(Path("outputs/demo"), settings, data))
        assert args[:2] == ["llama3med", "demo"]
        params = typer.main.get_command(app).commands["demo"].make_context("demo", args[2:]).params
        assert params["out"] == Path("outputs/demo") and params["data"] == data
        assert {k: v for k, v in params.items() if hasattr(settings, k)} == {k: getattr(settings, k) for k in params if hasattr(settings, k)}
    scaled = DemoSettings(model_args={"scales": [224]})
    assert demo_command(Path("o"), scaled, None).endswith(" (with DemoSettings {'model_args': {'scales': [224]}})")


def test_a_folder_without_splits_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(FileNotFoundError, match="needs train.jsonl, test.jsonl and images/"):
        stage_data(tmp_path)
