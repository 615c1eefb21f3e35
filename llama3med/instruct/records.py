"""Input records: one image–caption pair per JSONL line, validated with errors naming file and line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama3med.io.jsonl import read_jsonl

# MedICaT (and PMC-derived sets) call the sentences that cite a figure `inline_references`.
MENTION_FIELDS = ("mentions", "inline_references")


class RecordError(ValueError):
    """A caption record that cannot be used; the message names the file, line and reason."""


@dataclass(frozen=True)
class CaptionRecord:
    """One image with the text the generator may see (never the image itself).

    `mentions` are sentences from the article that cite the figure; `context` is free text such as a
    case report's history and findings.
    """

    id: str
    image: str
    caption: str
    mentions: tuple[str, ...] = ()
    context: str | None = None


def _required_text(obj: dict[str, Any], field: str, where: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"{where}: field {field!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _mentions(obj: dict[str, Any], where: str) -> tuple[str, ...]:
    present = [field for field in MENTION_FIELDS if obj.get(field) is not None]
    if len(present) > 1:
        raise RecordError(f"{where}: give either 'mentions' or 'inline_references', not both")
    if not present:
        return ()
    value = obj[present[0]]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RecordError(f"{where}: field {present[0]!r} must be a string or a list of strings")
    return tuple(item.strip() for item in value if item.strip())


def _context(obj: dict[str, Any], where: str) -> str | None:
    value = obj.get("context")
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"{where}: field 'context' must be a string, got {type(value).__name__}")
    return value.strip() or None


def parse_record(obj: object, where: str) -> CaptionRecord:
    """Validate one decoded JSON value; `where` (e.g. "captions.jsonl:12") prefixes every error."""
    if not isinstance(obj, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    record_id = _required_text(obj, "id", where)
    where = f"{where} (record {record_id!r})"
    return CaptionRecord(
        id=record_id,
        image=_required_text(obj, "image", where),
        caption=_required_text(obj, "caption", where),
        mentions=_mentions(obj, where),
        context=_context(obj, where),
    )


def read_records(path: Path) -> list[CaptionRecord]:
    """Read a caption JSONL file; blank lines are skipped, ids must be unique.

    Fields: `id`, `image`, `caption` (required); `mentions` or `inline_references` (string or list of
    strings) and `context` (string) optional; other fields are ignored.
    """
    if not path.is_file():
        raise RecordError(f"{path}: input file not found")
    records: list[CaptionRecord] = []
    first_line_of: dict[str, int] = {}
    for line_number, obj in read_jsonl(path, RecordError):
        where = f"{path}:{line_number}"
        record = parse_record(obj, where)
        if record.id in first_line_of:
            raise RecordError(f"{where}: duplicate id {record.id!r} (first on line {first_line_of[record.id]})")
        first_line_of[record.id] = line_number
        records.append(record)
    if not records:
        raise RecordError(f"{path}: no records")
    return records
