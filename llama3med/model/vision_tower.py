"""Frozen vision-tower adapters: every encoder becomes `tiles [N, 3, t, t] -> grid [N, C, g, g]`.

(a) `ViTFeatureTower`: any Hugging Face vision transformer (CLIP, SigLIP, DINOv2, ...): take one hidden
    layer (default -2, as LLaVA and Llama3-Med do), drop CLS/register prefix tokens, reshape to a grid.
(b) `FeatureMapTower`: any module that returns a feature map [N, C, h, w] (a CNN such as EfficientNet).
(c) `TimmViTTower`: a timm vision transformer (H-optimus-0): layer -1 is its final normalised layer
    (`forward_features`, the Llama3-Med authors' choice for H-optimus-0), prefix tokens dropped.

Towers are frozen: parameters have `requires_grad=False`, the module stays in eval mode when the parent
is put in train mode, and forward runs under `torch.no_grad()` so no autograd graph is ever built.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig

from llama3med.model.efficientnet_lite import EfficientNetLiteConfig
from llama3med.model.timm_vision import TimmVisionConfig, create_timm_encoder


class FrozenTower(nn.Module):
    """Base class: keeps the wrapped encoder frozen and in eval mode."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> FrozenTower:
        # The tower is never trained: batch-norm statistics and dropout stay in inference behaviour.
        return super().train(False)

    def encode(self, tiles: torch.Tensor) -> torch.Tensor:
        """tiles [N, 3, t, t] -> grid [N, C, g, g]."""
        raise NotImplementedError

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.encode(tiles.to(self.dtype))

    @property
    def dtype(self) -> torch.dtype:
        return next(self.encoder.parameters()).dtype


class ViTFeatureTower(FrozenTower):
    """Adapter for Hugging Face ViTs: hidden_states[layer], prefix tokens dropped, reshaped to g x g."""

    def __init__(self, encoder: nn.Module, feature_layer: int = -2, prefix_tokens: int | None = None) -> None:
        super().__init__(encoder)
        self.feature_layer = feature_layer
        self.prefix_tokens = prefix_tokens

    def encode(self, tiles: torch.Tensor) -> torch.Tensor:
        outputs = self.encoder(pixel_values=tiles, output_hidden_states=True)
        hidden = outputs.hidden_states[self.feature_layer]  # [N, P + g*g, C]
        n, tokens, channels = hidden.shape
        patch = self.encoder.config.patch_size
        grid = tiles.shape[-1] // patch
        prefix = tokens - grid * grid if self.prefix_tokens is None else self.prefix_tokens
        if prefix < 0 or tokens - prefix != grid * grid:
            raise ValueError(
                f"vision tower returned {tokens} tokens; expected {grid * grid} patch tokens"
                f" + {self.prefix_tokens if self.prefix_tokens is not None else 'some'} prefix tokens"
            )
        patches = hidden[:, prefix:]  # [N, g*g, C]
        return patches.transpose(1, 2).reshape(n, channels, grid, grid)  # [N, C, g, g]


class FeatureMapTower(FrozenTower):
    """Adapter for modules returning a feature map [N, C, h, w] (or an output whose first item is one)."""

    def encode(self, tiles: torch.Tensor) -> torch.Tensor:
        # Channels-last weights and input: oneDNN's convolutions, depthwise ones above all, are faster that way on
        # CPU (EfficientNet-Lite0: bench/cpu_settings.py, docs/PERFORMANCE.md). Converting again is a no-op.
        self.encoder.to(memory_format=torch.channels_last)
        features = self.encoder(tiles.contiguous(memory_format=torch.channels_last))
        if not isinstance(features, torch.Tensor):
            features = features[0]
        if features.ndim != 4:
            raise ValueError(f"feature-map encoder must return [N, C, h, w]; got shape {tuple(features.shape)}")
        return features


class TimmViTTower(FrozenTower):
    """Adapter for timm ViTs: tokens of one layer without the class/register prefix, reshaped to g x g.

    `feature_layer` -1 takes `forward_features` (the last block followed by the final norm); other values
    count like Hugging Face's `hidden_states` (-2 = the second-to-last block's output, before any norm).
    """

    def __init__(self, encoder: nn.Module, feature_layer: int = -1) -> None:
        super().__init__(encoder)
        depth = len(encoder.blocks)
        block = depth + feature_layer if feature_layer < 0 else feature_layer - 1
        if feature_layer != -1 and not 0 <= block < depth:
            raise ValueError(f"vision feature layer {feature_layer} is outside the timm encoder's {depth} blocks")
        self.feature_layer = feature_layer
        self.block = block

    def encode(self, tiles: torch.Tensor) -> torch.Tensor:
        if self.feature_layer != -1:
            (grid,) = self.encoder.forward_intermediates(
                tiles, indices=[self.block], norm=False, output_fmt="NCHW", intermediates_only=True
            )
            return grid  # [N, C, g, g]
        tokens = self.encoder.forward_features(tiles)  # [N, prefix + g*g, C], final norm applied
        n, count, channels = tokens.shape
        grid = tiles.shape[-1] // self.encoder.patch_embed.patch_size[0]
        prefix = self.encoder.num_prefix_tokens
        if count - prefix != grid * grid:
            raise ValueError(f"timm encoder returned {count} tokens; expected {prefix} prefix + {grid * grid} patch tokens")
        return tokens[:, prefix:].transpose(1, 2).reshape(n, channels, grid, grid)  # [N, C, g, g]


def build_vision_tower(vision_config: PretrainedConfig, feature_layer: int, prefix_tokens: int | None) -> FrozenTower:
    """Instantiate the (randomly initialised) tower described by `vision_config`."""
    if isinstance(vision_config, EfficientNetLiteConfig):
        from llama3med.model.efficientnet_lite import EfficientNetLiteModel

        return FeatureMapTower(EfficientNetLiteModel(vision_config))
    if isinstance(vision_config, TimmVisionConfig):
        return TimmViTTower(create_timm_encoder(vision_config), feature_layer)
    return ViTFeatureTower(AutoModel.from_config(vision_config), feature_layer, prefix_tokens)
