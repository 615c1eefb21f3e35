"""Frozen image features kept for reuse at inference: a bounded in-memory LRU in front of the optional
on-disk frozen-feature cache (`llama3med.model.feature_cache.FeatureCache`) and the encoder.

The vision tower is frozen, so an image's multi-scale features [g*g, n_scales*C] depend only on its pixels,
the encoder and the scales. Benchmarks ask many questions about one image (VQA-RAD 451 questions on 203
images, SLAKE 1,061 on 96, PathVQA 6,719 on 858) and a conversation sends its image again with every turn;
keyed by image, the encoder (on CPU the dominant cost: 21 EfficientNet tiles per image for `small`) runs
once per image instead of once per question.

Keys are sha256 hex digests naming an image *as the model sees it*: `pixel_key` of the preprocessed pixels,
or a caller's digest that stands for them (e.g. the image file's sha256 when every request loads the file
the same way, the key the training feature cache uses). Equal keys must mean equal pixels.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from llama3med.model.feature_cache import FeatureCache

DEFAULT_MAX_BYTES = 512 * 2**20  # `small`: 0.75 MB per image (49 x 3840 float32), so ~700 images
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def pixel_key(pixels: torch.Tensor) -> str:
    """sha256 of one preprocessed image [3, S, S] (its shape, dtype and exact values)."""
    pixels = pixels.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{tuple(pixels.shape)}:{pixels.dtype}:".encode())
    digest.update(pixels.view(torch.uint8).numpy().tobytes())  # raw bytes: any dtype, bfloat16 included
    return digest.hexdigest()


@dataclass
class FeatureCacheStats:
    """Where image features came from since the cache was made (or `reset`)."""

    encoded: int = 0  # images run through the encoder
    encode_calls: int = 0  # encoder calls (each encodes the missing images of one batch together)
    encode_seconds: float = 0.0  # wall time inside those calls
    memory_hits: int = 0  # images of a request found in memory
    disk_hits: int = 0  # images of a request read from the on-disk cache

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImageFeatureCache:
    """Frozen features by image key: the most recently used within `max_bytes` in memory (on the device they
    were made on), optionally backed by `disk` (written as images are encoded, read when memory misses)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, disk: FeatureCache | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be at least 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.disk = disk
        self.stats = FeatureCacheStats()
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def reset(self) -> None:
        """Forget every feature held in memory and zero the statistics (the disk cache is kept)."""
        self._entries.clear()
        self._bytes = 0
        self.stats = FeatureCacheStats()

    def _remember(self, key: str, features: torch.Tensor) -> None:
        size = features.numel() * features.element_size()
        if size > self.max_bytes:
            return
        if key in self._entries:
            replaced = self._entries.pop(key)
            self._bytes -= replaced.numel() * replaced.element_size()
        self._entries[key] = features
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)  # least recently used first
            self._bytes -= evicted.numel() * evicted.element_size()

    def _lookup(self, key: str) -> torch.Tensor | None:
        if key in self._entries:
            self._entries.move_to_end(key)
            self.stats.memory_hits += 1
            return self._entries[key]
        if self.disk is not None and key in self.disk:
            features = self.disk.load(key)  # [g*g, n_scales*C], CPU
            self.stats.disk_hits += 1
            self._remember(key, features)
            return features
        return None

    def features(
        self,
        keys: Sequence[str],
        pixels: Callable[[int], torch.Tensor],
        encode: Callable[[torch.Tensor], torch.Tensor],
    ) -> list[torch.Tensor]:
        """Features [g*g, n_scales*C] of the images named by `keys`, in order.

        Each key is looked up in memory, then on disk; the distinct keys found nowhere are encoded together in
        one call `encode(pixels [M, 3, S, S]) -> [M, g*g, n_scales*C]`, with `pixels(i)` giving image `i`'s
        preprocessed pixels [3, S, S] (only called for images that must be encoded). The result never depends
        on eviction: an image evicted while its batch is assembled is still returned.
        """
        for key in keys:
            if not SHA256_HEX.fullmatch(key):
                raise ValueError(f"image key must be a lowercase sha256 hex digest, got {key!r}")
        found: dict[str, torch.Tensor] = {}
        first_index: dict[str, int] = {}
        for index, key in enumerate(keys):
            if key in found or key in first_index:
                continue
            features = self._lookup(key)
            if features is None:
                first_index[key] = index
            else:
                found[key] = features
        if first_index:
            batch = torch.stack([pixels(index) for index in first_index.values()])  # [M, 3, S, S]
            start = time.perf_counter()
            encoded = encode(batch)  # [M, g*g, n_scales*C]
            self.stats.encode_seconds += time.perf_counter() - start
            self.stats.encode_calls += 1
            self.stats.encoded += len(first_index)
            for key, one in zip(first_index, encoded, strict=True):
                one = one.clone()  # own storage: a row view would keep the whole batch alive in memory
                found[key] = one
                self._remember(key, one)
                if self.disk is not None:
                    self.disk.store(key, one)
        return [found[key] for key in keys]
