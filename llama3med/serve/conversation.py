"""OpenAI chat messages -> a `ChatRequest`: text and one inline image, checked against the server limits.

Only `data:` URLs with base64 content are accepted; the server never opens a local path or fetches a
remote URL, so a request cannot read files (path traversal) or make the server call out (SSRF).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass

from llama3med.api import Message
from llama3med.io.image_tag import add_image_tag
from llama3med.serve.errors import APIError
from llama3med.serve.limits import ServerLimits
from llama3med.serve.schemas import ChatCompletionRequest, ImagePart

IMAGE_MEDIA_TYPES = ("image/", "application/dicom", "application/octet-stream")


@dataclass
class ParsedConversation:
    """Messages for `ChatRequest` (the `<image>` tag placed where the image was) and the raw image bytes."""

    messages: list[Message]
    image_bytes: bytes | None  # None for a text-only conversation (allowed by `ServerLimits.require_image=False`)
    image_param: str | None  # where the image was in the request, e.g. "messages[0].content[1].image_url"


def decode_data_url(url: str, param: str, max_bytes: int) -> bytes:
    """`data:[media type];base64,<payload>` -> bytes; anything else is a 400 naming `param`."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme != "data":
        kind = f"a {scheme}:" if scheme else "a relative"
        raise APIError(
            400,
            f"{param}: got {kind} URL; only inline data: URLs with base64 content are accepted "
            "(the server never reads local files or fetches remote URLs)",
            code="unsupported_image_url",
            param=param,
        )
    header, comma, payload = url[len("data:"):].partition(",")
    media_type, *attributes = header.split(";")
    if not comma or "base64" not in (a.strip().lower() for a in attributes):
        raise APIError(400, f"{param}: the data: URL must be base64 encoded (data:image/png;base64,...)", code="invalid_image_url", param=param)
    media_type = media_type.strip().lower()
    if media_type and not media_type.startswith(IMAGE_MEDIA_TYPES):
        raise APIError(400, f"{param}: media type {media_type!r} is not an image", code="invalid_image", param=param)
    payload = "".join(payload.split())
    if len(payload) // 4 * 3 > max_bytes:
        raise APIError(
            400, f"{param}: the image is about {len(payload) // 4 * 3} bytes; the limit is {max_bytes}", code="image_too_large", param=param
        )
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error as error:
        raise APIError(400, f"{param}: the data: URL is not valid base64 ({error})", code="invalid_image_url", param=param) from None


def parse_conversation(body: ChatCompletionRequest, limits: ServerLimits, reserved_tokens: Iterable[str]) -> ParsedConversation:
    """Check and translate the request's messages: one image in a user turn, no reserved tokens in the text,
    the text within `limits.max_prompt_chars`, and a user turn last."""
    reserved = [t for t in reserved_tokens if t]
    messages: list[Message] = []
    image: tuple[bytes, str] | None = None
    total_chars = 0
    for i, message in enumerate(body.messages):
        parts = [message.content] if isinstance(message.content, str) else message.content
        texts: list[str] = []
        has_image = False
        for j, part in enumerate(parts):
            param = f"messages[{i}].content" if isinstance(message.content, str) else f"messages[{i}].content[{j}]"
            if isinstance(part, ImagePart):
                param += ".image_url"
                if message.role != "user":
                    raise APIError(400, f"{param}: images go in user messages, not {message.role}", code="invalid_image", param=param)
                if image is not None:
                    raise APIError(
                        400, f"{param}: only one image per conversation is supported (the first is {image[1]})", code="too_many_images", param=param
                    )
                image = (decode_data_url(part.image_url.url, param, limits.max_image_bytes), param)
                has_image = True
                continue
            text = part if isinstance(part, str) else part.text
            if found := next((t for t in reserved if t in text), None):
                raise APIError(400, f"{param}: the text contains the reserved token {found!r}", code="reserved_token", param=param)
            total_chars += len(text)
            texts.append(text)
        content = "\n".join(texts)
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": add_image_tag(content) if has_image else content})
    if total_chars > limits.max_prompt_chars:
        raise APIError(
            400,
            f"messages: {total_chars} characters of text; the limit is {limits.max_prompt_chars}",
            code="context_length_exceeded",
            param="messages",
        )
    if messages[-1]["role"] != "user":
        raise APIError(400, "messages: the last message must be a user turn", code="invalid_value", param="messages")
    if image is None and limits.require_image:
        raise APIError(
            400,
            "messages: no image; Llama3-Med answers questions about an image: add an image_url part with a data: URL",
            code="missing_image",
            param="messages",
        )
    return ParsedConversation(messages, *(image or (None, None)))
