"""The real `openai` client against `llama3med serve`: answers equal the Python API's (greedy decoding)."""

from __future__ import annotations

import httpx
import openai
import pytest
from serve_helpers import API_KEY, data_url, image_message, running

from llama3med.api import ChatRequest


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key=API_KEY, max_retries=0, timeout=120)


def test_chat_completion_with_image_equals_python_api(server, client, tiny_api, images) -> None:
    url = data_url(images["scan"].read_bytes())
    response = client.chat.completions.create(
        model=server.model_name, messages=[image_message(url, "What does this image show?")], max_tokens=24
    )
    expected = tiny_api.generate(
        [ChatRequest(images["scan"], [{"role": "user", "content": "What does this image show?"}])], max_new_tokens=24
    )[0]
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected.text
    assert choice.message.content == tiny_api.chat(images["scan"], "What does this image show?", max_new_tokens=24)
    assert choice.finish_reason == expected.finish_reason
    assert response.model == server.model_name
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (expected.prompt_tokens, expected.completion_tokens)
    assert response.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens


def test_streamed_completion_equals_python_api(server, client, tiny_api, images) -> None:
    url = data_url(images["slide"].read_bytes())
    stream = client.chat.completions.create(
        model=server.model_name,
        messages=[image_message(url, "Describe the tissue.")],
        max_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    expected = tiny_api.generate([ChatRequest(images["slide"], [{"role": "user", "content": "Describe the tissue."}])], max_new_tokens=30)[0]
    assert len(pieces) > 1  # really streamed, not one final piece
    assert "".join(pieces) == expected.text
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [expected.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == expected.completion_tokens
    assert chunks[-1].usage.prompt_tokens == expected.prompt_tokens
    assert {c.id for c in chunks} == {chunks[0].id}


def test_multi_turn_equals_python_api(server, client, tiny_api, images) -> None:
    first = tiny_api.chat(images["scan"], "Which organ is shown?", max_new_tokens=12)
    history = [{"role": "user", "content": "Which organ is shown?"}, {"role": "assistant", "content": first}]
    second = tiny_api.chat(images["scan"], "Is it abnormal?", history=history, max_new_tokens=12)
    messages = [
        image_message(data_url(images["scan"].read_bytes()), "Which organ is shown?"),
        {"role": "assistant", "content": first},
        {"role": "user", "content": "Is it abnormal?"},
    ]
    response = client.chat.completions.create(model=server.model_name, messages=messages, max_tokens=12)
    assert response.choices[0].message.content == second
    assert second != tiny_api.chat(images["scan"], "Is it abnormal?", max_new_tokens=12)  # the history mattered


def test_stop_strings_and_system_prompt_match_python_api(server, client, tiny_api, images) -> None:
    messages = [{"role": "system", "content": "You are a radiologist."}, {"role": "user", "content": "Findings?"}]
    full = tiny_api.generate([ChatRequest(images["scan"], messages)], max_new_tokens=24)[0].text
    stop = full.split()[1] if len(full.split()) > 1 else full[1:3]  # a string the answer really contains
    expected = tiny_api.generate([ChatRequest(images["scan"], messages)], max_new_tokens=24, stop=[stop])[0]
    response = client.chat.completions.create(
        model=server.model_name,
        messages=[messages[0], image_message(data_url(images["scan"].read_bytes()), "Findings?")],
        max_tokens=24,
        stop=stop,
    )
    assert response.choices[0].message.content == expected.text
    assert len(expected.text) < len(full) and response.choices[0].finish_reason == "stop"


def test_seeded_sampling_is_reproducible(server, client, images) -> None:
    request = {
        "model": server.model_name,
        "messages": [image_message(data_url(images["scan"].read_bytes()), "Describe it.")],
        "max_tokens": 16,
        "temperature": 1.0,
        "top_p": 0.9,
        "seed": 11,
    }
    answers = {client.chat.completions.create(**request).choices[0].message.content for _ in range(2)}
    assert len(answers) == 1


def test_models_and_health(server, client) -> None:
    assert [m.id for m in client.models.list().data] == [server.model_name]
    health = httpx.get(f"{server.base_url}/health").json()
    assert health["status"] == "ok" and health["model"] == server.model_name
    assert health["requests_answered"] >= 0


def test_each_request_is_tokenised_once_and_answers_are_unchanged(tiny_api, images, monkeypatch) -> None:
    """The server tokenises a prompt to check its length and hands those ids on to generation."""
    import llama3med.api

    question = "What does this image show?"
    expected = tiny_api.generate([ChatRequest(images["scan"], [{"role": "user", "content": question}])], max_new_tokens=12)[0]
    encoded: list[str] = []
    encode_chat = llama3med.api.encode_chat

    def counting_encode_chat(processor, messages, **options):
        encoded.append(messages[-1]["content"])
        return encode_chat(processor, messages, **options)

    monkeypatch.setattr(llama3med.api, "encode_chat", counting_encode_chat)
    messages = [image_message(data_url(images["scan"].read_bytes()), question)]
    with running(tiny_api) as client:
        plain = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12)
        assert len(encoded) == 1
        stream = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert len(encoded) == 2
    assert plain.choices[0].message.content == streamed == expected.text
    assert plain.usage.prompt_tokens == expected.prompt_tokens
