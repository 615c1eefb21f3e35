"""`Llama3MedConfig`: a vision config + a text config + the multi-scale and connector settings.

Everything the model's shapes depend on is derived here from the two sub-configs, so the connector
width can never disagree with what the vision path produces (a mismatch users of LLaVA-NeXT report).
"""

from __future__ import annotations

from typing import Any

from transformers import CONFIG_MAPPING, AutoConfig, PretrainedConfig

from llama3med.io.image_tag import IMAGE_TOKEN
from llama3med.model.efficientnet_lite import EfficientNetLiteConfig
from llama3med.model.timm_vision import TimmVisionConfig

CONNECTOR_TYPES = ("linear", "mlp2x_gelu", "mlp3x_gelu")
INPUT_NORMS = ("none", "standardize")  # connector_input_norm

# S2 defaults of the authors' code (standardmodelbio/Llama3-Med): the tile is the encoder's native size.
# For other tile sizes (e.g. SigLIP's 384) the hierarchy is 1x, 2x, 3x the tile.
DEFAULT_SCALES = {224: (224, 672, 1344), 336: (336, 672, 1008)}


def _as_config(value: PretrainedConfig | dict[str, Any] | None, default_type: str) -> PretrainedConfig:
    if isinstance(value, PretrainedConfig):
        return value
    value = dict(value or {})
    model_type = value.pop("model_type", default_type)
    if model_type == EfficientNetLiteConfig.model_type:
        return EfficientNetLiteConfig(**value)
    if model_type == TimmVisionConfig.model_type:
        return TimmVisionConfig(**value)
    return CONFIG_MAPPING[model_type](**value)


def vision_grid_size(vision_config: PretrainedConfig, tile_size: int) -> int:
    """Side g of the feature grid the encoder yields for one tile of `tile_size` pixels."""
    if isinstance(vision_config, EfficientNetLiteConfig):
        stride = vision_config.output_stride
        if tile_size % stride:
            raise ValueError(f"tile size {tile_size} is not a multiple of the CNN's output stride {stride}")
        return tile_size // stride
    # A ViT's patch embedding is a strided convolution: a remainder narrower than a patch is ignored
    # (SigLIP so400m/14 at 384 px -> 27 x 27).
    return tile_size // vision_config.patch_size


