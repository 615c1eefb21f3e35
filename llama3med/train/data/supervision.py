"""Label masking from the chat template: only assistant content and its end-of-turn token are supervised.

Works for any chat template, without knowing its markers:
1. render the whole conversation with the processor's template;
2. for each assistant turn i, render the conversation before it with the generation prompt (exactly
   the prompt the model sees at inference); the assistant content must start right there;
3. tokenise the rendered string with offsets (`llama3med.model.chat_encoding`: special-token strings inside
   message texts become plain text, never control tokens); tokens inside an assistant content's character
   span are supervised, plus the special token that directly follows it (`<|eot_id|>`, `<|im_end|>`, ...);
4. verify: the supervised tokens of each turn decode to exactly that turn's content. Any mismatch is a
   `SupervisionError` naming the record, never a silently wrong (or zero) loss.

Image placeholders are expanded to `num_image_tokens` ids afterwards, always with label -100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llama3med.model.chat_encoding import ChatEncodingError, encode_chat
from llama3med.model.processing import Llama3MedProcessor

IGNORE_INDEX = -100
TRUNCATION_MODES = ("text", "drop")


class SupervisionError(ValueError):
    """The chat template and the label mask disagree for a record (a bug or an unsupported template)."""


class SampleTooLong(ValueError):
    """A sample exceeds `max_length` and cannot be truncated in text only (or truncation is `drop`)."""


@dataclass(frozen=True)
class SupervisedSample:
    """Token ids and labels (same length; images expanded; -100 where not supervised)."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False


def special_token_ids(tokenizer) -> set[int]:
    """Ids of every special token (declared special tokens and added tokens flagged special)."""
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, token in tokenizer.added_tokens_decoder.items() if token.special)
    return ids


def assistant_spans(
    processor: Llama3MedProcessor, messages: Sequence[dict[str, str]], record_id: str
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant content in it."""
    rendered = processor.render_chat(list(messages), add_generation_prompt=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = processor.render_chat(list(messages[:index]), add_generation_prompt=True)
        if not rendered.startswith(prompt):
            raise SupervisionError(
                f"record {record_id}: the chat template renders turn {index + 1}'s prompt differently inside the"
                " full conversation (template is not prefix-consistent); cannot locate the assistant text"
            )
        start = rendered.find(message["content"], len(prompt))
        if start < 0 or rendered[len(prompt) : start].strip():
            raise SupervisionError(
                f"record {record_id}: assistant turn {index + 1} does not follow its generation prompt in the"
                f" rendered template (the template alters the text?): {message['content'][:80]!r}"
            )
        spans.append((start, start + len(message["content"])))
    return rendered, spans


def supervise(
    processor: Llama3MedProcessor, messages: Sequence[dict[str, str]], record_id: str
) -> SupervisedSample:
    """Ids and labels of one conversation (images expanded), verified against the assistant texts."""
    tokenizer = processor.tokenizer
    rendered, spans = assistant_spans(processor, messages, record_id)
    try:
        encoding = encode_chat(processor, list(messages), add_generation_prompt=False)
    except ChatEncodingError as error:
        raise SupervisionError(f"record {record_id}: {error}") from error
    if encoding.text != rendered:
        raise SupervisionError(f"record {record_id}: the chat template renders the conversation differently on each call")
    ids, offsets = encoding.input_ids, encoding.offsets
    specials = special_token_ids(tokenizer)
    labels = [IGNORE_INDEX] * len(ids)
    contents = [m["content"] for m in messages if m["role"] == "assistant"]
    for turn, ((start, end), content) in enumerate(zip(spans, contents, strict=True)):
        inside = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
        after = next((i for i, (a, _) in enumerate(offsets) if a >= end), None)
        if not inside:
            raise SupervisionError(f"record {record_id}: assistant turn {turn + 1} has no tokens")
        decoded = tokenizer.decode([ids[i] for i in inside], clean_up_tokenization_spaces=False)
        if decoded != content:
            raise SupervisionError(
                f"record {record_id}: tokenisation mismatch in assistant turn {turn + 1}: the supervised tokens"
                f" decode to {decoded!r}, the text is {content!r}"
            )
        if after is None or after != inside[-1] + 1 or ids[after] not in specials:
            raise SupervisionError(
                f"record {record_id}: the chat template puts no end-of-turn special token right after assistant"
                f" turn {turn + 1}; the model could never learn to stop"
            )
        for i in [*inside, after]:
            labels[i] = ids[i]
    expanded_ids = processor.expand_image_tokens(ids)
    expanded_labels: list[int] = []
    for token, label in zip(ids, labels, strict=True):
        if token == processor.image_token_id:
            expanded_labels += [IGNORE_INDEX] * processor.num_image_tokens
        else:
            expanded_labels.append(label)
    return SupervisedSample(expanded_ids, expanded_labels)


def fit_length(
    sample: SupervisedSample, max_length: int, truncation: str, image_token_id: int
) -> SupervisedSample:
    """Cut an over-long sample in its text only, never through image tokens; raise `SampleTooLong` when
    that is impossible (images beyond `max_length`, nothing supervised left) or when `truncation` is `drop`."""
    length = len(sample.input_ids)
    if length <= max_length:
        return sample
    if truncation == "drop":
        raise SampleTooLong(f"{length} tokens > max_length {max_length}")
    last_image = max((i for i, t in enumerate(sample.input_ids) if t == image_token_id), default=-1)
    if last_image >= max_length:
        raise SampleTooLong(f"image tokens reach position {last_image + 1} > max_length {max_length}")
    labels = sample.labels[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        raise SampleTooLong(f"{length} tokens; nothing supervised within max_length {max_length}")
    return SupervisedSample(sample.input_ids[:max_length], labels, truncated=True)
