"""The one JSONL reader: line numbers, errors naming file and line, torn last lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama3med.io.jsonl import drop_torn_last_line, read_jsonl


class CustomError(ValueError):
    pass


def test_objects_with_their_line_numbers_blank_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 1}\n\n  \n{"id": 2}\r\n')
    assert list(read_jsonl(path)) == [(1, {"id": 1}), (4, {"id": 2})]


@pytest.mark.parametrize(
    ("line", "message"),
    [("{not json", r"a\.jsonl:2: not valid JSON \(Expecting property name enclosed in double quotes at column 2\)"),
     ("[1, 2]", r"a\.jsonl:2: expected a JSON object, got list")],
)
def test_a_bad_line_raises_the_callers_error_naming_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 1}\n' + line + "\n")
    with pytest.raises(CustomError, match=message):
        list(read_jsonl(path, CustomError))


def test_a_torn_last_line_is_ignored_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 1}\n{"id": 2, "text": "cut sh')
    assert list(read_jsonl(path, complete_lines_only=True)) == [(1, {"id": 1})]
    with pytest.raises(ValueError, match=r"a\.jsonl:2: not valid JSON"):
        list(read_jsonl(path))


def test_dropping_a_torn_last_line_cuts_it_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": 2, "te')
    assert drop_torn_last_line(path) == b'{"id": 1}\n'
    assert path.read_bytes() == b'{"id": 1}\n'
    assert drop_torn_last_line(path) == b'{"id": 1}\n'  # a complete file is left as it is
