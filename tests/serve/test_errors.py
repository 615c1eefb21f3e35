"""Errors in the OpenAI format (`llama3med.serve.errors`): our refusals, FastAPI's own 404/405 and unexpected
exceptions all answer `{"error": {message, type, param, code}}`; a 401 names the auth scheme."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.testclient import TestClient

from llama3med.serve.errors import APIError, error_body, install_error_handlers


def test_error_body_has_the_openai_fields():
    assert error_body(429, "slow down", code="rate_limited") == {
        "error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": "rate_limited"}
    }
    assert error_body(418, "teapot", code="x", param="p")["error"]["type"] == "invalid_request_error"  # not mapped
    error = APIError(400, "messages: no image", code="missing_image", param="messages")
    assert str(error) == "messages: no image" and error.body()["error"]["param"] == "messages"


def test_every_failure_path_answers_in_the_openai_format(caplog):
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/refused")
    async def refused() -> None:
        raise APIError(401, "missing API key", code="missing_api_key")

    @app.get("/broken")
    async def broken() -> None:
        raise KeyError("secret")

    client = TestClient(app, raise_server_exceptions=False)
    answer = client.get("/refused")
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {"error": {"message": "missing API key", "type": "authentication_error", "param": None, "code": "missing_api_key"}}
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"] == {"message": "GET /nowhere: Not Found", "type": "not_found_error", "param": None, "code": "not_found"}
    assert client.post("/refused").json()["error"]["code"] == "method_not_allowed"
    with caplog.at_level(logging.ERROR, logger="llama3med.serve.errors"):
        crashed = client.get("/broken")
    assert crashed.status_code == 500
    assert crashed.json()["error"] == {"message": "internal error: KeyError", "type": "server_error", "param": None, "code": "internal_error"}
    assert "secret" not in crashed.text and "unexpected error answering GET /broken" in caplog.text
