"""Reusing frozen image features: the bounded LRU, the on-disk layer, and `Llama3Med.generate` encoding an
image once across calls with the same answers as encoding it every time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llama3med.api import ChatRequest, Llama3Med
from llama3med.model.feature_cache import FeatureCache
from llama3med.model.image_feature_cache import ImageFeatureCache, pixel_key


def pixels(seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((3, 8, 8), dtype=np.float32))


class CountingEncoder:
    """A stand-in encoder for the cache's own logic: features [M, 2, 4] from pixel statistics; remembers every
    batch it was given."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.batches.append([pixel_key(p) for p in batch])
        stats = torch.stack([batch.mean(dim=(1, 2, 3)), batch.std(dim=(1, 2, 3))], dim=1)  # [M, 2]
        return stats[:, :, None].expand(-1, -1, 4).clone()  # [M, 2, 4]


ENTRY_BYTES = 2 * 4 * 4  # one image's features: 2 x 4 float32


def test_each_distinct_image_is_encoded_once_and_the_least_recently_used_is_evicted() -> None:
    images = [pixels(i) for i in range(3)]
    keys = [pixel_key(p) for p in images]
    cache, encoder = ImageFeatureCache(max_bytes=2 * ENTRY_BYTES), CountingEncoder()

    first = cache.features([keys[0], keys[1], keys[0]], lambda i: images[[0, 1, 0][i]], encoder)
    assert encoder.batches == [[keys[0], keys[1]]]  # one call, each distinct image once
    assert torch.equal(first[0], first[2]) and not torch.equal(first[0], first[1])
    assert cache.stats.encoded == 2 and cache.stats.encode_calls == 1 and cache.bytes_held == 2 * ENTRY_BYTES

    cache.features([keys[0]], lambda i: images[0], encoder)  # 0 is now the most recently used
    cache.features([keys[2]], lambda i: images[2], encoder)  # 2 enters, 1 (least recently used) leaves
    assert len(cache) == 2 and cache.bytes_held == 2 * ENTRY_BYTES
    cache.features([keys[0], keys[2]], lambda i: images[[0, 2][i]], encoder)
    assert encoder.batches == [[keys[0], keys[1]], [keys[2]]]
    cache.features([keys[1]], lambda i: images[1], encoder)
    assert encoder.batches[-1] == [keys[1]]
    assert cache.stats.memory_hits == 3 and cache.stats.encoded == 4


def test_a_batch_larger_than_the_bound_is_still_answered_whole() -> None:
    images = [pixels(i) for i in range(3)]
    keys = [pixel_key(p) for p in images]
    cache, encoder = ImageFeatureCache(max_bytes=ENTRY_BYTES), CountingEncoder()
    features = cache.features(keys, lambda i: images[i], encoder)
    assert [f.shape for f in features] == [(2, 4)] * 3 and len(cache) == 1
    assert torch.equal(features[0], encoder(images[0][None])[0])
    assert ImageFeatureCache(max_bytes=0).features(keys[:1], lambda i: images[0], encoder)[0].shape == (2, 4)


def test_the_disk_layer_serves_a_fresh_cache_without_encoding(tmp_path: Path) -> None:
    images = [pixels(i) for i in range(2)]
    keys = [pixel_key(p) for p in images]
    disk = FeatureCache(tmp_path, "f" * 64)
    first, encoder = ImageFeatureCache(disk=disk), CountingEncoder()
    expected = first.features(keys, lambda i: images[i], encoder)
    assert sorted(p.stem for p in tmp_path.rglob("*.safetensors")) == sorted(keys)

    second, fresh_encoder = ImageFeatureCache(disk=FeatureCache(tmp_path, "f" * 64)), CountingEncoder()
    again = second.features(keys, lambda i: pytest.fail("a cached image was preprocessed"), fresh_encoder)
    assert fresh_encoder.batches == [] and second.stats.disk_hits == 2
    assert all(torch.equal(a, b) for a, b in zip(again, expected, strict=True))


def test_keys_must_be_sha256_digests() -> None:
    with pytest.raises(ValueError, match="sha256 hex digest"):
        ImageFeatureCache().features(["../../etc/passwd"], lambda i: pixels(0), CountingEncoder())


def random_image(seed: int, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8))


def test_generate_encodes_an_image_once_across_calls_with_unchanged_answers(tiny_model_dir: Path, tmp_path: Path) -> None:
    scan, slide = random_image(1, (70, 90)), random_image(2, (64, 48))
    questions = ["Is there a nodule?", "Which organ is shown?", "Is this normal?"]
    calls = [[ChatRequest(scan, [{"role": "user", "content": q}])] for q in questions]
    calls.append([ChatRequest(slide, [{"role": "user", "content": "Where?"}]), ChatRequest(scan, [{"role": "user", "content": "Why?"}])])

    reference = Llama3Med.from_pretrained(tiny_model_dir)
    reference.image_features.max_bytes = 0  # nothing kept: every call encodes its images, as before reuse
    expected = [[r.text for r in reference.generate(call, max_new_tokens=8)] for call in calls]
    assert reference.image_features.stats.encoded == 5

    api = Llama3Med.from_pretrained(tiny_model_dir)
    api.use_feature_cache(tmp_path / "features")
    assert [[r.text for r in api.generate(call, max_new_tokens=8)] for call in calls] == expected
    assert api.image_features.stats.encoded == 2 and api.image_features.stats.memory_hits == 3
    assert len(list((tmp_path / "features").rglob("*.safetensors"))) == 2

    # A new process (a fresh API) with the same feature folder encodes nothing and answers the same.
    later = Llama3Med.from_pretrained(tiny_model_dir)
    later.use_feature_cache(tmp_path / "features")
    assert [[r.text for r in later.generate(call, max_new_tokens=8)] for call in calls] == expected
    assert later.image_features.stats.encoded == 0 and later.image_features.stats.disk_hits == 2


def test_questions_on_one_image_share_its_prefill_and_keep_their_answers(tiny_model_dir: Path) -> None:
    scan, slide = random_image(3, (80, 60)), random_image(4, (50, 90))
    asks = [(scan, "Is there a nodule?"), (slide, "Which organ?"), (scan, "Is this a normal study of the chest?"), (scan, "Why?")]
    requests = [ChatRequest(image, [{"role": "user", "content": q}]) for image, q in asks]
    api = Llama3Med.from_pretrained(tiny_model_dir)
    sequences = api.prompt_sequences(requests)
    keys, features = api.encode_images(requests)
    with torch.inference_mode():
        inputs = api.shared_prefix_inputs(sequences, keys, features)
    assert inputs is not None  # 2 distinct images for 4 rows: each image's prefix is prefilled once
    prefix = inputs["cache"].get_seq_length()
    assert prefix > api.processor.num_image_tokens and inputs["input_ids"].shape[0] == 4
    assert all(inputs["input_ids"][row, :prefix].tolist() == s[:prefix] for row, s in enumerate(sequences))
    assert inputs["attention_mask"].sum(dim=1).tolist() == [len(s) for s in sequences]

    batched = api.generate(requests, max_new_tokens=10)
    alone = [Llama3Med.from_pretrained(tiny_model_dir).generate([r], max_new_tokens=10)[0] for r in requests]
    assert [(b.text, b.prompt_tokens, b.completion_tokens) for b in batched] == [
        (a.text, a.prompt_tokens, a.completion_tokens) for a in alone
    ]
