"""LLM backends (`llama3med.instruct.backends`): API keys from the environment only, the SDKs' errors mapped onto
retry decisions with the key scrubbed, and one real call per SDK against the scripted server."""

from __future__ import annotations

import asyncio

import anthropic
import httpx
import openai
import pytest
from anthropic.types import Message

from llama3med.instruct.backends import (
    AnthropicBackend,
    Completion,
    OpenAICompatibleBackend,
    create_backend,
    read_api_key,
)
from llama3med.instruct.generators import GeneratorSpec
from llama3med.instruct.prompting import ChatRequest, build_request, load_prompts
from llama3med.instruct.records import CaptionRecord
from llama3med.instruct.retry import FatalBackendError, TransientError

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

KEY = "sk-secret-4f2a"
CLAUDE = GeneratorSpec("claude", "anthropic", "claude-3-opus-20240229", timeout=7.0)
REQUEST = ChatRequest("Be brief.", ({"role": "user", "content": "Hi"},), max_tokens=20, temperature=None)


def status_error(sdk, status: int, message: str, headers: dict[str, str] | None = None) -> Exception:
    """The SDK's own exception for an HTTP error response (what the SDK raises for that status)."""
    response = httpx.Response(status, headers=headers or {}, request=httpx.Request("POST", "http://h/v1/messages"))
    return sdk.APIStatusError(message, response=response, body={"error": {"type": "x", "message": message}})


def test_keys_come_from_the_environment_and_a_missing_one_names_the_variable(monkeypatch):
    monkeypatch.setenv("MY_KEY", f"  {KEY}\n")
    assert read_api_key(GeneratorSpec("g", "anthropic", "m", api_key_env="MY_KEY")) == KEY
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert read_api_key(GeneratorSpec("local", "openai", "m", base_url="http://h/v1")) is None  # a local server
    with pytest.raises(FatalBackendError, match="environment variable OPENAI_API_KEY is not set"):
        read_api_key(GeneratorSpec("hosted", "openai", "m"))


@pytest.mark.parametrize(
    ("backend_class", "spec", "sdk"),
    [
        (AnthropicBackend, CLAUDE, anthropic),
        (OpenAICompatibleBackend, GeneratorSpec("llama", "openai", "llama-3-70b", base_url="http://h/v1", timeout=7.0), openai),
    ],
    ids=["anthropic", "openai"],
)
def test_status_codes_map_to_retry_or_stop_and_the_key_is_scrubbed(backend_class, spec, sdk, monkeypatch):
    monkeypatch.setenv(spec.key_env, KEY)
    errors = backend_class(spec).errors
    throttled = errors.map(status_error(sdk, 429, "slow down", {"retry-after": "7"}))
    assert isinstance(throttled, TransientError) and str(throttled) == "HTTP 429: slow down"
    assert throttled.retry_after == 7.0
    assert isinstance(errors.map(status_error(sdk, 503, "busy")), TransientError)
    denied = errors.map(status_error(sdk, 401, f"invalid x-api-key {KEY}"))
    assert isinstance(denied, FatalBackendError) and KEY not in str(denied)
    assert "authentication failed (HTTP 401: invalid x-api-key ***)" in str(denied) and f"${spec.key_env}" in str(denied)
    rejected = errors.map(status_error(sdk, 400, "max_tokens too large"))
    assert isinstance(rejected, FatalBackendError) and "request rejected (HTTP 400: max_tokens too large)" in str(rejected)
    request = httpx.Request("POST", "http://h/v1/messages")
    assert str(errors.map(sdk.APITimeoutError(request=request))) == "timed out after 7 s"
    assert str(errors.map(sdk.APIConnectionError(request=request))).startswith("connection error")
    other = KeyError("not an API error")
    assert errors.map(other) is other
    with pytest.raises(KeyError):
        errors.raise_mapped(other)


def test_anthropic_request_body_and_reply(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    backend = AnthropicBackend(CLAUDE)
    params = backend.request_params(REQUEST)
    assert params == {"model": CLAUDE.model, "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20}
    warm = ChatRequest(REQUEST.system, REQUEST.messages, REQUEST.max_tokens, temperature=0.7)
    assert backend.request_params(warm)["temperature"] == 0.7
    message = Message.model_validate({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-opus-20240229",
        "content": [{"type": "text", "text": "Question: A?\n"}, {"type": "text", "text": "Answer: B."}],
        "stop_reason": "max_tokens", "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 20},
    })
    assert backend.completion_from_message(message) == Completion("Question: A?\nAnswer: B.", 12, 20, True, "claude-3-opus-20240229")
    with pytest.raises(TransientError, match="no content or usage"):
        backend.completion_from_message(Message.model_construct(content=None, usage=None))


def test_create_backend_by_provider(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    assert isinstance(create_backend(CLAUDE), AnthropicBackend)
    assert isinstance(create_backend(GeneratorSpec("l", "openai", "m", base_url="http://h/v1")), OpenAICompatibleBackend)
    with pytest.raises(ValueError, match="unknown provider 'gemini'"):
        create_backend(GeneratorSpec("x", "gemini", "pro", api_key_env="X"))


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_one_completion_through_each_sdk(provider, wire_server, api_keys):
    server = wire_server()
    base_url = server.url if provider == "anthropic" else f"{server.url}/v1"
    spec = GeneratorSpec("g", provider, "model-x", base_url=base_url, timeout=10.0)
    template = load_prompts(kinds=("open_qa",))["open_qa"]
    request = build_request(template, CaptionRecord("r", "r.png", "[r00] Axial CT shows a liver lesion."), max_tokens=300, temperature=0.5)

    async def complete_once() -> Completion:
        backend = create_backend(spec)
        try:
            return await backend.complete(request)
        finally:
            await backend.aclose()

    completion = asyncio.run(complete_once())
    [attempt] = server.attempts
    assert attempt.wire == provider and attempt.kind == "open_qa" and attempt.action == "ok"
    assert (completion.input_tokens, completion.output_tokens) == (attempt.input_tokens, attempt.output_tokens)
    assert completion.text.startswith("Question:") and not completion.truncated
