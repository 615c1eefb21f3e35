"""Caption records (`llama3med.instruct.records`): fields, aliases, and errors naming file, line and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llama3med.instruct.records import CaptionRecord, RecordError, parse_record, read_records


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_records_read_mentions_alias_and_context(tmp_path):
    path = write_lines(
        tmp_path / "c.jsonl",
        [
            json.dumps({"id": "a", "image": "a.png", "caption": " CT of the chest. ", "inline_references": ["See Fig 1."]}),
            "",
            json.dumps({"id": "b", "image": "b.png", "caption": "MRI", "mentions": "One.", "context": "History."}),
        ],
    )
    assert read_records(path) == [
        CaptionRecord("a", "a.png", "CT of the chest.", ("See Fig 1.",), None),
        CaptionRecord("b", "b.png", "MRI", ("One.",), "History."),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "a", "image": "a.png"', r"c\.jsonl:2: not valid JSON"),
        ('["not", "an", "object"]', r"c\.jsonl:2: expected a JSON object, got list"),
        ('{"id": "a", "image": "a.png", "caption": ""}', r"c\.jsonl:2 \(record 'a'\): field 'caption' must be a non-empty"),
        ('{"id": "x", "image": "a.png", "caption": "c", "mentions": [1]}', r"'mentions' must be a string or a list"),
        ('{"id": "x", "image": "a.png", "caption": "c", "context": {"h": 1}}', r"'context' must be a string, got dict"),
        ('{"id": "ok", "image": "b.png", "caption": "c"}', r"c\.jsonl:2: duplicate id 'ok' \(first on line 1\)"),
    ],
)
def test_bad_records_name_file_line_and_reason(tmp_path, line, message):
    path = write_lines(tmp_path / "c.jsonl", ['{"id": "ok", "image": "a.png", "caption": "c"}', line])
    with pytest.raises(RecordError, match=message):
        read_records(path)


def test_mentions_and_inline_references_are_exclusive_and_blank_mentions_dropped():
    record = parse_record({"id": " a ", "image": "a.png", "caption": "c", "mentions": ["One.", "  "], "context": " "}, "x:1")
    assert record == CaptionRecord("a", "a.png", "c", ("One.",), None)
    with pytest.raises(RecordError, match=r"x:1 \(record 'a'\): give either 'mentions' or 'inline_references', not both"):
        parse_record({"id": "a", "image": "a.png", "caption": "c", "mentions": "m", "inline_references": "r"}, "x:1")


def test_missing_and_empty_files_are_errors(tmp_path):
    with pytest.raises(RecordError, match=r"none\.jsonl: input file not found"):
        read_records(tmp_path / "none.jsonl")
    with pytest.raises(RecordError, match=r"empty\.jsonl: no records"):
        read_records(write_lines(tmp_path / "empty.jsonl", [""]))
