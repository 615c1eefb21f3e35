"""OpenAI chat messages -> a conversation with one inline image (`llama3med.serve.conversation`): only base64
data: URLs, one image in a user turn, no reserved tokens, the text within the limits, a user turn last."""

from __future__ import annotations

import base64

import pytest

from llama3med.serve.conversation import decode_data_url, parse_conversation
from llama3med.serve.errors import APIError
from llama3med.serve.limits import ServerLimits
from llama3med.serve.schemas import ChatCompletionRequest

PNG_BYTES = b"\x89PNG\r\n\x1a\n-not-decoded-here"
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()


def refusal(call, *args) -> APIError:
    with pytest.raises(APIError) as raised:
        call(*args)
    assert raised.value.status == 400
    return raised.value


def request(*messages: dict) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": list(messages)})


def image_turn(text: str = "What is shown?", url: str = DATA_URL, role: str = "user") -> dict:
    return {"role": role, "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}


def test_data_urls_decode_with_or_without_line_breaks_and_media_type():
    assert decode_data_url(DATA_URL, "p", 1024) == PNG_BYTES
    wrapped = DATA_URL[:40] + "\n" + DATA_URL[40:]
    assert decode_data_url(wrapped, "p", 1024) == PNG_BYTES
    assert decode_data_url("data:;base64,aGk=", "p", 1024) == b"hi"
    assert decode_data_url("DATA:application/dicom;base64,aGk=", "p", 1024) == b"hi"


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("https://example.org/x.png", "unsupported_image_url", "p: got a https: URL; only inline data: URLs"),
        ("x.png", "unsupported_image_url", "p: got a relative URL"),
        ("file:///etc/passwd", "unsupported_image_url", "p: got a file: URL"),
        ("data:image/png,abc", "invalid_image_url", "p: the data: URL must be base64 encoded"),
        ("data:text/plain;base64,aGk=", "invalid_image", "p: media type 'text/plain' is not an image"),
        ("data:image/png;base64,@@@@", "invalid_image_url", "p: the data: URL is not valid base64"),
        ("data:image/png;base64," + "A" * 16, "image_too_large", "p: the image is about 12 bytes; the limit is 8"),
    ],
)
def test_bad_data_urls_are_400s_naming_the_field(url, code, message):
    error = refusal(decode_data_url, url, "p", 8)
    assert error.code == code and error.param == "p" and error.message.startswith(message)


def test_the_image_tag_goes_where_the_image_was_and_developer_is_system():
    parsed = parse_conversation(
        request({"role": "developer", "content": "Answer briefly."}, image_turn(), {"role": "assistant", "content": "A CT."},
                {"role": "user", "content": "Which organ?"}),
        ServerLimits(), ["<image>"],
    )
    assert parsed.messages == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "<image>\nWhat is shown?"},
        {"role": "assistant", "content": "A CT."},
        {"role": "user", "content": "Which organ?"},
    ]
    assert parsed.image_bytes == PNG_BYTES and parsed.image_param == "messages[1].content[1].image_url"


@pytest.mark.parametrize(
    ("messages", "limits", "code", "message"),
    [
        ([image_turn(role="assistant"), {"role": "user", "content": "?"}], ServerLimits(), "invalid_image",
         "messages[0].content[1].image_url: images go in user messages, not assistant"),
        ([image_turn(), image_turn()], ServerLimits(), "too_many_images",
         "messages[1].content[1].image_url: only one image per conversation is supported (the first is messages[0]"),
        ([image_turn("Is <image> here?")], ServerLimits(), "reserved_token",
         "messages[0].content[0]: the text contains the reserved token '<image>'"),
        ([image_turn("123456")], ServerLimits(max_prompt_chars=5), "context_length_exceeded",
         "messages: 6 characters of text; the limit is 5"),
        ([image_turn(), {"role": "assistant", "content": "Yes."}], ServerLimits(), "invalid_value",
         "messages: the last message must be a user turn"),
        ([{"role": "user", "content": "Hi"}], ServerLimits(), "missing_image", "messages: no image"),
    ],
)
def test_refused_conversations(messages, limits, code, message):
    error = refusal(parse_conversation, request(*messages), limits, ["<image>"])
    assert error.code == code and error.message.startswith(message)


def test_text_only_when_allowed():
    parsed = parse_conversation(request({"role": "user", "content": "Hi"}), ServerLimits(require_image=False), [])
    assert parsed.messages == [{"role": "user", "content": "Hi"}] and parsed.image_bytes is None and parsed.image_param is None
