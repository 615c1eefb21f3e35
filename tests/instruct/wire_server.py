"""A scripted LLM server on 127.0.0.1 that speaks the Anthropic Messages API (including Message Batches)
and the OpenAI chat-completions wire formats, for driving the real `anthropic` and `openai` SDKs.

Replies are built from the request the way a real model is asked to: the few-shot examples show the
format (Question/Answer pairs or one answer), and the content comes from the caption. A record is
recognised by a tag such as `[r03]` in its caption; `script[tag]` lists the behaviour of successive
attempts for that record and kind (`default_action`, "ok" unless set, once the list is used up):

    ok, slow (answer after `slow_seconds`), 429 (with retry-after), 500, hang (longer than the client
    timeout), malformed (truncated JSON body), 401, 400, leak, long, garbage, errored (batch entry).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

TAG = re.compile(r"\[(r\d+)\]")


@dataclass
class Attempt:
    """One request the server received."""

    time: float
    wire: str
    tag: str
    kind: str
    action: str
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class ServerState:
    api_key: str
    script: dict[str, list[str]]
    default_action: str = "ok"  # what a record does once its script is used up
    retry_after: str = "0.2"
    slow_seconds: float = 0.2
    hang_seconds: float = 3.0
    batch_ready_after: float = 0.3
    attempts: list[Attempt] = field(default_factory=list)
    counters: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _kind_of(system: str, messages: list[dict[str, Any]]) -> str:
    """The kind, read from the prompt the way a model would: the examples' format and the system text."""
    examples = [m["content"] for m in messages if m["role"] == "assistant"]
    if examples and not examples[0].lstrip().startswith("Question:"):
        return "detailed_description"
    if "closed-ended" in system:
        return "closed_qa"
    if "open-ended" in system:
        return "open_qa"
    return "conversation"


def _caption(messages: list[dict[str, Any]]) -> str:
    last = messages[-1]["content"]
    match = re.search(r"Image caption: (.*)", last)
    return match.group(1).strip() if match else last


def reply_text(kind: str, caption: str, action: str) -> str:
    """The reply for an action; content derived from the caption so different records differ."""
    body = TAG.sub("", caption).strip().rstrip(".")
    if action == "leak":
        return f"Question: What is shown?\nAnswer: The caption says {body}."
    if action == "long":
        return "Question: What is shown?\nAnswer: " + " ".join(["finding"] * 400)
    if action == "garbage":
        return "I am sorry, here is some text without any structure at all."
    if kind == "detailed_description":
        return f"This image shows {body}. The remaining structures look unremarkable."
    if kind == "closed_qa":
        return f"Question: Is there an abnormality in this image ({body.split()[0]})?\nAnswer: Yes"
    if kind == "open_qa":
        return f"Question: What is the main finding?\nAnswer: {' '.join(body.split()[-4:])}"
    return (
        f"Question: What does this image show?\nAnswer: It shows {body}.\n"
        f"Question: Is the finding clearly visible?\nAnswer: Yes, {body.lower()} is clearly visible."
    )


def _words(messages: list[dict[str, Any]], system: str) -> int:
    return len(system.split()) + sum(len(m["content"].split()) for m in messages)


def _error(wire: str, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = (
        {"type": "error", "error": {"type": kind, "message": message}}
        if wire == "anthropic"
        else {"error": {"message": message, "type": kind, "code": None}}
    )
    return JSONResponse(body, status_code=status, headers=headers)


def _anthropic_message(text: str, input_tokens: int, model: str) -> dict[str, Any]:
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": len(text.split())},
    }


