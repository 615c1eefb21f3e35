"""OpenAI-compatible HTTP server: `POST /v1/chat/completions` (plain and server-sent events), `GET /v1/models`,
`GET /health`. Every request is checked against `ServerLimits`; every refusal is an OpenAI-format 4xx.

    app = create_app(Llama3Med.from_pretrained(folder), model_name="llama3-med")
    run_server(folder, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from llama3med.api import ChatRequest, GenerationResult, GenerationSettings, Llama3Med
from llama3med.serve.batching import DynamicBatcher
from llama3med.serve.conversation import ParsedConversation, parse_conversation
from llama3med.serve.errors import APIError, error_response, install_error_handlers
from llama3med.serve.limits import ServerLimits
from llama3med.serve.schemas import ChatCompletionRequest

logger = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"


class ConcurrencyLimit:
    """ASGI middleware: at most `limit` chat requests in flight (queued, generating or streaming); more get a 429.

    It wraps the whole ASGI call, so a streamed answer holds its slot until its last event is sent.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit, self.in_flight = app, limit, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != CHAT_PATH:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            busy = APIError(429, f"server busy: {self.in_flight} requests in flight (limit {self.limit}); retry later", code="too_many_requests")
            await error_response(busy)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with a 413 as soon as it is known to exceed `limit` bytes."""
    too_large = APIError(413, f"request body over the limit of {limit} bytes", code="request_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def parse_body(body: bytes) -> ChatCompletionRequest:
    """JSON body -> request model; the first problem becomes a 400 naming the field."""
    try:
        return ChatCompletionRequest.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        message = f"{param}: {first['msg']}" if param else f"request body: {first['msg']}"
        raise APIError(400, message, code="invalid_value" if param else "invalid_json", param=param) from None


def completion_settings(body: ChatCompletionRequest, limits: ServerLimits, default_max_tokens: int) -> GenerationSettings:
    """Generation settings of a request, `max_tokens` checked against the server limit."""
    max_tokens = body.max_completion_tokens or body.max_tokens or min(default_max_tokens, limits.max_tokens)
    if max_tokens > limits.max_tokens:
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise APIError(400, f"{param}: {max_tokens} is over the server limit of {limits.max_tokens}", code="max_tokens_exceeded", param=param)
    return GenerationSettings(max_new_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, stop=body.stop, seed=body.seed)


def completion_body(result: GenerationResult, completion_id: str, model_name: str) -> dict[str, Any]:
    """A `chat.completion` object."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text}, "finish_reason": result.finish_reason, "logprobs": None}],
        "usage": usage(result),
    }


