"""Frozen-feature cache: keys, exact round trip, atomic writes, reuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llama3med.model.feature_cache import FeatureCache, encoder_fingerprint
from llama3med.model.presets import build_preset


@pytest.fixture(scope="module")
def tiny():
    return build_preset("tiny")


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """5 deterministic noise PNGs of different sizes."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, size=(40 + 8 * i, 48 + 4 * i, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return [folder / f"img{i}.png" for i in range(5)]


def test_fingerprint_depends_on_encoder_weights_scales_and_preprocessing(tiny) -> None:
    model, processor = tiny
    base = encoder_fingerprint(model, processor.image_processor)
    assert encoder_fingerprint(*build_preset("tiny")[:1], processor.image_processor) == base  # same seed, same key
    other_scales, other_processor = build_preset("tiny", scales=[32, 64])
    assert encoder_fingerprint(other_scales, other_processor.image_processor) != base
    changed, _ = build_preset("tiny")
    with torch.no_grad():
        next(changed.vision_tower.parameters()).add_(1e-3)
    assert encoder_fingerprint(changed, processor.image_processor) != base
    # trainable parts do not change the key: stage 2 reuses stage 1's cache
    with torch.no_grad():
        changed_connector, _ = build_preset("tiny")
        changed_connector.connector[0].weight.mul_(2)
    assert encoder_fingerprint(changed_connector, processor.image_processor) == base
    processor.image_processor.pad_to_square = False
    try:
        assert encoder_fingerprint(model, processor.image_processor) != base
    finally:
        processor.image_processor.pad_to_square = True


def test_fill_stores_exact_features_once_and_atomically(tiny, tmp_path: Path, image_paths: list[Path]) -> None:
    model, processor = tiny
    cache = FeatureCache(tmp_path, encoder_fingerprint(model, processor.image_processor))
    paths = image_paths
    items = [(f"{i:064x}", p) for i, p in enumerate(paths)]
    calls: list[int] = []

    def encode(batch: list[Path]) -> torch.Tensor:
        calls.append(len(batch))
        return model.encode_images(processor.image_processor(batch)["pixel_values"])

    assert cache.fill(items, encode, batch_size=2) == 5 and calls == [2, 2, 1]
    expected = model.encode_images(processor.image_processor(paths)["pixel_values"])
    for (sha, _), features in zip(items, expected, strict=True):
        assert torch.equal(cache.load(sha), features)
    assert cache.fill(items, encode, batch_size=2) == 0 and calls == [2, 2, 1]  # all cached: nothing recomputed
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(KeyError, match="no cached features"):
        cache.load("f" * 64)
    half = FeatureCache(tmp_path, cache.fingerprint, dtype=torch.float16)
    half.store("e" * 64, expected[0])
    assert half.load("e" * 64).dtype == torch.float16
