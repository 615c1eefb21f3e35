"""`llama3med eval` and `llama3med score` (`llama3med.cli.eval_commands`): which answerer the options choose,
the reproduce line's data options, and `score` on a custom data set. Whole evaluations through `eval` are in
tests/eval (test_runner, test_answerers, test_data_specs, test_protocols)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from llama3med.cli.eval_commands import DataOptions, build_answerer, use_feature_cache
from llama3med.cli.main import app
from llama3med.eval.answerers import Llama3MedAnswerer, OpenAIChatAnswerer
from llama3med.generation import GenerationSettings

GREEDY = GenerationSettings(max_new_tokens=4)
runner = CliRunner(env={"COLUMNS": "300"})  # wide: summary lines and errors stay on one line each


def answerer(model, endpoint=None, served_model=None, backend="auto"):
    return build_answerer(model, backend, endpoint, served_model, "NO_SUCH_KEY_VARIABLE", 2, 0, GREEDY, None, None)


def test_the_options_choose_the_answerer(tiny_model_dir: Path, tmp_path: Path) -> None:
    remote = answerer(None, "http://127.0.0.1:9/v1", "llava-med")
    assert isinstance(remote, OpenAIChatAnswerer)
    assert remote.describe() == {"kind": "openai-endpoint", "path": "http://127.0.0.1:9/v1", "model": "llava-med", "config_sha256": None}
    assert answerer(Path("/models/x"), "http://127.0.0.1:9/v1").describe()["model"] == "/models/x"  # --model names it
    assert isinstance(answerer(tiny_model_dir), Llama3MedAnswerer)  # model_type llama3med: our backend
    with pytest.raises(ValueError, match="--endpoint needs --served-model"):
        answerer(None, "http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="give --model"):
        answerer(None)
    with pytest.raises(ValueError, match="--backend must be auto, llama3med or hf, got 'vllm'"):
        answerer(tiny_model_dir, backend="vllm")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model_dir)}))
    with pytest.raises(ValueError, match=r"--backend hf takes model folders .* run `llama3med merge"):
        answerer(adapter, backend="hf")


def test_a_feature_cache_needs_our_checkpoint(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--feature-cache needs a Llama3-Med checkpoint"):
        use_feature_cache(answerer(None, "http://127.0.0.1:9/v1", "m"), tmp_path)
    ours = answerer(tiny_model_dir)
    use_feature_cache(ours, tmp_path / "features")
    assert ours.api.image_features.disk is not None


def test_data_options_list_only_what_differs_from_the_defaults() -> None:
    assert DataOptions(data_root=Path("data")).changed_options() == []
    changed = DataOptions(layout="parquet", slake_language="zh", columns="question=q", split="validation", image_dir=Path("imgs"))
    assert changed.changed_options() == [
        "--layout", "parquet", "--slake-language", "zh", "--columns", "question=q", "--split", "validation", "--image-dir", "imgs",
    ]


def test_score_a_custom_data_set(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "images" / "a.png")
    records = [
        {"id": "q1", "image": "images/a.png", "question": "Is it normal?", "answer": "yes", "answer_type": "CLOSED"},
        {"id": "q2", "image": "images/a.png", "question": "Is there a mass?", "answer": "no", "answer_type": "CLOSED"},
        {"id": "q3", "image": "images/a.png", "question": "Which organ?", "answer": "liver", "answer_type": "OPEN"},
    ]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in [("q1", "Yes."), ("q2", "yes"), ("q3", "the liver")]))
    out = tmp_path / "scores" / "mine.json"
    result = runner.invoke(app, ["score", "--benchmark", f"mine={tmp_path / 'q.jsonl'}", "--predictions", str(predictions), "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())["benchmarks"]["mine"]
    assert scores["llava_med"] == {"open_recall": 100.0, "closed_accuracy": 50.0} and scores["limit"] is None
    assert "mine: LLaVA-Med open recall 100.00, closed accuracy 50.00" in result.output
    predictions.write_text("".join(predictions.read_text().splitlines(keepends=True)[:2]))  # what `eval --limit 2` writes
    limited = runner.invoke(app, ["score", "--benchmark", f"mine={tmp_path / 'q.jsonl'}", "--predictions", str(predictions),
                                  "--out", str(out), "--limit", "2"])
    assert limited.exit_code == 0, limited.output
    assert json.loads(out.read_text())["benchmarks"]["mine"]["counts"]["questions"] == 2


@pytest.mark.parametrize(
    ("options", "words"),
    [(["--protocol", "mine"], "mine"), (["--top-p", "0"], "top_p must be in (0, 1]")],
)
def test_an_unknown_protocol_or_impossible_decoding_is_one_error_line(tmp_path: Path, options: list[str], words: str) -> None:
    result = runner.invoke(app, ["eval", "--endpoint", "http://127.0.0.1:9/v1", "--served-model", "m", *options,
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.output.startswith("error: ") and words in result.output
    assert not (tmp_path / "out").exists()
