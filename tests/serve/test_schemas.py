"""Request bodies of the chat-completions API (`llama3med.serve.schemas`): defaults, the checks every field
gets, and unknown fields ignored."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llama3med.serve.schemas import SEED_MAX, SEED_MIN, ChatCompletionRequest, ImagePart, TextPart

MESSAGES = [{"role": "user", "content": "Hi"}]


def body(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": MESSAGES, **fields})


def test_defaults_are_greedy_and_unknown_fields_are_ignored():
    request = body(logit_bias={"1": 2}, user="someone")
    assert (request.temperature, request.top_p, request.stop, request.stream, request.n, request.seed) == (0.0, 1.0, None, False, 1, None)
    assert not hasattr(request, "logit_bias")


def test_content_parts_by_type():
    request = body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What?"}, {"type": "image_url", "image_url": {"url": "data:,", "detail": "high"}},
    ]}])
    text, image = request.messages[0].content
    assert isinstance(text, TextPart) and isinstance(image, ImagePart) and image.image_url.detail == "high"
    with pytest.raises(ValidationError):
        body(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}])


def test_stop_becomes_a_list_and_seeds_and_temperatures_pass_as_given():
    assert body(stop="\n").stop == ["\n"] and body(stop=[]).stop is None and body(stop=["a", "b"]).stop == ["a", "b"]
    assert body(seed=SEED_MIN).seed == SEED_MIN and body(seed=SEED_MAX).seed == SEED_MAX
    assert body(temperature=1e-6).temperature == 1e-6  # greedy once it is GenerationSettings (tests/test_generation.py)


@pytest.mark.parametrize(
    "fields",
    [
        {"messages": []},
        {"messages": [{"role": "tool", "content": "x"}]},
        {"temperature": 2.5},
        {"temperature": float("nan")},
        {"top_p": 0.0},
        {"max_tokens": 0},
        {"max_completion_tokens": 0},
        {"seed": SEED_MAX + 1},
        {"seed": SEED_MIN - 1},
        {"stop": ["a", "b", "c", "d", "e"]},
        {"stop": ["a", ""]},
        {"n": 2},
    ],
)
def test_out_of_range_values_are_refused(fields):
    with pytest.raises(ValidationError):
        body(**fields)
