"""Training conversations from LLaVA / LLaVA-Med JSON(L), caption JSONL and VQA JSONL, mixed by weight.

Every reader yields `Conversation`s: `[{role, content}]` messages in the chat-template vocabulary
(`system` / `user` / `assistant`), at most one image whose `<image>` tag sits in a user turn, and an id
that names the record (`source:id`). Records that cannot be trained on are skipped and counted with
their ids in a `DataReport`; with `strict=True` the first one raises `BadRecordError`.

Formats (one object per line for JSONL; a JSON list for `.json` LLaVA files):
- `llava`:   `{"id", "image"?, "conversations": [{"from": "human"|"gpt"|"system", "value": str}, ...]}`
- `caption`: `{"id"?, "image", "caption"}` -> the pretrain template: user `<image>`, assistant = caption
- `vqa`:     `{"id", "image", "question", "answer"}` (as in the VQA-RAD, SLAKE and PathVQA folders) -> one user/assistant turn

A source's `template` chooses how records become turns: `conversation` (default: the record's own turns) or
`caption`, the Llama3-Med authors' stage-1 template: the user turn is the `<image>` tag alone and the
assistant turn the caption (for `llava` records, their first assistant reply: LLaVA-Med's alignment records
hold a caption there after an instruction such as "Describe the image concisely", which is dropped).
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama3med.io.image_tag import IMAGE_TOKEN, add_image_tag
from llama3med.io.jsonl import parse_lines

FORMATS = ("llava", "caption", "vqa")
TEMPLATES = ("conversation", "caption")
LLAVA_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


class BadRecordError(ValueError):
    """A record that cannot be trained on (raised in strict mode; counted and skipped otherwise)."""

    def __init__(self, record_id: str, reason: str) -> None:
        super().__init__(f"record {record_id}: {reason}")
        self.record_id = record_id
        self.reason = reason


@dataclass(frozen=True)
class Conversation:
    """One training sample before tokenisation.

    `image` is the absolute image path (None for text-only records); `image_relpath` is the path as
    the data file gives it, relative to the source's image root (kept for the training manifest).
    """

    id: str
    source: str
    messages: tuple[dict[str, str], ...]
    image: Path | None = None
    image_relpath: str | None = None


@dataclass
class DataReport:
    """What happened to every record: read per source; skipped (by reason, with ids and details);
    truncated; dropped as too long. Printed before training (a one-line recap after it) and saved as
    `data_report.json`."""

    strict: bool = False
    read: Counter = field(default_factory=Counter)  # source -> records read
    skipped: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # reason -> ids
    details: dict[str, str] = field(default_factory=dict)  # id -> detail (file, decoder message)
    truncated: list[str] = field(default_factory=list)
    dropped_too_long: list[str] = field(default_factory=list)

    def skip(self, record_id: str, reason: str, detail: str | None = None) -> None:
        """Record a bad record (or raise it in strict mode)."""
        if self.strict:
            raise BadRecordError(record_id, f"{reason} ({detail})" if detail else reason)
        self.skipped[reason].append(record_id)
        if detail:
            self.details[record_id] = detail

    def drop_too_long(self, record_id: str, detail: str) -> None:
        """Record a sample dropped because it does not fit `max_length` (not an error, even when strict)."""
        self.dropped_too_long.append(record_id)
        self.details[record_id] = detail

    @property
    def skipped_ids(self) -> list[str]:
        """Ids of every skipped record."""
        return [record_id for ids in self.skipped.values() for record_id in ids]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "read": dict(self.read),
            "skipped": {reason: list(ids) for reason, ids in self.skipped.items()},
            "truncated": list(self.truncated),
            "dropped_too_long": list(self.dropped_too_long),
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class DataSource:
    """One entry of a recipe's data list.

    Args:
        path: JSON / JSONL file.
        format: `llava`, `caption` or `vqa`.
        image_root: Folder the records' image paths are relative to (default: the data file's folder).
        weight: Passes over this source per epoch: 2.0 repeats every record twice, 0.5 takes a seeded
            half; this is how several sources are mixed.
        max_samples: Use only the first N valid records (for quick runs).
        name: Label used in ids, reports and the training manifest (default: the file name's stem).
        template: `conversation` (the records' own turns) or `caption` (user `<image>` only, assistant = the
            caption: the authors' stage-1 template). `caption` records always use `caption`.
    """

    path: Path
    format: str
    image_root: Path | None = None
    weight: float = 1.0
    max_samples: int | None = None
    name: str | None = None
    template: str = "conversation"

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> DataSource:
        """Build from a recipe's data entry, with clear errors for missing or unknown keys."""
        known = {"path", "format", "image_root", "weight", "max_samples", "name", "template"}
        unknown = set(entry) - known
        if unknown:
            raise ValueError(
                f"data entry {entry}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(known)}"
            )
        if "path" not in entry or "format" not in entry:
            raise ValueError(f"data entry {entry}: `path` and `format` are required")
        if entry["format"] not in FORMATS:
            raise ValueError(
                f"data entry {entry['path']}: format {entry['format']!r} is not one of {FORMATS}"
            )
        template = entry.get("template", "caption" if entry["format"] == "caption" else "conversation")
        if template not in TEMPLATES:
            raise ValueError(f"data entry {entry['path']}: template {template!r} is not one of {TEMPLATES}")
        if entry["format"] == "vqa" and template == "caption":
            raise ValueError(f"data entry {entry['path']}: vqa records have no caption (template: caption)")
        if entry["format"] == "caption" and template != "caption":
            raise ValueError(f"data entry {entry['path']}: caption records always use template: caption")
        weight = float(entry.get("weight", 1.0))
        if weight <= 0:
            raise ValueError(f"data entry {entry['path']}: weight must be > 0, got {weight}")
        return cls(
            path=Path(entry["path"]),
            format=entry["format"],
            image_root=Path(entry["image_root"]) if entry.get("image_root") else None,
            weight=weight,
            max_samples=entry.get("max_samples"),
            name=entry.get("name"),
            template=template,
        )

    @property
    def label(self) -> str:
        return self.name or f"{self.path.parent.name}/{self.path.stem}"

    @property
    def root(self) -> Path:
        return (self.image_root or self.path.parent).resolve()


# Raw records -----------------------------------------------------------------------------------------
def iter_json_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(index, object) for a JSON list file or a JSONL file; undecodable lines yield the error instead."""
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    if path.suffix == ".json":
        with path.open(encoding="utf-8") as handle:
            try:
                records = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not valid JSON ({error})") from error
        if not isinstance(records, list):
            raise ValueError(f"{path}: a .json data file must hold a list of records")
        yield from enumerate(records)
        return
    for number, _, value in parse_lines(path):
        yield number - 1, value


def _text(record: dict, key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRecordError("", f"`{key}` is missing or empty")
    return value.strip()


def llava_messages(record: dict) -> list[dict[str, str]]:
    """LLaVA `conversations` -> chat messages; checks roles (optional system, then user/assistant pairs)."""
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise BadRecordError("", "empty conversation")
    messages = []
    for turn in turns:
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise BadRecordError("", "a turn is not {from, value}")
        role = LLAVA_ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise BadRecordError("", f"wrong role {turn.get('from')!r} (expected human, gpt or system)")
        messages.append({"role": role, "content": turn["value"].strip()})
    return messages


def check_roles(messages: Sequence[dict[str, str]]) -> None:
    """Optional leading system turn, then user/assistant alternating, ending with a non-empty assistant turn."""
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not body:
        raise BadRecordError("", "empty conversation")
    for position, message in enumerate(body):
        expected = "user" if position % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise BadRecordError(
                "", f"wrong roles: turn {position + 1} is {message['role']!r}, expected {expected!r}"
            )
    if body[-1]["role"] != "assistant":
        raise BadRecordError("", "wrong roles: the conversation does not end with an assistant turn")
    if any(m["role"] == "assistant" and not m["content"] for m in body):
        raise BadRecordError("", "empty assistant turn")


def place_image_tag(messages: list[dict[str, str]], has_image: bool) -> list[dict[str, str]]:
    """Exactly one `<image>` tag in a user turn for an image record (added to the first user turn when
    absent, as inference does); none for a text-only record."""
    tags = sum(m["content"].count(IMAGE_TOKEN) for m in messages)
    if any(IMAGE_TOKEN in m["content"] for m in messages if m["role"] != "user"):
        raise BadRecordError("", f"{IMAGE_TOKEN} tag outside a user turn")
    if not has_image:
        if tags:
            raise BadRecordError("", f"{tags} {IMAGE_TOKEN} tag(s) but no image")
        return messages
    if tags > 1:
        raise BadRecordError("", f"{tags} {IMAGE_TOKEN} tags for one image")
    if tags == 0:
        first_user = next(m for m in messages if m["role"] == "user")
        first_user["content"] = add_image_tag(first_user["content"])
    return messages


def caption_messages(caption: str) -> list[dict[str, str]]:
    """The stage-1 (pretrain) template: the user turn is the image alone, the assistant turn the caption."""
    return [{"role": "user", "content": IMAGE_TOKEN}, {"role": "assistant", "content": caption}]


def record_messages(record: dict, format: str, template: str = "conversation") -> list[dict[str, str]]:
    """Messages of one raw record in `format`, with the source's `template`."""
    if format == "llava":
        messages = llava_messages(record)
        if template == "caption":
            reply = next((m["content"] for m in messages if m["role"] == "assistant"), "")
            if not reply or IMAGE_TOKEN in reply:
                raise BadRecordError("", "no caption: the record has no usable assistant turn")
            return caption_messages(reply)
        return messages
    if format == "caption":
        return caption_messages(_text(record, "caption"))
    return [
        {"role": "user", "content": add_image_tag(_text(record, 'question'))},
        {"role": "assistant", "content": _text(record, "answer")},
    ]


def read_source(source: DataSource, report: DataReport) -> list[Conversation]:
    """Valid conversations of one source (before weighting); bad records go to `report`.

    Image files are resolved here but not opened: a missing or undecodable image is found when the
    images are scanned (`llama3med.train.data.dataset`), and counted there.
    """
    conversations: list[Conversation] = []
    for index, record in iter_json_records(source.path):
        if source.max_samples is not None and len(conversations) >= source.max_samples:
            break
        report.read[source.label] += 1
        raw_id = record.get("id", index) if isinstance(record, dict) else index
        record_id = f"{source.label}:{raw_id}"
        try:
            if not isinstance(record, dict):
                raise BadRecordError(record_id, f"not a JSON object ({record})")
            image = record.get("image")
            if image is not None and (not isinstance(image, str) or not image.strip()):
                raise BadRecordError(record_id, "`image` is not a path")
            if image is None and source.format != "llava":
                raise BadRecordError(record_id, "`image` is missing")
            messages = record_messages(record, source.format, source.template)
            check_roles(messages)
            messages = place_image_tag(messages, image is not None)
        except BadRecordError as error:
            report.skip(record_id, error.reason)
            continue
        conversations.append(
            Conversation(
                id=record_id,
                source=source.label,
                messages=tuple(messages),
                image=(source.root / image) if image else None,
                image_relpath=image,
            )
        )
    return conversations


def weighted(conversations: list[Conversation], weight: float, rng: random.Random) -> list[Conversation]:
    """`weight` passes over `conversations`: whole repeats plus a seeded subset for the fraction."""
    whole, fraction = divmod(weight, 1.0)
    out = conversations * int(whole)
    extra = round(fraction * len(conversations))
    if extra:
        chosen = sorted(rng.sample(range(len(conversations)), extra))
        out += [conversations[i] for i in chosen]
    return out


def read_mixture(sources: Sequence[DataSource], report: DataReport, seed: int = 0) -> list[Conversation]:
    """All sources read and mixed by weight, in a deterministic order (the trainer shuffles per epoch)."""
    rng = random.Random(seed)
    mixture: list[Conversation] = []
    for source in sources:
        mixture += weighted(read_source(source, report), source.weight, rng)
    return mixture
