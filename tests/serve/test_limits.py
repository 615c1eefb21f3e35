"""Configured limits, each on its own in-process server (uvicorn in a thread, real HTTP on 127.0.0.1)."""

from __future__ import annotations

import numpy as np
import openai
from PIL import Image
from serve_helpers import data_url, image_message, png_bytes, running

from llama3med.serve.limits import ServerLimits


def noise_png(width: int, height: int) -> bytes:
    return png_bytes(Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(height, width, 3), dtype=np.uint8)))


def status_and_code(call) -> tuple[int, str]:
    try:
        call()
    except openai.APIStatusError as error:
        return error.status_code, error.body["code"]
    return 200, ""


def test_image_byte_and_pixel_limits(tiny_api) -> None:
    limits = ServerLimits(max_image_bytes=20_000, max_image_pixels=5_000)
    with running(tiny_api, limits=limits) as client:

        def ask(png: bytes):
            return lambda: client.chat.completions.create(model="tiny", messages=[image_message(data_url(png), "Hi")], max_tokens=2)

        assert status_and_code(ask(noise_png(120, 120))) == (400, "image_too_large")  # ~43 kB of noise
        assert status_and_code(ask(noise_png(80, 70))) == (400, "invalid_image")  # 5600 pixels
        assert status_and_code(ask(noise_png(70, 70))) == (200, "")  # 4900 pixels, ~15 kB


def test_concurrency_limit_answers_429_then_recovers(tiny_api, images) -> None:
    url = data_url(images["scan"].read_bytes())
    with running(tiny_api, limits=ServerLimits(max_concurrent_requests=1)) as client:
        long_answer = client.chat.completions.create(
            model="tiny", messages=[image_message(url, "Describe everything.")], max_tokens=400, stream=True
        )
        next(iter(long_answer))  # the first event arrived: this request now holds the only slot
        busy = status_and_code(lambda: client.chat.completions.create(model="tiny", messages=[image_message(url, "Hi")], max_tokens=2))
        assert busy == (429, "too_many_requests")
        assert "".join(c.choices[0].delta.content or "" for c in long_answer if c.choices)  # the first one completes
        answer = client.chat.completions.create(model="tiny", messages=[image_message(url, "Hi")], max_tokens=2)
        assert answer.usage.completion_tokens > 0


def test_without_a_key_no_authorization_is_needed(tiny_api, images) -> None:
    with running(tiny_api, default_max_tokens=3) as client:
        response = client.chat.completions.create(model="tiny", messages=[image_message(data_url(images["scan"].read_bytes()), "Hi")])
        assert response.usage.completion_tokens <= 3  # default_max_tokens applies when max_tokens is absent
        assert [m.id for m in client.models.list().data] == ["tiny"]
