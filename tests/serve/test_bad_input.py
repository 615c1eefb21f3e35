"""Every bad request gets its own 4xx in the OpenAI error format, and the server keeps answering."""

from __future__ import annotations

import base64
import json
import socket
import struct
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from hostile_files import bare_dicom_bytes, deflated_dicom, nifti_voxel_bomb, rle_dicom_bomb
from medical_files import ct_dataset
from serve_helpers import API_KEY, data_url, image_message, png_bytes

MiB = 1024 * 1024


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png_header(width: int = 30000, height: int = 30000) -> bytes:
    """A well-formed PNG (valid CRCs) that declares 30000 x 30000 RGB pixels: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width * 3 + 1) * 4)  # the first rows; a real bomb would go on for 2.7 GB
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key=API_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def good_png(images) -> bytes:
    return images["scan"].read_bytes()


def assert_still_answers(server, client) -> None:
    response = client.chat.completions.create(
        model=server.model_name, messages=[image_message(data_url(server_png()), "Still there?")], max_tokens=4
    )
    assert response.choices[0].message.content is not None
    assert httpx.get(f"{server.base_url}/health").json()["status"] == "ok"


def server_png() -> bytes:
    from PIL import Image

    return png_bytes(Image.new("RGB", (40, 30), (120, 30, 200)))


def error_of(call) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    body = caught.value.body
    assert set(body) == {"message", "type", "param", "code"}, body  # the client unwraps {"error": {...}}
    assert body["message"]
    return caught.value


def bad_image_cases(good: bytes) -> dict[str, tuple[str, int, str, str]]:
    """name -> (image URL, status, code, words the message must contain)."""
    return {
        "non-image payload": (data_url(b"%PDF-1.4 this is a document, not an image" * 20), 400, "invalid_image", ""),
        "text media type": (data_url(b"hello", "text/plain"), 400, "invalid_image", "not an image"),
        "truncated PNG": (data_url(good[: len(good) // 2]), 400, "invalid_image", ""),
        "30000 x 30000 PNG header": (data_url(huge_png_header()), 400, "invalid_image", ""),
        "file URL": ("file:///etc/passwd", 400, "unsupported_image_url", "never reads local files"),
        "path traversal": ("../../../../etc/passwd", 400, "unsupported_image_url", "never reads local files"),
        "http URL": ("http://127.0.0.1:9/x.png", 400, "unsupported_image_url", "fetches remote URLs"),
        "not base64": ("data:image/png;base64,@@@not-base64@@@", 400, "invalid_image_url", "base64"),
        "data URL without base64": ("data:image/png,rawbytes", 400, "invalid_image_url", "base64"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "non-image payload",
        "text media type",
        "truncated PNG",
        "30000 x 30000 PNG header",
        "file URL",
        "path traversal",
        "http URL",
        "not base64",
        "data URL without base64",
    ],
)
def test_bad_image_is_refused_and_server_survives(server, client, good_png, case) -> None:
    url, status, code, words = bad_image_cases(good_png)[case]
    error = error_of(
        lambda: client.chat.completions.create(model=server.model_name, messages=[image_message(url, "What is it?")], max_tokens=4)
    )
    assert (error.status_code, error.body["code"]) == (status, code), error.body
    assert error.body["param"] == "messages[0].content[0].image_url"
    assert words in error.body["message"]
    assert_still_answers(server, client)


def test_remote_image_url_is_never_fetched(server, client) -> None:
    with socket.socket() as listener:  # a local "remote" host: any fetch would connect here
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/scan.png"
        error = error_of(
            lambda: client.chat.completions.create(model=server.model_name, messages=[image_message(url, "Read it")], max_tokens=4)
        )
        assert error.status_code == 400
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_no_image(server, client) -> None:
    error = error_of(
        lambda: client.chat.completions.create(model=server.model_name, messages=[{"role": "user", "content": "Hello?"}], max_tokens=4)
    )
    assert (error.status_code, error.body["code"]) == (400, "missing_image")
    assert_still_answers(server, client)


def test_ten_megabytes_of_text(server, client) -> None:
    text = "lesion " * (10 * MiB // 7)
    error = error_of(
        lambda: client.chat.completions.create(
            model=server.model_name, messages=[image_message(data_url(server_png()), text)], max_tokens=4
        )
    )
    assert (error.status_code, error.body["code"]) == (400, "context_length_exceeded")
    assert "limit is 200000" in error.body["message"]
    assert_still_answers(server, client)


def test_prompt_over_the_context_length(server, client, tiny_api) -> None:
    context = tiny_api.model.config.text_config.max_position_embeddings
    error = error_of(
        lambda: client.chat.completions.create(
            model=server.model_name, messages=[image_message(data_url(server_png()), "cyst " * context)], max_tokens=4
        )
    )
    assert (error.status_code, error.body["code"]) == (400, "context_length_exceeded")
    assert "tokens" in error.body["message"]


def test_body_over_the_limit(server) -> None:
    response = httpx.post(
        f"{server.openai_base_url}/chat/completions",
        content=b"{" + b" " * (13 * MiB) + b"}",
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_unknown_model(server, client) -> None:
    error = error_of(
        lambda: client.chat.completions.create(model="gpt-4o", messages=[image_message(data_url(server_png()), "Hi")], max_tokens=4)
    )
    assert (error.status_code, error.body["code"], error.body["param"]) == (404, "model_not_found", "model")
    assert_still_answers(server, client)


@pytest.mark.parametrize("key, code", [(None, "missing_api_key"), ("wrong-key", "invalid_api_key")])
def test_missing_or_wrong_api_key(server, client, key, code) -> None:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    body = {"model": server.model_name, "messages": [image_message(data_url(server_png()), "Hi")], "max_tokens": 4}
    for method, path, payload in (("POST", "/chat/completions", body), ("GET", "/models", None)):
        response = httpx.request(method, f"{server.openai_base_url}{path}", json=payload, headers=headers, timeout=30)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == code
        assert response.headers["www-authenticate"] == "Bearer"
    assert_still_answers(server, client)


@pytest.mark.parametrize(
    "change, param, code",
    [
        ({"max_tokens": 100_000}, "max_tokens", "max_tokens_exceeded"),
        ({"max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"temperature": 5}, "temperature", "invalid_value"),
        ({"top_p": 0}, "top_p", "invalid_value"),
        ({"n": 3}, "n", "invalid_value"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
        ({"messages": []}, "messages", "invalid_value"),
    ],
)
def test_bad_settings(server, client, change, param, code) -> None:
    request = {"model": server.model_name, "messages": [image_message(data_url(server_png()), "Hi")], "max_tokens": 4} | change
    error = error_of(lambda: client.chat.completions.create(**request))
    assert (error.status_code, error.body["param"], error.body["code"]) == (400, param, code)


def test_structural_errors(server, client) -> None:
    url = data_url(server_png())
    cases = {
        "two images": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "image_url", "image_url": {"url": url}}]}
        ],
        "image in an assistant turn": [
            image_message(url, "Hi"),
            {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": url}}]},
            {"role": "user", "content": "and?"},
        ],
        "reserved token": [image_message(url, "Compare with <image> please")],
        "assistant turn last": [image_message(url, "Hi"), {"role": "assistant", "content": "Hello"}],
        "tool role": [image_message(url, "Hi"), {"role": "tool", "content": "x", "tool_call_id": "1"}],
    }
    codes = {}
    for name, messages in cases.items():
        error = error_of(lambda m=messages: client.chat.completions.create(model=server.model_name, messages=m, max_tokens=4))
        assert error.status_code == 400, name
        codes[name] = error.body["code"]
    assert codes == {
        "two images": "too_many_images",
        "image in an assistant turn": "invalid_image",
        "reserved token": "reserved_token",
        "assistant turn last": "invalid_value",
        "tool role": "invalid_value",
    }
    assert_still_answers(server, client)


def test_malformed_json_and_unknown_routes(server) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    response = httpx.post(f"{server.openai_base_url}/chat/completions", content=b'{"model": "x", "messages": [', headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    response = httpx.get(f"{server.base_url}/v1/completions", headers=headers)
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"
    response = httpx.get(f"{server.openai_base_url}/chat/completions", headers=headers)
    assert response.status_code == 405


def test_base64_with_line_breaks_is_accepted(server, client) -> None:
    encoded = base64.encodebytes(server_png()).decode()  # MIME style: a newline every 76 characters
    response = client.chat.completions.create(
        model=server.model_name, messages=[image_message(f"data:image/png;base64,{encoded}", "Hi")], max_tokens=4
    )
    assert response.usage.completion_tokens > 0


def test_text_only_requests_are_answered_when_allowed(tiny_model_dir) -> None:
    """`--allow-text-only` (ServerLimits.require_image=False) lets a caption-to-conversation LLM job use the server."""
    from fastapi.testclient import TestClient

    from llama3med.api import ChatRequest, Llama3Med
    from llama3med.serve.limits import ServerLimits
    from llama3med.serve.openai_server import create_app

    api = Llama3Med.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": "Write a question about a chest x-ray."}]
    expected = api.generate([ChatRequest(None, messages)], max_new_tokens=8)[0].text
    body = {"model": "m", "messages": messages, "max_tokens": 8}
    with TestClient(create_app(api, model_name="m", limits=ServerLimits(require_image=False))) as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == expected
    with TestClient(create_app(api, model_name="m")) as client:
        refused = client.post("/v1/chat/completions", json=body)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "missing_image"


# --- fuzzing every request field: never a 5xx ------------------------------------------------------------

NUMBERS = [0, -1, 1.5, 2**63, 2**64, -(2**63) - 1, 10**100, 1e308, float("inf"), float("nan"), True, "7", None, [], {}]
FUZZED_FIELDS = {
    "model": [None, 1, [], {}, "", "x" * 10_000],
    "messages": [
        None, 1, "hi", [], [{}], [{"role": "user"}], [{"role": "robot", "content": "x"}],
        [{"role": "user", "content": 5}], [{"role": "user", "content": [{"type": "video"}]}],
        [{"role": "user", "content": [{"type": "image_url"}]}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}],
        [{"role": "user", "content": [{"type": "text", "text": None}]}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:;base64," + "A" * 7}}]}],
    ],
    "max_tokens": NUMBERS,
    "max_completion_tokens": NUMBERS,
    "temperature": [*NUMBERS, -1e-9, 2.0000001, 1e-320],
    "top_p": [*NUMBERS, 1e-320, 1.0000001],
    "seed": [*NUMBERS, 2**64 - 1, -(2**63), "seed"],
    "n": NUMBERS,
    "stop": [5, [5], ["a"] * 5, [""], "", ["x" * 100_000], [None], {}],
    "stream": ["yes", 2, None, [], {}],
    "stream_options": [5, "x", [], {"include_usage": "maybe"}, {"include_usage": [1]}],
}  # fmt: skip


def fuzz_cases() -> list[tuple[str, object]]:
    return [(field, value) for field, values in FUZZED_FIELDS.items() for value in values]


def test_no_request_body_gets_a_5xx(server) -> None:
    """Each field with out-of-range, wrong-type and extreme values (and non-finite numbers), plain and streamed,
    then whole bodies that are not objects: every answer is a 2xx or an OpenAI-format 4xx."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    base = {"model": server.model_name, "messages": [image_message(data_url(server_png()), "Hi")], "max_tokens": 1}
    bodies = [json.dumps(base | {field: value}) for field, value in fuzz_cases()]
    bodies += [json.dumps(base | {field: value, "stream": True}) for field, value in fuzz_cases() if field != "stream"]
    bodies += ["[]", "5", '"x"', "null", "{}", "[" * 100_000, '{"max_tokens": 1e999999}', "\udcff".encode("utf-8", "surrogatepass").decode("latin-1")]
    statuses = {}
    with httpx.Client(timeout=60) as http:
        for body in bodies:
            response = http.post(f"{server.openai_base_url}/chat/completions", content=body.encode("utf-8", "surrogatepass"), headers=headers)
            statuses[body[:120]] = response.status_code
            assert response.status_code < 500, (body[:300], response.text[:500])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    assert sum(status == 400 for status in statuses.values()) > len(statuses) // 2  # most are refused
    assert_still_answers_over_http(server)


