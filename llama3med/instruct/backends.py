"""LLM backends: the official `anthropic` SDK (Messages API) and the official `openai` SDK (any
OpenAI-compatible server: vLLM, SGLang, TGI, a hosted provider, `llama3med serve`).

Both expose `complete(ChatRequest) -> Completion`. The SDKs' own retries are off (`max_retries=0`); their
exceptions are mapped onto `TransientError` / `FatalBackendError` for `retry.call_with_retries`. API keys
come from environment variables only and are scrubbed from every error message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NoReturn, Protocol

from llama3med.instruct.generators import GeneratorSpec
from llama3med.instruct.prompting import ChatRequest
from llama3med.instruct.retry import FatalBackendError, TransientError, parse_retry_after

# A self-hosted OpenAI-compatible server usually has no auth; the SDK still wants some key.
NO_KEY_PLACEHOLDER = "no-key"


@dataclass(frozen=True)
class Completion:
    """The text of one reply with the token counts the provider reported."""

    text: str
    input_tokens: int
    output_tokens: int
    truncated: bool  # stopped by max_tokens / finish_reason "length"
    model: str


class Backend(Protocol):
    """What the generation job needs from a provider."""

    spec: GeneratorSpec

    async def complete(self, request: ChatRequest) -> Completion:
        """One chat completion; raises TransientError or FatalBackendError."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP connections."""
        ...


def read_api_key(spec: GeneratorSpec) -> str | None:
    """The key from `spec.key_env`; a clear error (never the value) when it is required and missing."""
    key = os.environ.get(spec.key_env, "").strip()
    if key:
        return key
    if spec.provider == "openai" and spec.base_url:
        return None
    raise FatalBackendError(
        f"generator {spec.name!r}: environment variable {spec.key_env} is not set; "
        f"export it with the {spec.provider} API key (keys are read from the environment only)"
    )


def _api_message(body: object) -> str | None:
    """`error.message` (Anthropic and OpenAI shapes) or a plain `message`."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    return None


class _ErrorMapper:
    """Maps one SDK's exceptions (same Stainless-generated names in both SDKs) onto ours."""

    def __init__(self, sdk: ModuleType, spec: GeneratorSpec, api_key: str | None) -> None:
        self.sdk = sdk
        self.spec = spec
        self.api_key = api_key

    def scrub(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text

    def map(self, error: Exception) -> Exception:
        sdk, where = self.sdk, f"generator {self.spec.name!r}"
        if isinstance(error, sdk.APIStatusError):
            status = error.status_code
            message = self.scrub(_api_message(error.body) or str(error.message))
            if status in (408, 409, 429) or status >= 500:
                return TransientError(f"HTTP {status}: {message}", parse_retry_after(error.response.headers))
            if status in (401, 403):
                return FatalBackendError(
                    f"{where}: authentication failed (HTTP {status}: {message}); check the API key in "
                    f"${self.spec.key_env} and its permissions for model {self.spec.model!r}"
                )
            return FatalBackendError(f"{where}: request rejected (HTTP {status}: {message})")
        if isinstance(error, sdk.APITimeoutError):
            return TransientError(f"timed out after {self.spec.timeout:g} s")
        if isinstance(error, sdk.APIConnectionError):
            cause = error.__cause__ or error
            return TransientError(f"connection error: {self.scrub(str(cause)) or type(cause).__name__}")
        if isinstance(error, (sdk.APIResponseValidationError, json.JSONDecodeError, UnicodeDecodeError)):
            return TransientError(f"malformed response: {self.scrub(str(error))[:200]}")
        return error

    def raise_mapped(self, error: Exception) -> NoReturn:
        """Raise our exception for `error`, or `error` itself when it is not an API error."""
        mapped = self.map(error)
        if mapped is error:
            raise error
        raise mapped from error


class AnthropicBackend:
    """Claude through the Messages API."""

    def __init__(self, spec: GeneratorSpec) -> None:
        import anthropic

        api_key = read_api_key(spec)
        self.spec = spec
        self.errors = _ErrorMapper(anthropic, spec, api_key)
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=spec.base_url, timeout=spec.timeout, max_retries=0
        )

    def request_params(self, request: ChatRequest) -> dict[str, Any]:
        """The Messages API body for `request` (also used for batch entries)."""
        params: dict[str, Any] = {
            "model": self.spec.model,
            "system": request.system,
            "messages": list(request.messages),
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        return params

    def completion_from_message(self, message: Any) -> Completion:
        """Text and usage of a Messages API `Message`."""
        if getattr(message, "content", None) is None or getattr(message, "usage", None) is None:
            raise TransientError("malformed response: no content or usage in the message")
        text = "".join(block.text for block in message.content if getattr(block, "type", "") == "text")
        return Completion(
            text=text,
            input_tokens=int(message.usage.input_tokens or 0),
            output_tokens=int(message.usage.output_tokens or 0),
            truncated=message.stop_reason == "max_tokens",
            model=str(message.model or self.spec.model),
        )

    async def complete(self, request: ChatRequest) -> Completion:
        """One Messages API call."""
        try:
            params = self.request_params(request)
            # Recent SDKs dropped `temperature` from create()'s signature (newer models reject it); the
            # API still takes it for the Claude 3 family, so it travels in the body when set.
            temperature = params.pop("temperature", None)
            extra_body = {"temperature": temperature} if temperature is not None else None
            message = await self.client.messages.create(**params, extra_body=extra_body)
        except Exception as error:
            self.errors.raise_mapped(error)
        return self.completion_from_message(message)

    async def aclose(self) -> None:
        """Close the SDK client."""
        await self.client.close()


class OpenAICompatibleBackend:
    """Any server that speaks `POST {base_url}/chat/completions`."""

    def __init__(self, spec: GeneratorSpec) -> None:
        import openai

        api_key = read_api_key(spec)
        self.spec = spec
        self.errors = _ErrorMapper(openai, spec, api_key)
        self.client = openai.AsyncOpenAI(
            api_key=api_key or NO_KEY_PLACEHOLDER, base_url=spec.base_url, timeout=spec.timeout, max_retries=0
        )

    async def complete(self, request: ChatRequest) -> Completion:
        """One chat-completions call."""
        try:
            optional = {"temperature": request.temperature} if request.temperature is not None else {}
            response = await self.client.chat.completions.create(
                model=self.spec.model,
                messages=[{"role": "system", "content": request.system}, *request.messages],
                max_tokens=request.max_tokens,
                **optional,
            )
        except Exception as error:
            self.errors.raise_mapped(error)
        if not getattr(response, "choices", None):
            raise TransientError("malformed response: no choices")
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=(choice.message.content if choice.message else None) or "",
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            truncated=choice.finish_reason == "length",
            model=str(response.model or self.spec.model),
        )

    async def aclose(self) -> None:
        """Close the SDK client."""
        await self.client.close()


def create_backend(spec: GeneratorSpec) -> AnthropicBackend | OpenAICompatibleBackend:
    """The backend for a generator spec."""
    if spec.provider == "anthropic":
        return AnthropicBackend(spec)
    if spec.provider == "openai":
        return OpenAICompatibleBackend(spec)
    raise ValueError(f"unknown provider {spec.provider!r}")