def build_app(state: ServerState) -> FastAPI:
    app = FastAPI()

    def authorised(request: Request) -> bool:
        # Anthropic SDKs send `x-api-key` (older) or `Authorization: Bearer` (newer); OpenAI sends Bearer.
        return state.api_key in (
            request.headers.get("x-api-key"),
            request.headers.get("authorization", "").removeprefix("Bearer "),
        )

    def next_action(tag: str, kind: str) -> str:
        with state.lock:
            attempt = state.counters[(tag, kind)]
            state.counters[(tag, kind)] += 1
        steps = state.script.get(tag, [])
        return steps[attempt] if attempt < len(steps) else state.default_action

    async def respond(wire: str, request: Request) -> Response:
        payload = await request.json()
        messages = payload["messages"]
        if wire == "anthropic":
            system = payload.get("system", "")
        else:
            system = messages[0]["content"]
            messages = messages[1:]
        caption = _caption(messages)
        tag_match = TAG.search(caption)
        tag = tag_match.group(1) if tag_match else "-"
        kind = _kind_of(system, messages)
        action = next_action(tag, kind) if authorised(request) else "401"
        input_tokens = _words(messages, system)
        attempt = Attempt(time.monotonic(), wire, tag, kind, action)
        with state.lock:
            state.attempts.append(attempt)
        if action == "401":
            return _error(wire, 401, "authentication_error", "invalid x-api-key")
        if action == "400":
            return _error(wire, 400, "invalid_request_error", "prompt is too long")
        if action == "429":
            return _error(wire, 429, "rate_limit_error", "slow down", {"retry-after": state.retry_after})
        if action == "500":
            return _error(wire, 500, "api_error", "internal error")
        if action == "malformed":
            return PlainTextResponse('{"id": "msg_1", "content": [{"type": "te', media_type="application/json")
        if action == "hang":
            await asyncio.sleep(state.hang_seconds)
        if action == "slow":
            await asyncio.sleep(state.slow_seconds)
        text = reply_text(kind, caption, action)
        attempt.input_tokens, attempt.output_tokens = input_tokens, len(text.split())
        if wire == "anthropic":
            return JSONResponse(_anthropic_message(text, input_tokens, payload["model"]))
        return JSONResponse(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": payload["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": input_tokens,
                    "completion_tokens": len(text.split()),
                    "total_tokens": input_tokens + len(text.split()),
                },
            }
        )

    @app.post("/v1/messages")
    async def messages(request: Request) -> Response:
        return await respond("anthropic", request)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await respond("openai", request)

    def batch_object(batch: dict[str, Any], base_url: str) -> dict[str, Any]:
        ended = time.monotonic() - batch["created"] >= state.batch_ready_after
        results = batch["results"]
        counts = {"processing": 0 if ended else len(results), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if ended:
            for entry in results:
                counts[entry["result"]["type"]] += 1
        now = datetime.now(timezone.utc)
        return {
            "id": batch["id"],
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": counts,
            "created_at": batch["created_at"],
            "expires_at": (now + timedelta(hours=24)).isoformat(),
            "ended_at": now.isoformat() if ended else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{base_url}v1/messages/batches/{batch['id']}/results" if ended else None,
        }

    @app.post("/v1/messages/batches")
    async def create_batch(request: Request) -> Response:
        if not authorised(request):
            return _error("anthropic", 401, "authentication_error", "invalid x-api-key")
        payload = await request.json()
        results = []
        for item in payload["requests"]:
            params = item["params"]
            caption = _caption(params["messages"])
            tag_match = TAG.search(caption)
            tag = tag_match.group(1) if tag_match else "-"
            kind = _kind_of(params.get("system", ""), params["messages"])
            action = next_action(tag, kind)
            input_tokens = _words(params["messages"], params.get("system", ""))
            with state.lock:
                state.attempts.append(Attempt(time.monotonic(), "anthropic-batch", tag, kind, action))
            if action == "errored":
                result = {"type": "errored", "error": {"type": "error", "error": {"type": "api_error", "message": "overloaded"}}}
            else:
                text = reply_text(kind, caption, action)
                result = {"type": "succeeded", "message": _anthropic_message(text, input_tokens, params["model"])}
            results.append({"custom_id": item["custom_id"], "result": result})
        with state.lock:
            batch_id = f"msgbatch_{len(state.batches) + 1:04d}"
            state.batches[batch_id] = {
                "id": batch_id,
                "created": time.monotonic(),
                "created_at": datetime.now(timezone.utc).isoformat(),
                "results": results,
            }
        return JSONResponse(batch_object(state.batches[batch_id], str(request.base_url)))

    @app.get("/v1/messages/batches/{batch_id}")
    async def retrieve_batch(batch_id: str, request: Request) -> Response:
        batch = state.batches.get(batch_id)
        if batch is None:
            return _error("anthropic", 404, "not_found_error", f"no batch {batch_id}")
        return JSONResponse(batch_object(batch, str(request.base_url)))

    @app.get("/v1/messages/batches/{batch_id}/results")
    async def batch_results(batch_id: str) -> Response:
        lines = "".join(json.dumps(entry) + "\n" for entry in state.batches[batch_id]["results"])
        return Response(lines, media_type="application/binary")

    return app


class WireServer:
    """The scripted server running in a thread on a free port of 127.0.0.1."""

    def __init__(self, api_key: str = "test-key-123", script: dict[str, list[str]] | None = None, **settings: Any):
        self.state = ServerState(api_key=api_key, script=script or {}, **settings)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            build_app(self.state), log_level="critical", timeout_graceful_shutdown=1, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def attempts(self) -> list[Attempt]:
        with self.state.lock:
            return list(self.state.attempts)

    def __enter__(self) -> WireServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("wire server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
