"""LoRA stage 2 on `tiny`: the output is a standard PEFT adapter folder over a base model folder, which every
command and PEFT's AutoPeftModel load directly; `llama3med merge`; QLoRA's clear error without a GPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import AutoPeftModel, PeftModel
from safetensors.torch import load_file
from train_helpers import data_override, tiny_recipe
from typer.testing import CliRunner

from llama3med.api import ChatRequest, Llama3Med
from llama3med.cli.main import app
from llama3med.io.manifest import MANIFEST_FILE
from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.processing import Llama3MedProcessor
from llama3med.train.model_setup import BASE_MODEL_DIR
from llama3med.train.recipe import load_recipe
from llama3med.train.run import train

LORA = "lora={r: 4, alpha: 8, dropout: 0.1}"
QUESTIONS = ["Is there a nodule?", "What modality is used?", "Which organ is abnormal?"]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory, vqa_file: Path, image_folder: Path) -> Path:
    """A LoRA run on the `tiny` preset (a preset has no folder: the base is saved inside the output)."""
    out = tmp_path_factory.mktemp("lora") / "adapter"
    recipe = tiny_recipe("tiny-instruct", out, data_override(vqa_file, "vqa", image_folder), "connector=null", LORA,
                         "learning_rates.llm=1e-2", "learning_rates.connector=1e-3")
    assert train(recipe).global_step == 6
    return out


def requests(image_folder: Path) -> list[ChatRequest]:
    return [ChatRequest(image_folder / f"img{i}.png", [{"role": "user", "content": q}]) for i, q in enumerate(QUESTIONS)]


def test_the_output_is_a_standard_peft_folder_naming_its_base(adapter_dir: Path) -> None:
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((adapter_dir / BASE_MODEL_DIR).resolve())
    assert (adapter_dir / BASE_MODEL_DIR / "config.json").is_file() and not (adapter_dir / "base_model.json").exists()
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    assert any("lora_A" in k for k in weights) and any("connector" in k for k in weights)
    assert not any("vision_tower" in k for k in weights)


def test_adapter_folder_loads_directly_and_merges_into_a_plain_model_that_generates_the_same(
    adapter_dir: Path, image_folder: Path, tmp_path: Path
) -> None:
    merged_dir = tmp_path / "merged"
    outcome = CliRunner().invoke(app, ["merge", str(adapter_dir), str(merged_dir)])
    assert outcome.exit_code == 0, outcome.output
    assert not (merged_dir / "adapter_config.json").exists()
    assert (merged_dir / MANIFEST_FILE).read_text() == (adapter_dir / MANIFEST_FILE).read_text()

    base = Llama3MedForConditionalGeneration.from_pretrained(adapter_dir / BASE_MODEL_DIR)
    base_q = base.language_model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    unmerged = Llama3Med(PeftModel.from_pretrained(base, adapter_dir), Llama3MedProcessor.from_pretrained(adapter_dir))
    direct = Llama3Med.from_pretrained(adapter_dir)  # the adapter folder itself, merged in memory
    merged = Llama3Med.from_pretrained(merged_dir)
    assert not torch.allclose(merged.model.language_model.model.layers[0].self_attn.q_proj.weight, base_q)

    expected = [r.text for r in unmerged.generate(requests(image_folder), max_new_tokens=12)]
    assert [r.text for r in merged.generate(requests(image_folder), max_new_tokens=12)] == expected
    assert [r.text for r in direct.generate(requests(image_folder), max_new_tokens=12)] == expected
    # token for token, also past the end-of-turn token (the short answers it learnt end early)
    inputs = merged.prepare(requests(image_folder))
    greedy = {"max_new_tokens": 16, "min_new_tokens": 16, "do_sample": False}
    with torch.inference_mode():
        reference = unmerged.model.generate(**inputs, **greedy)
        actual = merged.model.generate(**inputs, **greedy)
        merged_logits = merged.model(**inputs).logits
        adapter_logits = unmerged.model(**inputs).logits
        with unmerged.model.disable_adapter():
            base_logits = unmerged.model(**inputs).logits
    assert torch.equal(actual, reference)
    assert (merged_logits - adapter_logits).abs().max() < 1e-4
    assert (merged_logits - base_logits).abs().max() > 1e-2  # the adapter does change the model


def test_auto_peft_model_loads_the_adapter_folder(adapter_dir: Path, image_folder: Path) -> None:
    model = AutoPeftModel.from_pretrained(str(adapter_dir), import_allowlist=["llama3med"]).eval()
    assert isinstance(model.get_base_model(), Llama3MedForConditionalGeneration)
    direct = Llama3Med.from_pretrained(adapter_dir)
    inputs = direct.prepare(requests(image_folder))
    with torch.inference_mode():
        expected = direct.model(**inputs).logits  # [B, L, V]
        # PEFT grows the vocabulary to the tokenizer's (the <image> placeholder id lies past the LLM's): one
        # more output column; the others are the adapted model's
        actual = model(**inputs).logits[..., : expected.shape[-1]]
    assert (actual - expected).abs().max() < 1e-4


def test_ask_and_eval_take_the_adapter_folder(adapter_dir: Path, image_folder: Path, vqa_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    asked = runner.invoke(app, ["ask", str(image_folder / "img0.png"), QUESTIONS[0], "--model", str(adapter_dir), "--max-new-tokens", "8"])
    assert asked.exit_code == 0, asked.output
    direct = Llama3Med.from_pretrained(adapter_dir)
    assert asked.stdout == direct.chat(image_folder / "img0.png", QUESTIONS[0], max_new_tokens=8) + "\n"
    benchmark = tmp_path / "questions.jsonl"
    benchmark.write_text("".join(line + "\n" for line in vqa_file.read_text().splitlines()[:3]))
    evaluated = runner.invoke(app, ["eval", "--model", str(adapter_dir), "--benchmarks", f"mine={benchmark}",
                                    "--image-dir", str(image_folder), "--out", str(tmp_path / "eval"), "--max-new-tokens", "4"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["model"]["kind"] == "llama3med"


def test_an_adapter_whose_base_is_gone_says_so_in_one_line(adapter_dir: Path, image_folder: Path, tmp_path: Path) -> None:
    moved = tmp_path / "adapter-alone"
    shutil.copytree(adapter_dir, moved, ignore=shutil.ignore_patterns(BASE_MODEL_DIR, "checkpoints"))
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "nowhere")
    (moved / "adapter_config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(app, ["ask", str(image_folder / "img0.png"), "What?", "--model", str(moved)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "LoRA adapter" in result.output and "nowhere" in result.output and "llama3med merge" in result.output


def test_training_from_an_adapter_folder_says_to_merge_first(adapter_dir: Path, vqa_file: Path, image_folder: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "tiny-instruct", data_override(vqa_file, "vqa", image_folder), f"model={adapter_dir}",
                                      "connector=null", f"output_dir={tmp_path / 'out'}"])
    assert result.exit_code == 2 and "LoRA adapter folder" in result.output and "llama3med merge" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error shown where no GPU is present")
def test_qlora_without_gpu_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path, vqa_file: Path, image_folder: Path) -> None:
    recipe = load_recipe("tiny-instruct", [data_override(vqa_file, "vqa", image_folder), f"output_dir={tmp_path}", f"model={tiny_model_dir}",
                                           "connector=null", LORA, "quantization=4bit"])
    with pytest.raises(RuntimeError, match="QLoRA .* needs a CUDA GPU"):
        train(recipe)
