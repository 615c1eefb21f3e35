"""Frozen vision towers: tiles [N, 3, t, t] -> grid [N, C, g, g] from a Hugging Face ViT (one hidden layer, prefix
tokens dropped, patch order kept) or a feature-map CNN; frozen weights, eval mode and no autograd graph."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from llama3med.model.efficientnet_lite import EfficientNetLiteConfig
from llama3med.model.vision_tower import FeatureMapTower, ViTFeatureTower, build_vision_tower

VIT = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                       patch_size=8)


@pytest.fixture(scope="module")
def vit() -> CLIPVisionModel:
    torch.manual_seed(0)
    return CLIPVisionModel(VIT).eval()


def test_vit_tower_reshapes_one_hidden_layers_patch_tokens_in_row_major_order(vit: CLIPVisionModel) -> None:
    tower = ViTFeatureTower(vit, feature_layer=-2)
    tiles = torch.randn(3, 3, 32, 32)
    grid = tower(tiles)
    assert grid.shape == (3, 32, 4, 4)  # [N, C, g, g]: 32 px / patch 8
    with torch.no_grad():
        hidden = vit(pixel_values=tiles, output_hidden_states=True).hidden_states[-2]  # [N, 1 + 16, C]
    for row, column in ((0, 0), (0, 3), (2, 1), (3, 3)):
        assert torch.allclose(grid[:, :, row, column], hidden[:, 1 + 4 * row + column], atol=1e-6)
    last = ViTFeatureTower(vit, feature_layer=-1)(tiles)
    assert not torch.allclose(last, grid)  # the layer setting is used


def test_a_wrong_prefix_count_is_refused_with_the_token_counts(vit: CLIPVisionModel) -> None:
    assert ViTFeatureTower(vit, prefix_tokens=1)(torch.randn(1, 3, 32, 32)).shape == (1, 32, 4, 4)
    with pytest.raises(ValueError, match="returned 17 tokens; expected 16 patch tokens \\+ 2 prefix tokens"):
        ViTFeatureTower(vit, prefix_tokens=2)(torch.randn(1, 3, 32, 32))


def test_the_tower_stays_frozen_in_eval_mode_and_builds_no_graph(vit: CLIPVisionModel) -> None:
    tower = ViTFeatureTower(vit)
    assert not any(p.requires_grad for p in tower.parameters())
    parent = nn.Sequential(tower)
    parent.train()
    assert not tower.training and not tower.encoder.training
    tiles = torch.randn(1, 3, 32, 32, requires_grad=True)
    assert not tower(tiles).requires_grad


def test_tiles_are_cast_to_the_encoders_dtype() -> None:
    torch.manual_seed(0)
    tower = ViTFeatureTower(CLIPVisionModel(VIT).to(torch.bfloat16))
    assert tower.dtype == torch.bfloat16
    assert tower(torch.randn(1, 3, 32, 32)).dtype == torch.bfloat16


class TwoOutputs(nn.Module):
    """A CNN whose forward returns (feature map, pooled), as many backbones do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, kernel_size=3, stride=4, padding=1)
        self.norm = nn.BatchNorm2d(6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.norm(self.conv(x))
        return features, features.mean(dim=(2, 3))


def test_feature_map_tower_takes_the_map_and_keeps_its_values() -> None:
    torch.manual_seed(0)
    cnn = TwoOutputs()
    with torch.no_grad():  # give batch norm statistics that are not the identity
        cnn.norm.running_mean.uniform_(-1, 1)
        cnn.norm.running_var.uniform_(0.5, 2)
    tower = FeatureMapTower(cnn)
    tiles = torch.randn(2, 3, 32, 32)
    grid = tower(tiles)
    assert grid.shape == (2, 6, 8, 8)
    with torch.no_grad():
        expected = cnn.eval()(tiles)[0]
    assert torch.allclose(grid, expected, atol=1e-5)  # channels-last changes the layout, not the values
    tower.train()
    assert not cnn.norm.training  # batch-norm statistics are never updated


def test_feature_map_tower_refuses_an_output_that_is_not_a_map() -> None:
    tower = FeatureMapTower(nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.Flatten()))
    with pytest.raises(ValueError, match=r"must return \[N, C, h, w\]; got shape \(1, 64\)"):
        tower(torch.randn(1, 3, 32, 32))


def test_the_config_chooses_the_adapter() -> None:
    assert isinstance(build_vision_tower(VIT, -2, None), ViTFeatureTower)
    cnn = build_vision_tower(EfficientNetLiteConfig(), -2, None)
    assert isinstance(cnn, FeatureMapTower)
    assert cnn(torch.randn(1, 3, 64, 64)).shape == (1, EfficientNetLiteConfig().hidden_size, 2, 2)  # stride 32
