"""Reading JSONL files the same way everywhere: every bad line is an error that names the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def drop_torn_last_line(path: Path) -> bytes:
    """The complete lines of an append-only file, as bytes. A last line without its newline (an append cut off
    by a killed process) is also cut from the file itself, so that a resumed run redoes that record."""
    data = Path(path).read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with Path(path).open("r+b") as handle:
            handle.truncate(keep)
    return data[:keep]


def read_jsonl(
    path: Path, error: type[Exception] = ValueError, *, complete_lines_only: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of `path`.

    A line that is not JSON, or not a JSON object, raises `error("{path}:{line}: ...")`. With
    `complete_lines_only`, a last line without its newline (an append cut off by a killed process) is ignored,
    so that a resumed run redoes that record instead of failing on it.
    """
    with Path(path).open(encoding="utf-8", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if complete_lines_only and not line.endswith("\n"):
                return
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as decode_error:
                raise error(f"{path}:{number}: not valid JSON ({decode_error.msg} at column {decode_error.colno})") from None
            if not isinstance(record, dict):
                raise error(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield number, record