def assert_still_answers_over_http(server) -> None:
    assert httpx.get(f"{server.base_url}/health").json()["status"] == "ok"


@pytest.mark.parametrize("seed, status", [(2**64, 400), (-(2**63) - 1, 400), (2**64 - 1, 200), (-(2**63), 200)])
def test_seed_range_is_torchs(server, seed, status) -> None:
    body = {"model": server.model_name, "messages": [image_message(data_url(server_png()), "Hi")], "max_tokens": 1, "seed": seed, "temperature": 0.7}
    response = httpx.post(f"{server.openai_base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["error"]["param"] == "seed" and response.json()["error"]["code"] == "invalid_value"


def test_temperature_too_small_to_sample_decodes_greedily(server) -> None:
    """1e-320 would divide the logits into infinities (a 500 from the sampler): it answers as temperature 0."""
    answers = []
    for temperature in (0.0, 1e-320):
        body = {"model": server.model_name, "messages": [image_message(data_url(server_png()), "Hi")], "max_tokens": 6, "temperature": temperature}
        response = httpx.post(f"{server.openai_base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
        assert response.status_code == 200, response.text
        answers.append(response.json()["choices"][0]["message"]["content"])
    assert answers[0] == answers[1]


def peak_rss(process) -> int:
    """The server process's peak resident memory so far (Linux VmHWM), in bytes."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


def test_decompression_bombs_as_data_urls(server, client, tmp_path) -> None:
    """A 3 GB deflated DICOM, a 2 GiB gzip NIfTI and a 64x RLE DICOM, each under the 8 MiB image limit: 400
    with the reason, quickly, and the server's peak memory grows by far less than what they would inflate to."""
    bombs = {
        "deflated DICOM": (deflated_dicom(tmp_path / "b.dcm", ct_dataset(np.zeros((32, 32))), trailing_zero_mib=3000), "declares"),
        "gzip NIfTI": (nifti_voxel_bomb(tmp_path / "v.nii.gz", (1024, 1024, 512)), "over the limit of 268435456"),
        "RLE DICOM": (rle_dicom_bomb(tmp_path / "r.dcm", encoded_mib=6), "RLE segment 0 of frame 0"),
    }
    before = peak_rss(server.process)
    for name, (path, words) in bombs.items():
        url = data_url(path.read_bytes(), "application/dicom")
        start = time.perf_counter()
        error = error_of(lambda u=url: client.chat.completions.create(model=server.model_name, messages=[image_message(u, "What?")], max_tokens=4))
        assert time.perf_counter() - start < 10, name
        assert (error.status_code, error.body["code"]) == (400, "invalid_image") and words in error.body["message"], (name, error.body)
    assert peak_rss(server.process) - before < 512 * MiB
    assert_still_answers(server, client)


def test_dicom_without_preamble_as_a_data_url(server, client) -> None:
    """The bytes of a DICOM stored without preamble load from a data: URL as they do from a path."""
    bare = bare_dicom_bytes(ct_dataset((np.arange(32 * 32).reshape(32, 32) % 1400) - 1000))
    response = client.chat.completions.create(
        model=server.model_name, messages=[image_message(data_url(bare, "application/dicom"), "What?")], max_tokens=2
    )
    assert response.usage.completion_tokens > 0
