"""Frozen vision-tower adapters: every encoder becomes `tiles [N, 3, t, t] -> grid [N, C, g, g]`.

(a) `ViTFeatureTower`: any Hugging Face vision transformer (CLIP, SigLIP, DINOv2, ...): take one hidden
    layer (default -2, as LLaVA and Llama3-Med do), drop CLS/register prefix tokens, reshape to a grid.
(b) `FeatureMapTower`: any module that returns a feature map [N, C, h, w] (a CNN such as EfficientNet).

Towers are frozen: parameters have `requires_grad=False`, the module stays in eval mode when the parent
is put in train mode, and forward runs under `torch.no_grad()` so no autograd graph is ever built.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig

from llama3med.model.efficientnet_lite import EfficientNetLiteConfig


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
        features = self.encoder(tiles)
        if not isinstance(features, torch.Tensor):
            features = features[0]
        if features.ndim != 4:
            raise ValueError(f"feature-map encoder must return [N, C, h, w]; got shape {tuple(features.shape)}")
        return features


def build_vision_tower(vision_config: PretrainedConfig, feature_layer: int, prefix_tokens: int | None) -> FrozenTower:
    """Instantiate the (randomly initialised) tower described by `vision_config`."""
    if isinstance(vision_config, EfficientNetLiteConfig):
        from llama3med.model.efficientnet_lite import EfficientNetLiteModel

        return FeatureMapTower(EfficientNetLiteModel(vision_config))
    return ViTFeatureTower(AutoModel.from_config(vision_config), feature_layer, prefix_tokens)
