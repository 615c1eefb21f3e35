"""Token counts and widths follow the S2 formula; a mismatched connector is refused by name."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPVisionConfig, LlamaConfig

from llama3med.model.configuration import Llama3MedConfig
from llama3med.model.connector import build_connector
from llama3med.model.efficientnet_lite import EfficientNetLiteConfig
from llama3med.model.modeling import Llama3MedForConditionalGeneration


def _vit(hidden: int = 48, image_size: int = 224, patch: int = 14) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=hidden, intermediate_size=hidden, num_hidden_layers=1, num_attention_heads=2,
        image_size=image_size, patch_size=patch,
    )


def _llama(hidden: int = 32) -> LlamaConfig:
    return LlamaConfig(vocab_size=64, hidden_size=hidden, intermediate_size=hidden, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1)


@pytest.mark.parametrize("scales", [[224], [224, 448], [224, 672, 1344]])
def test_tokens_and_width_follow_formula(scales: list[int]) -> None:
    config = Llama3MedConfig(vision_config=_vit(), text_config=_llama(), scales=scales)
    grid = 224 // 14
    assert config.num_image_tokens == grid * grid == 256
    assert config.connector_input_size == len(scales) * 48
    model = Llama3MedForConditionalGeneration(config).eval()
    features = model.encode_images(torch.randn(2, 3, scales[-1], scales[-1]))
    assert features.shape == (2, 256, len(scales) * 48)
    assert model.get_image_features(torch.randn(1, 3, scales[-1], scales[-1])).shape == (1, 256, 32)


def test_default_scales_match_the_paper() -> None:
    assert Llama3MedConfig(vision_config=_vit(), text_config=_llama()).scales == [224, 672, 1344]
    vit336 = _vit(image_size=336)
    assert Llama3MedConfig(vision_config=vit336, text_config=_llama()).scales == [336, 672, 1008]


def test_cnn_geometry() -> None:
    config = Llama3MedConfig(vision_config=EfficientNetLiteConfig(), text_config=_llama(), scales=[224, 448, 896])
    assert (config.grid_size, config.num_image_tokens, config.connector_input_size) == (7, 49, 3 * 1280)


@pytest.mark.parametrize(
    ("scales", "message"),
    [([448, 224], "ascending"), ([112, 224], "below the tile"), ([224, 300], "multiple of the tile")],
)
def test_invalid_scales_are_refused(scales: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Llama3MedConfig(vision_config=_vit(), text_config=_llama(), scales=scales)


def test_mismatched_connector_checkpoint_names_both_widths() -> None:
    model = Llama3MedForConditionalGeneration(
        Llama3MedConfig(vision_config=_vit(), text_config=_llama(), scales=[224, 672, 1344])
    )
    single_scale_connector = build_connector("mlp2x_gelu", 48, 32).state_dict()
    with pytest.raises(ValueError, match=r"expects input width 48.*yields 144"):
        model.load_connector(single_scale_connector)
    model.load_connector(build_connector("mlp2x_gelu", 144, 32).state_dict())  # the right width loads


def test_single_high_resolution_scale_keeps_the_token_budget() -> None:
    config = Llama3MedConfig(vision_config=_vit(), text_config=_llama(), scales=[896])
    model = Llama3MedForConditionalGeneration(config).eval()
    assert (config.num_image_tokens, config.connector_input_size) == (256, 48)
    assert model.encode_images(torch.randn(1, 3, 896, 896)).shape == (1, 256, 48)
    with pytest.raises(ValueError, match="differs from the ViT's image size 224"):
        Llama3MedConfig(vision_config=_vit(), text_config=_llama(), scales=[896], tile_size=448)
