"""Append-only, crash-safe JSONL outputs keyed by (record id, generator, kind).

Every result is one JSON line written with a single `write` of the whole line, then flushed to disk
(`fsync`) before the next request's result is handled. A crash (SIGKILL, power loss) can therefore only
leave a torn *last* line, which is cut off when the store is opened again; every complete line is a
finished result. On resume the keys already in `conversations.jsonl` or `rejects.jsonl` are skipped, so
a rerun finishes the job with no duplicates and nothing missing. Requests that failed after every retry
go to `failures.jsonl`, which is a log only: their keys are tried again on the next run.

A lock file stops two runs from writing to one folder at once.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama3med.io.jsonl import drop_torn_last_line, jsonl_line
from llama3med.io.jsonl import read_jsonl as read_jsonl_lines

CONVERSATIONS_FILE = "conversations.jsonl"
REJECTS_FILE = "rejects.jsonl"
FAILURES_FILE = "failures.jsonl"
LOCK_FILE = ".generate.lock"


class StoreError(RuntimeError):
    """The output folder cannot be used (corrupt line, locked by another run)."""


@dataclass(frozen=True, order=True)
class ResultKey:
    """What is generated once: one kind of conversation for one record by one generator."""

    record_id: str
    generator: str
    kind: str

    @classmethod
    def of(cls, entry: dict[str, Any]) -> ResultKey:
        """The key stored in an output line."""
        return cls(entry["record_id"], entry["generator"], entry["kind"])


class JsonlAppender:
    """One append-only JSONL file; `append` returns once the line is on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.repaired_bytes = drop_torn_last_line(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, obj: dict[str, Any]) -> None:
        """Write `obj` as one line with a single write, then fsync."""
        data = jsonl_line(obj).encode("utf-8")
        written = os.write(self._fd, data)
        # A regular file takes the whole buffer in one write; a short write (disk full) is finished here,
        # and a crash in between leaves a torn tail that the next open cuts off.
        while written < len(data):
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file descriptor."""
        os.close(self._fd)


@dataclass
class StoreContents:
    """What an output folder already holds."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> set[ResultKey]:
        """Keys with a final result (accepted or rejected)."""
        return {ResultKey.of(e) for e in self.accepted} | {ResultKey.of(e) for e in self.rejected}


def load_contents(out_dir: Path) -> StoreContents:
    """Read the three output files of a folder (torn tails are skipped here, not repaired)."""
    contents = StoreContents()
    for name, bucket in (
        (CONVERSATIONS_FILE, contents.accepted),
        (REJECTS_FILE, contents.rejected),
        (FAILURES_FILE, contents.failures),
    ):
        path = out_dir / name
        for entry in read_jsonl(path):
            for key in ("record_id", "generator", "kind"):
                if not isinstance(entry.get(key), str):
                    raise StoreError(f"{path}: a line lacks the string field {key!r}")
            bucket.append(entry)
    return contents


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSONL file; a torn last line (no newline) is skipped, any other bad line is an
    error naming file and line."""
    if not path.exists():
        return
    for _, obj in read_jsonl_lines(path, StoreError, complete_lines_only=True):
        yield obj


class OutputStore:
    """The writable output folder of one `generate` run (holds the folder's lock while open)."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        self._lock = open(out_dir / LOCK_FILE, "a+")  # held open for the store's lifetime
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreError(f"{out_dir}: another `instruct generate` run is writing to this folder") from None
        self.accepted = JsonlAppender(out_dir / CONVERSATIONS_FILE)
        self.rejected = JsonlAppender(out_dir / REJECTS_FILE)
        self.failures = JsonlAppender(out_dir / FAILURES_FILE)
        self.contents = load_contents(out_dir)
        duplicates = len(self.contents.accepted) + len(self.contents.rejected) - len(self.contents.done)
        if duplicates:
            raise StoreError(f"{out_dir}: {duplicates} result key(s) appear more than once; the folder was edited")

    @property
    def repaired_bytes(self) -> int:
        """Bytes of torn last lines cut off when the folder was opened."""
        return self.accepted.repaired_bytes + self.rejected.repaired_bytes + self.failures.repaired_bytes

    def close(self) -> None:
        """Close the files and release the lock."""
        for appender in (self.accepted, self.rejected, self.failures):
            appender.close()
        fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
        self._lock.close()
