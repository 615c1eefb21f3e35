"""S2 geometry: tiling is lossless for per-patch encoders; the batched path equals the per-scale loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llama3med.model.multiscale import (
    encode_in_chunks,
    merge_tiles,
    multiscale_encode,
    multiscale_encode_per_scale,
    split_tiles,
)
from llama3med.model.presets import build_preset


def test_split_then_merge_is_identity_on_pixels() -> None:
    images = torch.randn(2, 3, 96, 96)
    tiles = split_tiles(images, 32)
    assert tiles.shape == (18, 3, 32, 32)
    assert torch.equal(tiles[1], images[0, :, 0:32, 32:64])  # row 0, column 1 of image 0
    assert torch.equal(tiles[3], images[0, :, 32:64, 0:32])  # row 1, column 0
    assert torch.equal(merge_tiles(tiles, 3), images)


def test_tiled_encoding_equals_whole_image_for_per_patch_encoder() -> None:
    torch.manual_seed(0)
    patch_embed = nn.Conv2d(3, 16, kernel_size=8, stride=8)  # acts on each 8x8 patch independently
    image = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        direct = patch_embed(image)  # [2, 16, 16, 16]
        tiled = merge_tiles(patch_embed(split_tiles(image, 32)), 4)
    torch.testing.assert_close(tiled, direct, atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk_size", [0, 1, 5, 64])
def test_batched_path_equals_per_scale_loop(chunk_size: int) -> None:
    model, _ = build_preset("tiny")
    images = torch.randn(3, 3, 128, 128)
    scales = model.config.scales
    batched = multiscale_encode(model.vision_tower, images, scales, chunk_size)
    loop = multiscale_encode_per_scale(model.vision_tower, images, scales)
    assert batched.shape == (3, 16, 3 * 32)
    torch.testing.assert_close(batched, loop, atol=1e-5, rtol=0)


def test_chunking_bounds_each_encoder_call() -> None:
    calls: list[int] = []

    def encode(tiles: torch.Tensor) -> torch.Tensor:
        calls.append(tiles.shape[0])
        return tiles[:, :, ::8, ::8]

    encode_in_chunks(encode, torch.randn(21, 3, 32, 32), 8)
    assert calls == [8, 8, 5]
    calls.clear()
    multiscale_encode(encode, torch.randn(2, 3, 128, 128), [32, 64, 128], 0)
    assert calls == [2 * (1 + 4 + 16)]  # every tile of every scale and image in one call


def test_single_scale_is_the_same_code() -> None:
    model, _ = build_preset("tiny", scales=[32])
    images = torch.randn(2, 3, 32, 32)
    features = model.encode_images(images)
    direct = model.vision_tower(images).flatten(2).transpose(1, 2)
    torch.testing.assert_close(features, direct, atol=1e-6, rtol=0)
