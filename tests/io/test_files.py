"""Atomic writes: the new content whole or the old one, never a half-written file or a leftover temporary."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from llama3med.io.files import atomic_write


def test_text_bytes_and_a_writer_callback_replace_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    atomic_write(path, "naïve\n")
    assert path.read_bytes() == "naïve\n".encode()
    atomic_write(path, b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"
    atomic_write(path, lambda handle: handle.write(b"from a writer"))
    assert path.read_bytes() == b"from a writer"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")

    def half_then_fail(handle: BinaryIO) -> None:
        handle.write(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_failing_rename_removes_the_temporary(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path / "folder", "text")  # os.replace cannot put a file over a folder
    assert os.listdir(tmp_path) == ["folder"]


def test_a_fixed_temporary_left_by_a_killed_run_is_overwritten(tmp_path: Path) -> None:
    path, partial = tmp_path / "a.dcm", tmp_path / "a.dcm.partial"
    partial.write_bytes(b"half a file")
    atomic_write(path, b"whole", temporary=partial)
    assert path.read_bytes() == b"whole" and not partial.exists()
    with pytest.raises(ValueError):
        atomic_write(path, lambda handle: (_ for _ in ()).throw(ValueError("bad dataset")), temporary=partial)
    assert path.read_bytes() == b"whole" and not partial.exists()


def test_sync_flushes_the_temporary_to_disk_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[tuple[int, bool]] = []  # (bytes in the synced file, whether the target existed yet)
    path = tmp_path / "out.txt"
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        synced.append((os.fstat(descriptor).st_size, path.exists()))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write(path, "not synced")
    assert synced == []
    path.unlink()
    atomic_write(path, "synced", sync=True)
    assert synced == [(len("synced"), False)]  # all the data, synced before the rename
    assert path.read_text() == "synced"


def test_the_file_mode_follows_the_umask_like_any_new_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode == plain.stat().st_mode  # not the 0600 of mkstemp


def test_concurrent_writers_of_one_file_never_mix_or_leave_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "shared.json"
    contents = [bytes([65 + n]) * 200_000 for n in range(8)]
    errors: list[BaseException] = []

    def write_many(content: bytes) -> None:
        try:
            for _ in range(20):
                atomic_write(path, content)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=write_many, args=(content,)) for content in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert path.read_bytes() in contents
    assert os.listdir(tmp_path) == ["shared.json"]
