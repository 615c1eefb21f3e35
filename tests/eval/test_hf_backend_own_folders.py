"""`eval --backend hf` on our own model folders: transformers' Auto classes, the processor's chat template with
llava-hf list content, and the same answers as our own backend."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from llama3med.cli.main import app
from llama3med.eval.answerers import HFImageTextAnswerer, Llama3MedAnswerer
from llama3med.generation import GenerationSettings


def test_hf_backend_answers_our_folder_like_our_backend(tiny_model_dir: Path) -> None:
    decoding = GenerationSettings(max_new_tokens=6)
    hf = HFImageTextAnswerer.from_pretrained(tiny_model_dir, decoding)
    ours = Llama3MedAnswerer.from_pretrained(tiny_model_dir, decoding)
    images = [Image.new("RGB", (40 + 9 * i, 30), (30 * i, 200 - 20 * i, 90)) for i in range(3)]
    prompts = ["Is there a nodule?", "What organ is shown in this image?", "Where?"]
    assert hf.describe()["architecture"] == "Llama3MedForConditionalGeneration"
    assert hf.answer(images, prompts) == ours.answer(images, prompts)


def test_eval_command_with_the_hf_backend_on_our_folder(tiny_model_dir: Path, small_benchmark_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["eval", "--model", str(tiny_model_dir), "--backend", "hf", "--benchmarks", "vqa-rad",
            "--data-root", str(small_benchmark_dir.parent), "--out", str(out), "--max-new-tokens", "4", "--batch-size", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "report.json").read_text())["model"]["kind"] == "hf"
    predictions = [json.loads(line) for line in (out / "predictions" / "vqa-rad.jsonl").read_text().splitlines()]
    assert [p["id"] for p in predictions] == ["q1", "q2", "q3", "q4"]
    assert not any("[{" in p["prediction"] for p in predictions)
