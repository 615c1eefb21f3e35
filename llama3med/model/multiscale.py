"""Hierarchical multi-scale ("S2") encoding (Shi et al., "When Do We Not Need Larger Vision Models?", 2024).

Pure geometry helpers (`split_tiles`, `merge_tiles`, `resize_to_scales`) plus the encoder that runs
**all tiles of all scales of the whole batch** through the tower in as few calls as `chunk_size`
allows (the reference wrapper makes one call per scale), then reassembles each scale's feature map,
area-pools it to the base grid and concatenates the scales on channels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

EncodeFn = Callable[[torch.Tensor], torch.Tensor]  # tiles [N, 3, t, t] -> grid [N, C, g, g]


def split_tiles(images: torch.Tensor, tile: int) -> torch.Tensor:
    """[B, 3, S, S] -> [B*n*n, 3, t, t], n = S / t, tiles ordered (image, row, column)."""
    b, c, h, w = images.shape
    n_rows, n_cols = h // tile, w // tile
    tiles = images.reshape(b, c, n_rows, tile, n_cols, tile)
    return tiles.permute(0, 2, 4, 1, 3, 5).reshape(b * n_rows * n_cols, c, tile, tile)


def merge_tiles(features: torch.Tensor, n: int) -> torch.Tensor:
    """[B*n*n, C, g, g] -> [B, C, n*g, n*g]; inverse of `split_tiles` on feature maps."""
    tiles, c, g, _ = features.shape
    b = tiles // (n * n)
    grid = features.reshape(b, n, n, c, g, g)
    return grid.permute(0, 3, 1, 4, 2, 5).reshape(b, c, n * g, n * g)


def resize_to_scales(images: torch.Tensor, scales: Sequence[int]) -> list[torch.Tensor]:
    """Bicubic resize of [B, 3, S, S] to each scale (the input itself where the size already matches)."""
    out = []
    for scale in scales:
        if images.shape[-1] == scale and images.shape[-2] == scale:
            out.append(images)
        else:
            out.append(F.interpolate(images, size=(scale, scale), mode="bicubic", align_corners=False))
    return out


def pool_and_concat(scale_maps: Sequence[torch.Tensor], grid: int) -> torch.Tensor:
    """Area-pool each [B, C, n*g, n*g] to [B, C, g, g], concatenate channels -> tokens [B, g*g, k*C]."""
    pooled = [m if m.shape[-1] == grid else F.adaptive_avg_pool2d(m, grid) for m in scale_maps]
    stacked = torch.cat(pooled, dim=1)  # [B, k*C, g, g]
    return stacked.flatten(2).transpose(1, 2)  # [B, g*g, k*C]


def encode_in_chunks(encode: EncodeFn, tiles: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Run `encode` over tiles [N, 3, t, t] in calls of at most `chunk_size` tiles (0 = one call)."""
    if chunk_size <= 0 or tiles.shape[0] <= chunk_size:
        return encode(tiles)
    return torch.cat([encode(chunk) for chunk in tiles.split(chunk_size)], dim=0)


def multiscale_encode(
    encode: EncodeFn, images: torch.Tensor, scales: Sequence[int], chunk_size: int = 0, tile: int | None = None
) -> torch.Tensor:
    """Batched S2 encoding: images [B, 3, S, S] -> tokens [B, g*g, len(scales)*C].

    The tiles of every scale and every image are concatenated into one tensor
    [B * sum(n_i^2), 3, t, t] and encoded together (in chunks of `chunk_size` tiles when bounded).
    The tile size `t` defaults to the smallest scale.
    """
    tile = tile or scales[0]
    per_scale_tiles = [split_tiles(img, tile) for img in resize_to_scales(images, scales)]
    counts = [t.shape[0] for t in per_scale_tiles]
    features = encode_in_chunks(encode, torch.cat(per_scale_tiles, dim=0), chunk_size)  # [sum, C, g, g]
    grid = features.shape[-1]
    maps = [merge_tiles(f, s // tile) for f, s in zip(features.split(counts), scales)]
    return pool_and_concat(maps, grid)


def multiscale_encode_per_scale(
    encode: EncodeFn, images: torch.Tensor, scales: Sequence[int], tile: int | None = None
) -> torch.Tensor:
    """The reference wrapper's algorithm: one encoder call per scale. Same result as `multiscale_encode`;
    kept as the baseline for tests and `bench/multiscale_encoding.py`."""
    tile = tile or scales[0]
    maps = []
    for scale, resized in zip(scales, resize_to_scales(images, scales)):
        maps.append(merge_tiles(encode(split_tiles(resized, tile)), scale // tile))
    grid = maps[0].shape[-1] * tile // scales[0]
    return pool_and_concat(maps, grid)
