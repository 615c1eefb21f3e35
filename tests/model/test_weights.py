"""Strict weight loading (`llama3med.model.weights`): a model folder, language weights, a connector or stage 1's
connector under another key prefix fails naming its missing and unexpected keys. Local encoder and LLM folders:
tests/model/test_pretrained.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from model_helpers import rename_prefix
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from llama3med.model.builder import build_llama3med
from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.presets import build_preset
from llama3med.model.tokenization import build_tiny_tokenizer
from llama3med.model.weights import WeightLoadingError, load_state_dict_strict
from llama3med.train.model_setup import load_base, read_connector_weights


@pytest.fixture
def renamed_model_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "renamed"
    shutil.copytree(tiny_model_dir, folder)
    rename_prefix(folder / "model.safetensors", "language_model.", "llm.")
    return folder


def test_model_folder_with_renamed_prefix_is_refused_naming_keys(renamed_model_dir: Path) -> None:
    with pytest.raises(WeightLoadingError) as caught:
        Llama3MedForConditionalGeneration.from_pretrained(renamed_model_dir)
    message = str(caught.value)
    assert "missing key(s)" in message and "language_model.model.embed_tokens.weight" in message
    assert "unexpected key(s)" in message and "llm.model.embed_tokens.weight" in message
    assert "language_model.model.embed_tokens.weight" in caught.value.missing


def test_intact_model_folder_loads_with_identical_weights(tiny_model_dir: Path) -> None:
    model, info = Llama3MedForConditionalGeneration.from_pretrained(tiny_model_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    saved = load_file(str(tiny_model_dir / "model.safetensors"))
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items() if k in saved)


def test_language_weights_with_renamed_prefix_are_refused() -> None:
    model, _ = build_preset("tiny")
    renamed = {"decoder." + k.removeprefix("model."): v for k, v in model.language_model.state_dict().items()}
    with pytest.raises(WeightLoadingError, match=r"missing key\(s\): .*model\.embed_tokens\.weight") as caught:
        build_preset("tiny", language_weights=renamed)
    assert "decoder.embed_tokens.weight" in caught.value.unexpected


def test_tied_output_embedding_may_be_absent_from_a_checkpoint() -> None:
    tokenizer = build_tiny_tokenizer()
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
    )
    source, _ = build_preset("tiny")
    reference = LlamaForCausalLM(text)
    weights = {k: v for k, v in reference.state_dict().items() if k != "lm_head.weight"}  # as a tied model saves
    model, _ = build_llama3med(source.config.vision_config, text, tokenizer, language_weights=weights)
    assert torch.equal(model.language_model.lm_head.weight, reference.model.embed_tokens.weight)
    untied = LlamaForCausalLM(LlamaConfig(**{**text.to_dict(), "tie_word_embeddings": False}))
    with pytest.raises(WeightLoadingError, match="lm_head.weight"):  # untied: the output layer is really missing
        load_state_dict_strict(untied, weights, "untied LLM")


def test_connector_with_renamed_prefix_is_refused() -> None:
    model, _ = build_preset("tiny")
    weights = {f"projector.{k}": v for k, v in model.connector.state_dict().items()}
    with pytest.raises(WeightLoadingError, match=r"missing key\(s\): 0\.bias, 0\.weight, 2\.bias, 2\.weight") as caught:
        model.load_connector(weights)
    assert "projector.0.weight" in caught.value.unexpected


def test_stage_one_connector_saved_under_another_name_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    stage1 = tmp_path / "stage1"
    shutil.copytree(tiny_model_dir, stage1)
    rename_prefix(stage1 / "model.safetensors", "connector.", "mm_projector.")
    with pytest.raises(WeightLoadingError, match=r"connector\.\*.*mm_projector\.\*"):
        read_connector_weights(stage1)
    with pytest.raises(WeightLoadingError):
        load_base({"model": "tiny", "connector": str(stage1)})


def test_stage_one_connector_loads_into_stage_two(tiny_model_dir: Path) -> None:
    model, _ = load_base({"model": "tiny", "connector": str(tiny_model_dir)})
    saved = read_connector_weights(tiny_model_dir)
    assert all(torch.equal(saved[f"connector.{k}"], v) for k, v in model.connector.state_dict().items())
