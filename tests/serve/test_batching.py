"""Dynamic batching and streaming pieces, on the real tiny model."""

from __future__ import annotations

import asyncio

import pytest

from llama3med.api import ChatRequest, GenerationSettings
from llama3med.serve.batching import DynamicBatcher, batch_key


def requests_for(images, n: int) -> list[ChatRequest]:
    paths = list(images.values())
    return [ChatRequest(paths[i % len(paths)], [{"role": "user", "content": f"Finding number {i}?"}]) for i in range(n)]


def run_batcher(api, jobs, **options):
    """Submit (request, settings) jobs concurrently; returns (results or exceptions, generate calls)."""

    async def main():
        batcher = DynamicBatcher(api, **options)
        await batcher.start()
        try:
            results = await asyncio.gather(*(batcher.submit(r, s) for r, s in jobs), return_exceptions=True)
        finally:
            await batcher.stop()
        return results, batcher.generate_calls

    return asyncio.run(main())


def test_concurrent_requests_share_one_generate_call(tiny_api, images) -> None:
    requests = requests_for(images, 6)
    settings = GenerationSettings(max_new_tokens=10)
    results, calls = run_batcher(tiny_api, [(r, settings) for r in requests], window_s=0.05)
    assert calls == 1
    assert results == [tiny_api.generate([r], max_new_tokens=10)[0] for r in requests]


def test_batches_respect_max_size_and_settings(tiny_api, images) -> None:
    requests = requests_for(images, 5)
    short, longer = GenerationSettings(max_new_tokens=4), GenerationSettings(max_new_tokens=9)
    jobs = [(r, short if i % 2 else longer) for i, r in enumerate(requests)]
    results, calls = run_batcher(tiny_api, jobs, window_s=0.05, max_batch_size=2)
    assert calls == 4  # [0, 2] fill a 9-token batch, run with [1] (4 tokens); then [3] and [4] when the window closes
    assert [r.completion_tokens <= s.max_new_tokens for r, (_, s) in zip(results, jobs, strict=True)] == [True] * 5
    assert results == [tiny_api.generate([r], **vars(s))[0] for r, s in jobs]


def test_batching_off_answers_one_by_one(tiny_api, images) -> None:
    requests = requests_for(images, 3)
    results, calls = run_batcher(tiny_api, [(r, GenerationSettings(max_new_tokens=5)) for r in requests], max_batch_size=1)
    assert calls == 3 and all(r.completion_tokens > 0 for r in results)


def test_a_failing_request_does_not_fail_its_batch(tiny_api, images) -> None:
    good = requests_for(images, 3)
    bad = ChatRequest(next(iter(images.values())), [{"role": "system", "content": "no user turn"}])
    settings = GenerationSettings(max_new_tokens=6)
    results, _ = run_batcher(tiny_api, [(good[0], settings), (bad, settings), (good[1], settings), (good[2], settings)], window_s=0.05)
    assert isinstance(results[1], ValueError) and "user turn" in str(results[1])
    assert [results[0], results[2], results[3]] == [tiny_api.generate([r], max_new_tokens=6)[0] for r in good]


def test_batch_key() -> None:
    assert batch_key(GenerationSettings(seed=1)) == batch_key(GenerationSettings(seed=2))  # greedy ignores the seed
    assert batch_key(GenerationSettings(stop=["a"])) != batch_key(GenerationSettings())
    seeded = GenerationSettings(temperature=0.7, seed=3)
    assert batch_key(seeded) != batch_key(seeded)  # seeded sampling runs alone


@pytest.mark.parametrize("stop", [None, [" "], ["a", "\n"], ["ca", "or"]])
def test_streamed_pieces_concatenate_to_the_result(tiny_api, images, stop) -> None:
    requests = requests_for(images, 4)
    pieces: dict[int, list[str]] = {}
    results = tiny_api.generate(requests, max_new_tokens=24, stop=stop, on_text=lambda row, piece: pieces.setdefault(row, []).append(piece))
    assert results == tiny_api.generate(requests, max_new_tokens=24, stop=stop)
    for row, result in enumerate(results):
        assert "".join(pieces.get(row, [])) == result.text
    if stop is None:  # without stop strings the text grows token by token
        assert all(len(pieces[row]) > 1 for row in range(len(requests)))


def test_stream_chat_equals_chat(tiny_api, images) -> None:
    image = images["slide"]
    pieces = list(tiny_api.stream_chat(image, "What stain is used?", max_new_tokens=16))
    assert len(pieces) > 1 and "".join(pieces) == tiny_api.chat(image, "What stain is used?", max_new_tokens=16)
