"""`build_llama3med`: every dimension of the model and its processor follows the parts it is given; weights
given to it load strictly."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig

from llama3med.model.builder import build_llama3med
from llama3med.model.normalization import CLIP, ImageNormalization
from llama3med.model.tokenization import IMAGE_TOKEN, build_tiny_tokenizer
from llama3med.model.weights import WeightLoadingError


def parts(vision_width: int = 48, text_width: int = 40) -> tuple[CLIPVisionConfig, LlamaConfig, object]:
    """A 48-wide ViT on 32 px tiles (patch 8: 4x4 grid, CLS token) and a 40-wide Llama, with the tiny tokenizer."""
    tokenizer = build_tiny_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=vision_width, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer) + 1, hidden_size=text_width, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )
    return vision, text, tokenizer


def test_dimensions_follow_the_configs_and_settings() -> None:
    vision, text, tokenizer = parts()
    model, processor = build_llama3med(
        vision, text, tokenizer, scales=[32, 64], connector_type="mlp3x_gelu", vision_feature_layer=-1, encoder_chunk_size=3
    )
    config = model.config
    assert (config.tile_size, config.scales, config.vision_feature_layer, config.encoder_chunk_size) == (32, [32, 64], -1, 3)
    assert config.num_image_tokens == 16  # (32 / 8)^2: one base view whatever the number of scales
    assert config.connector_input_size == 2 * 48  # two scales concatenated on channels
    linears = [m for m in model.connector if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(96, 40), (40, 40), (40, 40)]
    assert model.language_model.config.hidden_size == 40
    assert processor.num_image_tokens == 16 and processor.image_processor.image_size == 64  # the largest scale
    assert config.image_token_id == tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) == processor.image_token_id
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = model.encode_images(pixels)  # [B, g*g, scales * vision width]
        assert features.shape == (1, 16, 96) and model.connector(features).shape == (1, 16, 40)  # [B, g*g, LLM width]


def test_normalisation_is_the_encoder_familys_unless_given() -> None:
    vision, text, tokenizer = parts()
    _, processor = build_llama3med(vision, text, tokenizer, scales=[32])
    assert processor.image_processor.image_mean == list(CLIP.mean)
    own = ImageNormalization(mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2), resample="bilinear", source="test")
    _, processor = build_llama3med(vision, text, tokenizer, scales=[32], normalization=own)
    assert processor.image_processor.image_mean == [0.5, 0.4, 0.3] and processor.image_processor.resample == "bilinear"


def test_meta_device_builds_shapes_without_memory() -> None:
    vision, text, tokenizer = parts(vision_width=1024, text_width=2048)
    model, _ = build_llama3med(vision, text, tokenizer, scales=[32, 64, 96], device="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert model.connector[0].in_features == 3 * 1024 and model.connector[-1].out_features == 2048


def test_vision_weights_load_strictly() -> None:
    vision, text, tokenizer = parts()
    torch.manual_seed(1)
    encoder = CLIPVisionModel(vision)
    model, _ = build_llama3med(vision, text, tokenizer, scales=[32], vision_weights=encoder.state_dict())
    loaded = model.vision_tower.encoder.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in encoder.state_dict().items())
    renamed = {f"clip.{k}": v for k, v in encoder.state_dict().items()}
    with pytest.raises(WeightLoadingError, match=r"vision encoder weights: .*missing key\(s\)") as caught:
        build_llama3med(vision, text, tokenizer, scales=[32], vision_weights=renamed)
    assert "embeddings.class_embedding" in caught.value.missing and "clip.embeddings.class_embedding" in caught.value.unexpected
