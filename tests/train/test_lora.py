"""LoRA stage 2 on `tiny`, `llama3med merge`, and QLoRA's clear error without a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from train_helpers import data_override, tiny_recipe
from typer.testing import CliRunner

from llama3med.api import ChatRequest, Llama3Med
from llama3med.cli.main import app
from llama3med.model.processing import Llama3MedProcessor
from llama3med.train.model_setup import BASE_MODEL_FILE, load_base
from llama3med.train.outputs import MANIFEST_FILE
from llama3med.train.recipe import load_recipe
from llama3med.train.run import train

LORA = "lora={r: 4, alpha: 8, dropout: 0.1}"


def test_lora_adapter_merges_into_a_plain_model_that_generates_the_same(tmp_path: Path, vqa_file: Path, image_folder: Path) -> None:
    adapter_dir = tmp_path / "lora"
    recipe = tiny_recipe("tiny-instruct", adapter_dir, data_override(vqa_file, "vqa", image_folder), "connector=null", LORA,
                         "learning_rates.llm=1e-2", "learning_rates.connector=1e-3")
    result = train(recipe)
    assert result.global_step == 6
    assert (adapter_dir / "adapter_model.safetensors").is_file() and (adapter_dir / BASE_MODEL_FILE).is_file()
    adapter_weights = load_file(adapter_dir / "adapter_model.safetensors")
    assert any("lora_A" in k for k in adapter_weights) and any("connector" in k for k in adapter_weights)
    assert not any("vision_tower" in k for k in adapter_weights)

    merged_dir = tmp_path / "merged"
    outcome = CliRunner().invoke(app, ["merge", str(adapter_dir), str(merged_dir)])
    assert outcome.exit_code == 0, outcome.output
    assert not (merged_dir / "adapter_config.json").exists()
    assert (merged_dir / MANIFEST_FILE).read_text() == (adapter_dir / MANIFEST_FILE).read_text()

    base, _ = load_base(json.loads((adapter_dir / BASE_MODEL_FILE).read_text()))
    base_q = base.language_model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    adapter_model = Llama3Med(PeftModel.from_pretrained(base, adapter_dir), Llama3MedProcessor.from_pretrained(adapter_dir))
    merged = Llama3Med.from_pretrained(merged_dir)
    assert not torch.allclose(merged.model.language_model.model.layers[0].self_attn.q_proj.weight, base_q)

    requests = [ChatRequest(image_folder / f"img{i}.png", [{"role": "user", "content": q}])
                for i, q in enumerate(["Is there a nodule?", "What modality is used?", "Which organ is abnormal?"])]
    assert [r.text for r in merged.generate(requests, max_new_tokens=12)] == [r.text for r in adapter_model.generate(requests, max_new_tokens=12)]
    # token for token, also past the end-of-turn token (the short answers it learnt end early)
    inputs = merged.prepare(requests)
    greedy = {"max_new_tokens": 16, "min_new_tokens": 16, "do_sample": False}
    with torch.inference_mode():
        expected = adapter_model.model.generate(**inputs, **greedy)
        actual = merged.model.generate(**inputs, **greedy)
        merged_logits = merged.model(**inputs).logits
        adapter_logits = adapter_model.model(**inputs).logits
        with adapter_model.model.disable_adapter():
            base_logits = adapter_model.model(**inputs).logits
    assert torch.equal(actual, expected)
    assert (merged_logits - adapter_logits).abs().max() < 1e-4
    assert (merged_logits - base_logits).abs().max() > 1e-2  # the adapter does change the model


def test_merge_rejects_a_folder_that_is_not_a_lora_output(tiny_model_dir: Path, tmp_path: Path) -> None:
    outcome = CliRunner().invoke(app, ["merge", str(tiny_model_dir), str(tmp_path / "out")])
    assert outcome.exit_code == 2 and "is not a LoRA training output" in outcome.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error shown where no GPU is present")
def test_qlora_without_gpu_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path, vqa_file: Path, image_folder: Path) -> None:
    recipe = load_recipe("tiny-instruct", [data_override(vqa_file, "vqa", image_folder), f"output_dir={tmp_path}", f"model={tiny_model_dir}",
                                           "connector=null", LORA, "quantization=4bit"])
    with pytest.raises(RuntimeError, match="QLoRA .* needs a CUDA GPU"):
        train(recipe)
