"""Chat -> token ids where only the chat template's own markers can be control tokens.

A message text holding a special-token string (`<|eot_id|>`, `<|im_end|>`, `<|start_header_id|>`, ...) would
otherwise be tokenised as that control token: a caption quoting `<|eot_id|>` would train the model to end its
turn mid-reply. Here message contents are encoded as plain text (the string's characters as ordinary BPE
tokens); the `<image>` placeholder inside a user turn stays the placeholder, and the template's text around
the contents keeps its control tokens.

Conversations without any special-token string in their contents are tokenised in one call, exactly as
before; only the others are tokenised piece by piece (template text, content, template text, ...).
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from typing import Any

from llama3med.model.processing import Llama3MedProcessor

# Private-use characters: never in a template, practically never in data.
SENTINEL = re.compile("\ue000(\\d+)\ue001")


class ChatEncodingError(ValueError):
    """The chat template alters message contents in a way that hides where they are in the rendered text."""


@dataclass(frozen=True)
class ChatEncoding:
    """The rendered chat, its token ids and each token's character span in `text`."""

    text: str
    input_ids: list[int]
    offsets: list[tuple[int, int]]


def control_token_pattern(tokenizer: Any, keep: str) -> re.Pattern[str] | None:
    """A regex matching the string of any special token (declared, or added with `special=True`) except `keep`
    (the image tag); None when there is none. Kept on the tokenizer until its vocabulary changes."""
    cached = getattr(tokenizer, "_llama3med_control_pattern", None)
    if cached is not None and cached[0] == (len(tokenizer), keep):
        return cached[1]
    strings = set(tokenizer.all_special_tokens)
    strings.update(token.content for token in tokenizer.added_tokens_decoder.values() if token.special)
    strings.discard(keep)
    ordered = sorted(strings, key=len, reverse=True)  # longest first: `<|eot_id|>` before any prefix of it
    pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None
    tokenizer._llama3med_control_pattern = ((len(tokenizer), keep), pattern)
    return pattern


def plain_text_tokenizer(tokenizer: Any) -> Any:
    """A copy of the fast tokenizer's backend that encodes special-token strings as ordinary text (kept on the
    tokenizer: a separate object, so no flag is flipped on the shared one while other threads use it)."""
    backend = getattr(tokenizer, "_llama3med_plain_backend", None)
    if backend is None:
        if not getattr(tokenizer, "is_fast", False):
            raise ChatEncodingError("neutralising special-token strings in data needs a fast (Rust) tokenizer")
        backend = copy.deepcopy(tokenizer.backend_tokenizer)
        backend.encode_special_tokens = True
        tokenizer._llama3med_plain_backend = backend
    return backend


def message_texts(messages: list[dict[str, Any]]) -> list[str]:
    """Every text written by the conversation's authors: string contents and the text parts of list contents."""
    texts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [part["text"] for part in content if isinstance(part, dict) and part.get("type") == "text"]
    return texts


def with_sentinels(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with each text of `message_texts` (in the same order) replaced by a numbered sentinel."""
    counter = itertools.count()

    def mark(_: str) -> str:
        return f"\ue000{next(counter)}\ue001"

    marked = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            content = mark(content)
        elif isinstance(content, list):
            content = [
                {**part, "text": mark(part["text"])} if isinstance(part, dict) and part.get("type") == "text" else part
                for part in content
            ]
        marked.append({**message, "content": content})
    return marked


def content_spans(processor: Llama3MedProcessor, messages: list[dict[str, Any]], text: str, add_generation_prompt: bool) -> list[tuple[int, int]]:
    """Character spans of the authors' texts (`message_texts`) inside `text` (the rendered chat).

    The chat is rendered again with a sentinel in place of each text; the template text between sentinels must
    then surround the texts in `text` exactly (a template may strip a text's outer whitespace)."""
    texts = message_texts(messages)
    pieces = SENTINEL.split(processor.render_chat(with_sentinels(messages), add_generation_prompt=add_generation_prompt))
    templates, indices = pieces[0::2], [int(i) for i in pieces[1::2]]
    if not text.startswith(templates[0]):
        raise ChatEncodingError("the chat template renders differently when message contents change")
    position, spans = len(templates[0]), []
    for index, following in zip(indices, templates[1:], strict=True):
        content = texts[index]
        for candidate in dict.fromkeys((content, content.strip())):
            end = position + len(candidate)
            if text.startswith(candidate, position) and text.startswith(following, end):
                spans.append((position, end))
                position = end + len(following)
                break
        else:
            raise ChatEncodingError(f"message text {index + 1} is altered by the chat template; cannot locate it")
    if position != len(text):
        raise ChatEncodingError("the chat template's text does not line up with the rendered conversation")
    return spans


def encode_chat(
    processor: Llama3MedProcessor, messages: list[dict[str, Any]], add_generation_prompt: bool = False
) -> ChatEncoding:
    """Render `messages` with the processor's template and tokenise the result (no image expansion), with
    special-token strings inside message contents encoded as plain text."""
    tokenizer = processor.tokenizer
    text = processor.render_chat(messages, add_generation_prompt=add_generation_prompt)
    pattern = control_token_pattern(tokenizer, processor.image_token)
    if pattern is None or not any(pattern.search(t) for t in message_texts(messages)):
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return ChatEncoding(text, list(encoding["input_ids"]), [tuple(o) for o in encoding["offset_mapping"]])
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []

    def add_template(start: int, end: int) -> None:
        if start < end:
            encoding = tokenizer(text[start:end], add_special_tokens=False, return_offsets_mapping=True)
            ids.extend(encoding["input_ids"])
            offsets.extend((start + a, start + b) for a, b in encoding["offset_mapping"])

    def add_content(start: int, end: int) -> None:
        plain = plain_text_tokenizer(tokenizer)
        position = start
        for match in [*re.finditer(re.escape(processor.image_token), text[start:end]), None]:
            stop = start + match.start() if match else end
            if position < stop:
                encoding = plain.encode(text[position:stop], add_special_tokens=False)
                ids.extend(encoding.ids)
                offsets.extend((position + a, position + b) for a, b in encoding.offsets)
            if match:
                ids.append(processor.image_token_id)
                offsets.append((start + match.start(), start + match.end()))
                position = start + match.end()

    cursor = 0
    for start, end in content_spans(processor, messages, text, add_generation_prompt):
        add_template(cursor, start)
        add_content(start, end)
        cursor = end
    add_template(cursor, len(text))
    return ChatEncoding(text, ids, offsets)