def usage(result: GenerationResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


@dataclass
class ServerState:
    """What the route handlers need, kept on `app.state.server` by `create_app`."""

    api: Llama3Med
    batcher: DynamicBatcher
    limits: ServerLimits
    model_name: str
    api_key: str | None
    default_max_tokens: int
    reserved_tokens: list[str]  # strings a message may not contain: the image tag, special and added tokens
    context_length: int  # the model's `max_position_embeddings`

    @classmethod
    def of(cls, request: Request) -> ServerState:
        return request.app.state.server


def require_key(request: Request) -> None:
    """With an API key configured, refuse requests without `Authorization: Bearer <key>` (401)."""
    api_key = ServerState.of(request).api_key
    if api_key is None:
        return
    header = request.headers.get("authorization")
    if not header:
        raise APIError(401, "missing API key: send the header 'Authorization: Bearer <key>'", code="missing_api_key")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
        raise APIError(401, "invalid API key", code="invalid_api_key")


def prepare(state: ServerState, parsed: ParsedConversation, settings: GenerationSettings) -> ChatRequest:
    """Decode the image and tokenise the prompt, refusing one too long for the context (CPU work: runs in a
    thread). The prompt ids travel with the request, so generation does not tokenise it again."""
    from llama3med.io.images import ImageLoadError, load_image

    limits = state.limits
    try:
        image = None if parsed.image_bytes is None else load_image(parsed.image_bytes, limits=limits.image_limits())
    except ImageLoadError as error:
        raise APIError(400, f"{parsed.image_param}: {error.reason}", code="invalid_image", param=parsed.image_param) from None
    request = ChatRequest(image, parsed.messages)
    request.prompt_ids = state.api.prompt_ids(request)
    prompt_tokens = len(request.prompt_ids)
    budget = limits.max_prompt_tokens or state.context_length - settings.max_new_tokens
    if prompt_tokens > budget:
        raise APIError(
            400,
            f"messages: the prompt takes {prompt_tokens} tokens (image included); the limit is {budget} "
            f"with max_tokens={settings.max_new_tokens}",
            code="context_length_exceeded",
            param="messages",
        )
    return request


router = APIRouter()


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness probe (no key needed), with batching counters."""
    state = ServerState.of(request)
    return {
        "status": "ok",
        "model": state.model_name,
        "generate_calls": state.batcher.generate_calls,
        "requests_answered": state.batcher.requests_answered,
    }


@router.get("/v1/models", dependencies=[Depends(require_key)])
async def models(request: Request) -> dict[str, Any]:
    """The one model this server answers with."""
    model_name = ServerState.of(request).model_name
    return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "llama3med"}]}


@router.post(CHAT_PATH, dependencies=[Depends(require_key)])
async def chat_completions(http_request: Request) -> Any:
    """Answer a conversation about one image; `stream=true` sends `chat.completion.chunk` events."""
    state = ServerState.of(http_request)
    model_name = state.model_name
    body = parse_body(await read_body(http_request, state.limits.max_body_bytes))
    if body.model != model_name:
        raise APIError(404, f"model: {body.model!r} is not served here; this server serves {model_name!r}", code="model_not_found", param="model")
    settings = completion_settings(body, state.limits, state.default_max_tokens)
    parsed = parse_conversation(body, state.limits, state.reserved_tokens)
    request = await asyncio.to_thread(prepare, state, parsed, settings)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if not body.stream:
        result = await state.batcher.submit(request, settings)
        return JSONResponse(completion_body(result, completion_id, model_name))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        stream_events(state.batcher, request, settings, completion_id, model_name, include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


def create_app(
    api: Llama3Med,
    *,
    model_name: str,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
    default_max_tokens: int = 256,
    batch_window_s: float = 0.01,
    max_batch_size: int = 16,
) -> FastAPI:
    """The FastAPI app serving `api` as `model_name`; with `api_key`, `/v1/*` requires `Authorization: Bearer <key>`.

    Requests without `max_tokens` get `default_max_tokens`; `max_batch_size=1` turns dynamic batching off.
    """
    limits = limits or ServerLimits()
    tokenizer = api.processor.tokenizer
    state = ServerState(
        api=api,
        batcher=DynamicBatcher(api, window_s=batch_window_s, max_batch_size=max_batch_size),
        limits=limits,
        model_name=model_name,
        api_key=api_key,
        default_max_tokens=default_max_tokens,
        reserved_tokens=sorted({api.processor.image_token, *tokenizer.all_special_tokens, *tokenizer.get_added_vocab()}),
        context_length=api.model.config.text_config.max_position_embeddings,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await state.batcher.start()
        yield
        await state.batcher.stop()

    # No /docs: its page loads scripts from a CDN, and the server must work offline.
    app = FastAPI(title="Llama3-Med", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = state
    install_error_handlers(app)
    app.add_middleware(ConcurrencyLimit, limit=limits.max_concurrent_requests)
    app.include_router(router)
    return app


async def stream_events(
    batcher: DynamicBatcher,
    request: ChatRequest,
    settings: GenerationSettings,
    completion_id: str,
    model_name: str,
    include_usage: bool,
) -> AsyncIterator[str]:
    """Server-sent events of one streamed completion, in OpenAI's chunk format, ending with `[DONE]`."""
    created = int(time.time())
    pieces: asyncio.Queue[str | None] = asyncio.Queue()

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }

    async def generate() -> GenerationResult:
        try:
            return await batcher.submit(request, settings, on_text=pieces.put_nowait)
        finally:
            pieces.put_nowait(None)

    task = asyncio.create_task(generate())
    try:
        yield sse(chunk({"role": "assistant", "content": ""}))
        while (piece := await pieces.get()) is not None:
            yield sse(chunk({"content": piece}))
        try:
            result = await task
        except Exception:  # the headers are sent: report in-band, as OpenAI does
            logger.exception("streamed completion %s failed", completion_id)
            yield sse(APIError(500, "internal error while generating", code="internal_error").body())
            return
        yield sse(chunk({}, result.finish_reason))
        if include_usage:
            yield sse({**chunk({}), "choices": [], "usage": usage(result)})
        yield sse("[DONE]")
    finally:
        task.cancel()  # the client went away: stop waiting for its result


def run_server(
    model_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str | None = None,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
    default_max_tokens: int = 256,
    batch_window_s: float = 0.01,
    max_batch_size: int = 16,
    device: str | None = None,
    log_level: str = "info",
) -> None:
    """Load `model_dir` and serve it with uvicorn until interrupted."""
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        logger.warning("serving on %s without an API key: anyone who can reach this address can use the model", host)
    api = Llama3Med.from_pretrained(model_dir, device=device)
    app = create_app(
        api,
        model_name=model_name or Path(model_dir).resolve().name,
        api_key=api_key,
        limits=limits,
        default_max_tokens=default_max_tokens,
        batch_window_s=batch_window_s,
        max_batch_size=max_batch_size,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