class Llama3MedConfig(PretrainedConfig):
    """Configuration of `Llama3MedForConditionalGeneration`.

    Args:
        vision_config: Config of the frozen encoder: any Hugging Face vision model (`clip_vision_model`,
            `siglip_vision_model`, `dinov2`, ...), `EfficientNetLiteConfig` (a CNN feature map) or
            `TimmVisionConfig` (a timm ViT such as H-optimus-0).
        text_config: Config of any causal LM (Llama-3 by default).
        connector_type: `mlp2x_gelu` (default), `linear` or `mlp3x_gelu`.
        connector_input_norm: `none` (default, the paper's plain MLP) or `standardize`: per-channel
            standardisation of the frozen features with statistics fitted on the training images before the
            connector's first step (`llama3med.model.connector.FeatureStandardizer`).
        scales: Image sizes of the hierarchy, ascending, each a multiple of the tile size. Defaults per
            the authors' code and LLaVA-S2 (224/672/1344 or 336/672/1008).
        tile_size: Pixel size of the tiles every scale is cut into; default the encoder's native size
            (S2 uses the smallest scale, which is the same thing by default). A single scale larger than
            the tile (e.g. `scales=[896], tile_size=224`) is a plain high-resolution view with the same
            token budget, the third arm of `bench/scales_experiment.py`.
        vision_feature_layer: Hidden layer of a ViT whose tokens are used (default -2, LLaVA's choice for CLIP;
            for a timm ViT, -1 is its final normalised layer, the authors' choice for H-optimus-0).
        vision_prefix_tokens: CLS/register tokens to drop; `None` infers them from the token count.
        encoder_chunk_size: Maximum tiles per encoder call (0 = every tile of the batch in one call).
        image_token_id: Id of the `<image>` placeholder (set by the processor's tokenizer); it may lie
            outside the LLM's vocabulary because placeholder positions are replaced before embedding.
    """

    model_type = "llama3med"
    sub_configs = {"vision_config": AutoConfig, "text_config": AutoConfig}

    def __init__(
        self,
        vision_config: PretrainedConfig | dict[str, Any] | None = None,
        text_config: PretrainedConfig | dict[str, Any] | None = None,
        connector_type: str = "mlp2x_gelu",
        connector_input_norm: str = "none",
        scales: list[int] | tuple[int, ...] | None = None,
        vision_feature_layer: int = -2,
        vision_prefix_tokens: int | None = None,
        encoder_chunk_size: int = 0,
        image_token_id: int | None = None,
        image_token: str = IMAGE_TOKEN,
        tile_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.vision_config = _as_config(vision_config, "clip_vision_model")
        self.text_config = _as_config(text_config, "llama")
        native = self.vision_config.image_size
        native = native[0] if isinstance(native, (list, tuple)) else native
        tile = int(tile_size or native)
        if tile != native and not isinstance(self.vision_config, EfficientNetLiteConfig):
            # A ViT's position embeddings fix its input size; CNNs take any multiple of their stride.
            raise ValueError(f"tile_size {tile} differs from the ViT's image size {native}")
        scales = tuple(int(s) for s in (scales or DEFAULT_SCALES.get(tile, (tile, 2 * tile, 3 * tile))))
        if connector_type not in CONNECTOR_TYPES:
            raise ValueError(f"connector_type {connector_type!r} is not one of {CONNECTOR_TYPES}")
        if connector_input_norm not in INPUT_NORMS:
            raise ValueError(f"connector_input_norm {connector_input_norm!r} is not one of {INPUT_NORMS}")
        if list(scales) != sorted(set(scales)):
            raise ValueError(f"scales must be strictly ascending, got {list(scales)}")
        if scales[0] < tile:
            raise ValueError(f"the smallest scale ({scales[0]}) is below the tile size ({tile})")
        bad = [s for s in scales if s % tile]
        if bad:
            raise ValueError(f"every scale must be a multiple of the tile size {tile}; {bad} are not")
        if encoder_chunk_size < 0:
            raise ValueError("encoder_chunk_size must be >= 0 (0 = no chunking)")
        self.connector_type = connector_type
        self.connector_input_norm = connector_input_norm
        self.scales = list(scales)
        self.vision_feature_layer = vision_feature_layer
        self.vision_prefix_tokens = vision_prefix_tokens
        self.encoder_chunk_size = encoder_chunk_size
        self.image_token_id = image_token_id
        self.image_token = image_token
        self.tile_size = tile
        vision_grid_size(self.vision_config, tile)  # validates the tile against patch/stride
        super().__init__(**kwargs)

    # Derived geometry -----------------------------------------------------------------------------
    @property
    def max_image_size(self) -> int:
        """Size the processor resizes images to (the largest scale)."""
        return self.scales[-1]

    @property
    def grid_size(self) -> int:
        """Side g of the base feature grid; every scale is pooled to g x g."""
        return vision_grid_size(self.vision_config, self.tile_size)

    @property
    def num_image_tokens(self) -> int:
        """LLM tokens per image: one base view, g^2, whatever the number of scales."""
        return self.grid_size**2

    @property
    def encoder_passes_per_image(self) -> int:
        """Tiles the encoder runs on per image: sum over scales of (scale / tile)^2 (224/672/1344: 1 + 9 + 36 = 46)."""
        return sum((scale // self.tile_size) ** 2 for scale in self.scales)

    @property
    def vision_hidden_size(self) -> int:
        """Channel width C of one scale's features."""
        return self.vision_config.hidden_size

    @property
    def connector_input_size(self) -> int:
        """Connector input width = number of scales x encoder width."""
        return len(self.scales) * self.vision_hidden_size

    def get_text_config(self, *args: Any, **kwargs: Any) -> PretrainedConfig:
        """The language model's config (used by generation utilities)."""
        return self.text_config
