"""The one JSONL reader and writer: line numbers, errors naming file and line, torn last lines, reordering."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llama3med.io.jsonl import (
    drop_torn_last_line,
    jsonl_line,
    parse_lines,
    read_jsonl,
    sort_jsonl,
    write_jsonl,
)


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
    assert drop_torn_last_line(path) == 13
    assert path.read_bytes() == b'{"id": 1}\n'
    assert drop_torn_last_line(path) == 0  # a complete file is left as it is
    path.write_bytes(b'{"never finished"')
    assert drop_torn_last_line(path) == 17 and path.read_bytes() == b""
    assert drop_torn_last_line(tmp_path / "missing.jsonl") == 0 and not (tmp_path / "missing.jsonl").exists()


def test_a_torn_line_longer_than_one_read_block_is_cut_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    complete = b'{"id": 1}\n' * 3
    path.write_bytes(complete + b'{"text": "' + b"x" * 200_000)  # the backwards search crosses several blocks
    assert drop_torn_last_line(path) == 200_010 and path.read_bytes() == complete


def test_a_hint_follows_every_error_message(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 1}\n[1]\n')
    with pytest.raises(CustomError, match=r"a\.jsonl:2: expected a JSON object, got list; remove the file$"):
        list(read_jsonl(path, CustomError, hint="remove the file"))


def test_lines_end_at_newlines_only_not_at_unicode_line_separators(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    record = {"answer": "left\u2028right\x85end\x1c", "id": "é"}
    write_jsonl(path, [record, {"id": 2}])
    assert "\u2028" in path.read_text(encoding="utf-8")  # written as UTF-8, not escaped
    assert list(read_jsonl(path)) == [(1, record), (2, {"id": 2})]


def test_the_lenient_parser_gives_bad_lines_as_errors_with_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 1}\n\n[2]\n{bad\n')
    parsed = list(parse_lines(path))
    assert [(number, value) for number, _, value in parsed[:2]] == [(1, {"id": 1}), (3, [2])]
    number, line, error = parsed[2]
    assert (number, line) == (4, "{bad\n") and isinstance(error, json.JSONDecodeError)


def test_jsonl_line_is_one_line_of_utf8_json() -> None:
    assert jsonl_line({"a": "ü", "b": [1, None]}) == '{"a": "ü", "b": [1, null]}\n'


def test_sorting_keeps_each_line_byte_for_byte_and_equal_ranks_in_order(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": 3}\n{"id":1,  "x": "\xc3\xa9"}\r\n\n{"id": 9, "n": 1}\n{"id": 2}\n{"id": 9, "n": 2}')
    order = {1: 0, 2: 1, 3: 2}
    sort_jsonl(path, lambda record: order.get(record["id"], len(order)))
    assert path.read_bytes() == (
        b'{"id":1,  "x": "\xc3\xa9"}\r\n{"id": 2}\n{"id": 3}\n{"id": 9, "n": 1}\n{"id": 9, "n": 2}\n'
    )
    assert os.listdir(tmp_path) == ["a.jsonl"]


def test_a_file_already_in_order_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2}')
    before = path.stat()
    sort_jsonl(path, lambda record: record["id"])
    assert path.read_text() == '{"id": 1}\n\n{"id": 2}' and path.stat().st_ino == before.st_ino


def test_sorting_a_file_with_a_bad_line_raises_and_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 2}\n{"id": 1\n')
    with pytest.raises(CustomError, match=r"a\.jsonl:2: not valid JSON"):
        sort_jsonl(path, lambda record: record["id"], CustomError)
    assert path.read_text() == '{"id": 2}\n{"id": 1\n'
