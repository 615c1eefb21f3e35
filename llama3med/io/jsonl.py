"""Reading and writing JSONL files the same way everywhere: every bad line is an error that names the file and
the line; lines are split at newlines only (a JSON string may hold U+2028, which `str.splitlines` splits at)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from llama3med.io.files import atomic_write


def jsonl_line(record: Any) -> str:
    """`record` as one JSONL line, newline included (UTF-8 text, not ASCII escapes)."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Any]) -> None:
    """Replace `path` with one line per record, atomically (`atomic_write`)."""
    atomic_write(path, "".join(jsonl_line(record) for record in records))


def parse_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str, Any]]:
    """(line number, the line as read, its JSON value) for each non-blank line of `path`; a line that is not
    valid JSON gives its `json.JSONDecodeError` as the value, for readers that count bad lines instead of
    stopping at the first. Lines end at "\\n", "\\r\\n" or "\\r" and are returned with their ending."""
    with Path(path).open(encoding="utf-8", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as decode_error:
                value = decode_error
            yield number, line, value


def _records(
    path: str | os.PathLike[str], error: type[Exception], complete_lines_only: bool, hint: str
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(line number, line, object) for each non-blank line; the checks and messages of `read_jsonl`."""
    suffix = f"; {hint}" if hint else ""
    for number, line, value in parse_lines(path):
        if complete_lines_only and not line.endswith("\n"):
            return
        if isinstance(value, json.JSONDecodeError):
            raise error(f"{path}:{number}: not valid JSON ({value.msg} at column {value.colno}){suffix}")
        if not isinstance(value, dict):
            raise error(f"{path}:{number}: expected a JSON object, got {type(value).__name__}{suffix}")
        yield number, line, value


def read_jsonl(
    path: str | os.PathLike[str],
    error: type[Exception] = ValueError,
    *,
    complete_lines_only: bool = False,
    hint: str = "",
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of `path`.

    A line that is not JSON, or not a JSON object, raises `error("{path}:{line}: ...")`, followed by
    `"; {hint}"` when a hint is given (what the reader can do about it). With `complete_lines_only`, a last
    line without its newline (an append cut off by a killed process) is ignored, so that a resumed run redoes
    that record instead of failing on it.
    """
    for number, _, record in _records(path, error, complete_lines_only, hint):
        yield number, record


def sort_jsonl(
    path: str | os.PathLike[str], rank: Callable[[dict[str, Any]], int], error: type[Exception] = ValueError
) -> None:
    """Rewrite `path` with its lines stably sorted by `rank(object)`, each line kept byte for byte (blank
    lines dropped; a last line without its newline gets one). Atomic (`atomic_write`); a file already in order
    is left alone. Bad lines raise as in `read_jsonl`."""
    entries = [(rank(record), line) for _, line, record in _records(path, error, False, "")]
    ranks = [position for position, _ in entries]
    if ranks == sorted(ranks):
        return
    ordered = sorted(entries, key=lambda entry: entry[0])  # stable: equal ranks keep their order
    atomic_write(path, "".join(line if line.endswith("\n") else line + "\n" for _, line in ordered))


def drop_torn_last_line(path: str | os.PathLike[str]) -> int:
    """Cut a last line that has no newline (an append cut off by a killed process) from an append-only file,
    so that a resumed run redoes that record; returns the bytes removed (0 when the file does not exist). The
    cut is synced to the disk before returning."""
    path = Path(path)
    if not path.exists():
        return 0
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        # Read backwards in blocks until the last newline: the torn part is everything after it.
        keep, position, block = 0, size, 65536
        while position > 0:
            start = max(0, position - block)
            handle.seek(start)
            newline = handle.read(position - start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            position = start
        if keep < size:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
    return size - keep
