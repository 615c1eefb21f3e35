"""`build_llama3med` (torchtune-style builder): a model and its processor from explicit parts, every dimension a
parameter. The named presets (`llama3med.model.presets`) choose the parts; where their weights come from is
`llama3med.model.pretrained`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PretrainedConfig

from llama3med.model.configuration import Llama3MedConfig
from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.normalization import ImageNormalization, family_normalization
from llama3med.model.processing import Llama3MedImageProcessor, Llama3MedProcessor
from llama3med.model.tokenization import IMAGE_TOKEN, prepare_tokenizer
from llama3med.model.weights import load_state_dict_strict

Built = tuple[Llama3MedForConditionalGeneration, Llama3MedProcessor]


def build_llama3med(
    vision_config: PretrainedConfig,
    text_config: PretrainedConfig,
    tokenizer: Any,
    *,
    scales: list[int] | None = None,
    tile_size: int | None = None,
    connector_type: str = "mlp2x_gelu",
    connector_input_norm: str = "none",
    vision_feature_layer: int = -2,
    vision_prefix_tokens: int | None = None,
    encoder_chunk_size: int = 0,
    normalization: ImageNormalization | None = None,
    vision_weights: dict[str, torch.Tensor] | None = None,
    language_weights: dict[str, torch.Tensor] | None = None,
    device: str | torch.device | None = None,
) -> Built:
    """Assemble a model and its processor from parts; every dimension comes from the two configs.

    `normalization` defaults to the encoder family's published values (`family_normalization`); weights are
    loaded strictly (`WeightLoadingError` names missing and unexpected keys)."""
    tokenizer = prepare_tokenizer(tokenizer)
    config = Llama3MedConfig(
        vision_config=vision_config,
        text_config=text_config,
        connector_type=connector_type,
        connector_input_norm=connector_input_norm,
        scales=scales,
        tile_size=tile_size,
        vision_feature_layer=vision_feature_layer,
        vision_prefix_tokens=vision_prefix_tokens,
        encoder_chunk_size=encoder_chunk_size,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
    )
    with torch.device(device or "cpu"):
        model = Llama3MedForConditionalGeneration(config)
    if vision_weights is not None:
        load_state_dict_strict(model.vision_tower.encoder, vision_weights, "vision encoder weights")
    if language_weights is not None:
        load_state_dict_strict(model.language_model, language_weights, "language model weights")
    model.use_special_tokens_of(tokenizer)
    processor = Llama3MedProcessor(
        Llama3MedImageProcessor.for_encoder(config.max_image_size, normalization or family_normalization(vision_config)),
        tokenizer,
        num_image_tokens=config.num_image_tokens,
    )
    return model, processor
