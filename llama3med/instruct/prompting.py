"""Prompt files (one YAML per kind, in `prompts/`) and the chat request built from them for one record.

A prompt file holds the system prompt, few-shot examples (each an input record and the expected reply,
sent as earlier user/assistant turns), the output format, and the validation limits for its kind.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from llama3med.instruct.records import CaptionRecord, RecordError, parse_record

KINDS = ("conversation", "detailed_description", "closed_qa", "open_qa")
DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"

OutputFormat = Literal["turns", "answer"]
DedupScope = Literal["global", "image"]


class PromptFileError(ValueError):
    """A prompt file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class DedupSettings:
    """How duplicates of this kind are found: where to look, word n-gram size, Jaccard threshold."""

    scope: DedupScope
    shingle_size: int
    threshold: float


@dataclass(frozen=True)
class FewShotExample:
    """One example input and the reply the LLM should give for it."""

    record: CaptionRecord
    output: str


@dataclass(frozen=True)
class PromptTemplate:
    """Everything about one kind: prompt text, examples, expected format and limits."""

    kind: str
    system: str
    user_template: str
    examples: tuple[FewShotExample, ...]
    output_format: OutputFormat
    questions: tuple[str, ...]
    min_turns: int
    max_turns: int
    max_answer_words: int
    max_source_chars: int
    dedup: DedupSettings
    path: Path


@dataclass(frozen=True)
class ChatRequest:
    """A provider-neutral chat request: system prompt plus alternating user/assistant messages."""

    system: str
    messages: tuple[dict[str, str], ...]
    max_tokens: int
    temperature: float | None  # None: the provider's default (newer Claude models take no temperature)


def render_source(record: CaptionRecord, max_chars: int) -> str:
    """The text block the LLM sees for one record: caption, citing sentences, context."""
    parts = [f"Image caption: {record.caption}"]
    if record.mentions:
        parts.append("Sentences citing the image:\n" + "\n".join(f"- {m}" for m in record.mentions))
    if record.context:
        parts.append(f"Clinical context:\n{record.context}")
    text = "\n\n".join(parts)
    # Case reports can run to pages; a cut keeps cost bounded and the caption (first) always survives.
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if name not in data:
        raise PromptFileError(f"{path}: missing field {name!r}")
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PromptFileError(f"{path}: field {name!r} has the wrong type ({type(value).__name__})")
    return value


def _dedup(data: dict[str, Any], path: Path) -> DedupSettings:
    raw = _field(data, "dedup", dict, path)
    scope = raw.get("scope")
    if scope not in ("global", "image"):
        raise PromptFileError(f"{path}: dedup.scope must be 'global' or 'image', got {scope!r}")
    shingle_size = raw.get("shingle_size")
    threshold = raw.get("threshold")
    if not isinstance(shingle_size, int) or shingle_size < 1:
        raise PromptFileError(f"{path}: dedup.shingle_size must be a positive integer")
    if not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise PromptFileError(f"{path}: dedup.threshold must be in (0, 1]")
    return DedupSettings(scope=scope, shingle_size=shingle_size, threshold=float(threshold))


def _examples(data: dict[str, Any], path: Path) -> tuple[FewShotExample, ...]:
    examples = []
    for index, raw in enumerate(_field(data, "examples", list, path)):
        where = f"{path}: examples[{index}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("output"), str):
            raise PromptFileError(f"{where}: needs 'caption' and 'output' strings")
        fields = {key: value for key, value in raw.items() if key != "output"}
        try:
            record = parse_record({"id": f"example-{index}", "image": "example", **fields}, where)
        except RecordError as error:
            raise PromptFileError(str(error)) from None
        examples.append(FewShotExample(record=record, output=raw["output"].strip()))
    return tuple(examples)


def load_prompt_file(path: Path) -> PromptTemplate:
    """Parse and check one prompt file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise PromptFileError(f"{path}: invalid YAML: {error}") from None
    if not isinstance(data, dict):
        raise PromptFileError(f"{path}: expected a mapping at the top level")
    kind = _field(data, "kind", str, path)
    if kind not in KINDS:
        raise PromptFileError(f"{path}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    output_format = _field(data, "output_format", str, path)
    if output_format not in ("turns", "answer"):
        raise PromptFileError(f"{path}: output_format must be 'turns' or 'answer', got {output_format!r}")
    questions = tuple(str(q).strip() for q in data.get("questions") or ())
    if output_format == "answer" and not questions:
        raise PromptFileError(f"{path}: output_format 'answer' needs a non-empty 'questions' list")
    user_template = _field(data, "user_template", str, path)
    if "{source}" not in user_template:
        raise PromptFileError(f"{path}: user_template must contain the placeholder {{source}}")
    min_turns = _field(data, "min_turns", int, path)
    max_turns = _field(data, "max_turns", int, path)
    if not 1 <= min_turns <= max_turns:
        raise PromptFileError(f"{path}: need 1 <= min_turns <= max_turns, got {min_turns}, {max_turns}")
    if output_format == "answer" and max_turns != 1:
        raise PromptFileError(f"{path}: output_format 'answer' has exactly one turn; set max_turns: 1")
    return PromptTemplate(
        kind=kind,
        system=_field(data, "system", str, path).strip(),
        user_template=user_template.strip(),
        examples=_examples(data, path),
        output_format=output_format,
        questions=questions,
        min_turns=min_turns,
        max_turns=max_turns,
        max_answer_words=_field(data, "max_answer_words", int, path),
        max_source_chars=_field(data, "max_source_chars", int, path),
        dedup=_dedup(data, path),
        path=path,
    )


def load_prompts(directory: Path | None = None, kinds: tuple[str, ...] = KINDS) -> dict[str, PromptTemplate]:
    """Load `<kind>.yaml` for each requested kind from `directory` (default: the packaged prompts)."""
    directory = directory or DEFAULT_PROMPTS_DIR
    templates = {}
    for kind in kinds:
        if kind not in KINDS:
            raise PromptFileError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
        path = directory / f"{kind}.yaml"
        if not path.is_file():
            raise PromptFileError(f"{path}: prompt file for kind {kind!r} not found")
        template = load_prompt_file(path)
        if template.kind != kind:
            raise PromptFileError(f"{path}: declares kind {template.kind!r}, expected {kind!r}")
        templates[kind] = template
    return templates


def build_request(
    template: PromptTemplate, record: CaptionRecord, *, max_tokens: int, temperature: float | None
) -> ChatRequest:
    """System prompt, few-shot examples as earlier turns, then this record's text."""
    messages: list[dict[str, str]] = []
    for example in template.examples:
        source = render_source(example.record, template.max_source_chars)
        messages.append({"role": "user", "content": template.user_template.replace("{source}", source)})
        messages.append({"role": "assistant", "content": example.output})
    source = render_source(record, template.max_source_chars)
    messages.append({"role": "user", "content": template.user_template.replace("{source}", source)})
    return ChatRequest(
        system=template.system, messages=tuple(messages), max_tokens=max_tokens, temperature=temperature
    )


def stable_fraction(*parts: str) -> float:
    """A number in [0, 1) fixed by `parts` alone (SHA-256), independent of process and order."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def human_question(template: PromptTemplate, record_id: str, seed: int) -> str:
    """For `answer`-format kinds: the person's question, picked from the file by seed and record id."""
    index = int(stable_fraction(str(seed), record_id, template.kind) * len(template.questions))
    return template.questions[index]
