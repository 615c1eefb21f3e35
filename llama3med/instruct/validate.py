"""Turn an LLM reply into a LLaVA conversation, or reject it with a reason.

Reasons (stored in `rejects.jsonl` with a detail): `empty`, `truncated` (the reply hit max_tokens),
`malformed` (not the Question/Answer format the prompt file asks for, or the wrong number of turns),
`source_leak` (the text mentions the caption/text/report it was written from, or that the image was not
seen), `answer_too_long` (an answer over the kind's `max_answer_words`), and from `dedup`:
`exact_duplicate`, `near_duplicate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from llama3med.instruct.prompting import PromptTemplate
from llama3med.instruct.records import CaptionRecord
from llama3med.io.image_tag import add_image_tag

REASONS = (
    "empty",
    "truncated",
    "malformed",
    "source_leak",
    "answer_too_long",
    "exact_duplicate",
    "near_duplicate",
)

# A turn marker at the start of a line: "Question:", "Q1:", "**Answer:**", "2. User:", "- Assistant:" ...
_MARKER = re.compile(
    r"^[ \t]*(?:[-*#>]+[ \t]*)?(?:\d+[.)][ \t]*)?\**[ \t]*"
    r"(?P<role>question|answer|q|a|user|human|assistant|gpt)[ \t]*\d*[ \t]*\**[ \t]*[:：][ \t]*\**[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_ASKER = {"question", "q", "user", "human"}

_SOURCES = (
    r"(?:captions?|legend|text|passage|article|paper|report|description|context|abstract|mentions?|information|details)"
)
_LEAK_PATTERNS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"\bcaptions?\b",
        r"\bfigure legend\b",
        rf"\b(?:mentioned|stated|described|noted|reported|given|provided|indicated|specified)\s+(?:in|by)\s+the\s+(?:\w+\s+)?{_SOURCES}\b",
        rf"\baccording\s+to\s+the\s+(?:\w+\s+)?{_SOURCES}\b",
        rf"\bbased\s+on\s+the\s+(?:\w+\s+)?{_SOURCES}\b",
        rf"\bthe\s+(?:provided|given|accompanying|supplied|above)\s+(?:\w+\s+)?{_SOURCES}\b",
        rf"\bthe\s+(?:\w+\s+)?{_SOURCES}\s+(?:says|said|states|stated|mentions|mentioned|notes|describes|indicates|reports)\b",
        r"\b(?:can ?not|can't|unable to|don't|do not)\s+(?:see|view|look at|access)\s+(?:the|this)\s+image\b",
        r"\bwithout\s+(?:seeing|viewing|access to)\s+the\s+image\b",
        r"\bas an ai\b",
    )
)


class Rejection(Exception):
    """An output that is not kept; `reason` is one of REASONS, `detail` says what was wrong."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Turn:
    """One question and its answer."""

    question: str
    answer: str


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("**", "")).strip()


def parse_turns(text: str) -> list[Turn]:
    """Question/Answer pairs from a `turns`-format reply; text before the first marker is ignored."""
    markers = list(_MARKER.finditer(text))
    if not markers:
        raise Rejection("malformed", "no 'Question:' / 'Answer:' markers")
    turns: list[Turn] = []
    pending: str | None = None
    for index, marker in enumerate(markers):
        end = markers[index + 1].start() if index + 1 < len(markers) else len(text)
        body = _clean(text[marker.end() : end])
        is_question = marker["role"].lower() in _ASKER
        if not body:
            raise Rejection("malformed", f"empty {'question' if is_question else 'answer'} in turn {len(turns) + 1}")
        if is_question:
            if pending is not None:
                raise Rejection("malformed", f"question without an answer in turn {len(turns) + 1}")
            pending = body
        else:
            if pending is None:
                raise Rejection("malformed", f"answer without a question in turn {len(turns) + 1}")
            turns.append(Turn(pending, body))
            pending = None
    if pending is not None:
        raise Rejection("malformed", f"question without an answer in turn {len(turns) + 1}")
    return turns


def check_turn_count(turns: list[Turn], template: PromptTemplate) -> None:
    """Reject a reply with fewer or more question-answer pairs than the kind allows."""
    if not template.min_turns <= len(turns) <= template.max_turns:
        raise Rejection(
            "malformed",
            f"{len(turns)} question-answer pair(s); {template.kind} needs {template.min_turns} to {template.max_turns}",
        )


def parse_answer(text: str, question: str) -> list[Turn]:
    """An `answer`-format reply: the whole text answers the question chosen from the prompt file."""
    markers = list(_MARKER.finditer(text))
    if any(m["role"].lower() in _ASKER for m in markers):
        raise Rejection("malformed", "a question marker in a reply that should be one answer")
    body = text[markers[0].end() :] if len(markers) == 1 and not text[: markers[0].start()].strip() else text
    body = body.replace("**", "").strip()
    if not body:
        raise Rejection("empty", "no answer text")
    return [Turn(question, body)]


def find_leak(turns: list[Turn]) -> str | None:
    """The first phrase that reveals the text source, or None."""
    for turn in turns:
        for text in (turn.question, turn.answer):
            for pattern in _LEAK_PATTERNS:
                match = pattern.search(text)
                if match:
                    return match.group(0)
    return None


def word_count(text: str) -> int:
    """Whitespace-separated words."""
    return len(text.split())


def check_reply(
    text: str, truncated: bool, template: PromptTemplate, question: str | None = None
) -> list[Turn]:
    """Parse and check one reply; raises Rejection. `question` is required for `answer`-format kinds."""
    if not text.strip():
        raise Rejection("empty", "the reply has no text")
    if truncated:
        raise Rejection("truncated", "the reply stopped at max_tokens")
    if template.output_format == "answer":
        if question is None:
            raise ValueError(f"kind {template.kind!r} needs the person's question")
        turns = parse_answer(text, question)
    else:
        turns = parse_turns(text)
    leak = find_leak(turns)
    if leak:
        raise Rejection("source_leak", f"mentions the text source: {leak!r}")
    check_turn_count(turns, template)
    for number, turn in enumerate(turns, start=1):
        words = word_count(turn.answer)
        if words > template.max_answer_words:
            raise Rejection(
                "answer_too_long", f"answer {number} has {words} words; limit {template.max_answer_words}"
            )
    return turns


def to_llava(record: CaptionRecord, turns: list[Turn], generator: str, kind: str) -> dict[str, Any]:
    """LLaVA conversation format: `<image>` opens the first human turn; `id` is unique per result."""
    conversations = []
    for index, turn in enumerate(turns):
        question = add_image_tag(turn.question) if index == 0 else turn.question
        conversations.append({"from": "human", "value": question})
        conversations.append({"from": "gpt", "value": turn.answer})
    return {
        "id": f"{record.id}:{kind}:{generator}",
        "image": record.image,
        "conversations": conversations,
    }
