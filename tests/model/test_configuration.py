"""`Llama3MedConfig`: sub-configs from dicts, the derived geometry, refused settings, and a save/load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoConfig, CLIPVisionConfig, LlamaConfig, SiglipVisionConfig

from llama3med.model.configuration import Llama3MedConfig, vision_grid_size
from llama3med.model.efficientnet_lite import EfficientNetLiteConfig
from llama3med.model.timm_vision import TimmVisionConfig

VIT = {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
       "num_attention_heads": 2, "image_size": 32, "patch_size": 8}
LLAMA = {"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 2, "num_key_value_heads": 1}


def test_sub_configs_given_as_dicts_become_their_config_classes() -> None:
    config = Llama3MedConfig(vision_config=VIT, text_config=LLAMA, scales=[32, 64])
    assert isinstance(config.vision_config, CLIPVisionConfig) and isinstance(config.text_config, LlamaConfig)
    assert config.vision_config.hidden_size == 32 and config.text_config.vocab_size == 64
    assert config.get_text_config() is config.text_config
    assert isinstance(Llama3MedConfig(vision_config={"model_type": EfficientNetLiteConfig.model_type}, text_config=LLAMA).vision_config,
                      EfficientNetLiteConfig)
    timm = {"model_type": TimmVisionConfig.model_type, "image_size": 28, "patch_size": 14, "hidden_size": 32}
    config = Llama3MedConfig(vision_config=timm, text_config=LLAMA, scales=[28, 56])
    assert isinstance(config.vision_config, TimmVisionConfig) and config.num_image_tokens == 4


def test_derived_geometry_of_a_three_scale_vit() -> None:
    config = Llama3MedConfig(vision_config=VIT, text_config=LLAMA, scales=[32, 64, 128])
    assert config.tile_size == 32 and config.grid_size == 4 and config.num_image_tokens == 16
    assert config.max_image_size == 128
    assert config.encoder_passes_per_image == 1 + 4 + 16  # (s / t)^2 summed over the scales
    assert config.vision_hidden_size == 32 and config.connector_input_size == 3 * 32


def test_an_encoder_size_without_paper_defaults_gets_one_two_and_three_times_the_tile() -> None:
    assert Llama3MedConfig(vision_config=VIT, text_config=LLAMA).scales == [32, 64, 96]


def test_a_vit_patch_remainder_is_ignored_and_a_cnn_stride_remainder_refused() -> None:
    siglip = SiglipVisionConfig(image_size=384, patch_size=14)
    assert vision_grid_size(siglip, 384) == 27  # SigLIP so400m/14 at 384 px
    cnn = EfficientNetLiteConfig()
    assert vision_grid_size(cnn, 224) == 224 // cnn.output_stride
    with pytest.raises(ValueError, match="not a multiple of the CNN's output stride"):
        vision_grid_size(cnn, 100)


def test_a_cnn_takes_any_tile_but_a_vit_only_its_own_size() -> None:
    cnn = Llama3MedConfig(vision_config=EfficientNetLiteConfig(), text_config=LLAMA, scales=[896], tile_size=224)
    assert (cnn.tile_size, cnn.encoder_passes_per_image, cnn.num_image_tokens) == (224, 16, 49)
    with pytest.raises(ValueError, match="tile_size 64 differs from the ViT's image size 32"):
        Llama3MedConfig(vision_config=VIT, text_config=LLAMA, tile_size=64)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"connector_type": "mlp9x"}, "connector_type 'mlp9x' is not one of"),
        ({"scales": [64, 64]}, "strictly ascending"),
        ({"encoder_chunk_size": -1}, "encoder_chunk_size must be >= 0"),
    ],
)
def test_refused_settings_say_what_is_wrong(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Llama3MedConfig(vision_config=VIT, text_config=LLAMA, **settings)


def test_save_and_load_round_trip_keeps_every_setting(tmp_path: Path) -> None:
    import llama3med.model  # noqa: F401  (registers the config with AutoConfig)

    config = Llama3MedConfig(vision_config=VIT, text_config=LLAMA, connector_type="mlp3x_gelu", scales=[32, 64],
                             vision_feature_layer=-1, vision_prefix_tokens=1, encoder_chunk_size=8, image_token_id=63)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, Llama3MedConfig)
    kept = ("connector_type", "scales", "tile_size", "vision_feature_layer", "vision_prefix_tokens",
            "encoder_chunk_size", "image_token_id", "image_token")
    assert {k: getattr(loaded, k) for k in kept} == {k: getattr(config, k) for k in kept}
    assert loaded.vision_config.to_dict() == config.vision_config.to_dict()
    assert loaded.text_config.to_dict() == config.text_config.to_dict()
    assert loaded.connector_input_size == 2 * 32
