"""Presets: tiny builds fast; small loads real weights offline; the 8B recipe validates on the meta device."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llama3med.api import Llama3Med
from llama3med.model.presets import build_preset


def test_tiny_builds_quickly() -> None:
    start = time.perf_counter()
    model, processor = build_preset("tiny")
    assert time.perf_counter() - start < 10  # generous bound on a loaded CI machine; ~0.1 s alone
    assert processor.tokenizer.convert_tokens_to_ids("<|eot_id|>") == processor.tokenizer.eos_token_id
    assert model.config.image_token_id == processor.image_token_id


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        build_preset("huge")


@pytest.mark.parametrize(
    ("preset", "vision", "tokens", "passes", "width"),
    [
        ("llama3-med-8b-authors", "clip", 256, 46, 3 * 1024),  # the authors' code: 224/672/1344, tile 224
        ("llava-s2-8b", "clip", 576, 14, 3 * 1024),  # LLaVA-S2: 336/672/1008, tile 336
        ("llama3-med-8b", "clip", 576, 14, 3 * 1024),  # the earlier name of llava-s2-8b
        ("llava-s2-8b", "siglip", 729, 14, 3 * 1152),
    ],
)
def test_8b_presets_shapes_on_meta_device(preset: str, vision: str, tokens: int, passes: int, width: int) -> None:
    model, processor = build_preset(preset, vision=vision)
    config = model.config
    assert next(model.parameters()).device.type == "meta"
    assert (config.num_image_tokens, config.encoder_passes_per_image, config.connector_input_size) == (tokens, passes, width)
    assert config.connector_input_size == len(config.scales) * config.vision_hidden_size
    assert config.text_config.hidden_size == 4096 and config.text_config.num_key_value_heads == 8
    llm_params = sum(p.numel() for p in model.language_model.parameters())
    assert 8.0e9 < llm_params < 8.1e9  # Llama-3.1-8B: 8.03 B
    assert model.connector[0].in_features == width and model.connector[-1].out_features == 4096
    assert processor.tokenizer.convert_tokens_to_ids("<|eot_id|>") == 128009  # Meta's real tokenizer
    assert processor.image_processor.image_size == config.scales[-1]
    if preset == "llama3-med-8b-authors":
        assert config.scales == [224, 672, 1344] and config.tile_size == 224


def test_build_command_documents_the_authors_preset() -> None:
    from typer.testing import CliRunner

    from llama3med.cli.main import app

    result = CliRunner().invoke(app, ["build", "llama3-med-8b-authors", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "llama3-med-8b-authors" in result.output and "224/672/1344" in result.output
    refused = CliRunner().invoke(app, ["build", "llama3-med-8b-authors", "--out", "unused"])
    assert refused.exit_code != 0 and "--vision-path" in refused.output


def test_small_preset_answers_in_english_offline(benchmarks_dir: Path, tmp_path: Path) -> None:
    record = json.loads((benchmarks_dir / "vqa-rad" / "test.jsonl").read_text().splitlines()[0])
    model, processor = build_preset("small")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    api = Llama3Med.from_pretrained(tmp_path)
    answer = api.chat(benchmarks_dir / "vqa-rad" / "images" / record["image"], "Describe this image.", max_new_tokens=24)
    words = answer.lower().split()
    assert len(words) >= 3
    common = {"the", "a", "an", "is", "this", "of", "image", "and", "in", "it", "shows", "to", "with"}
    assert common & set(words), answer
    assert all(ch.isascii() for ch in answer), answer
