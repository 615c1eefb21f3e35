"""Atomic file writes: a reader (or a run resumed after a kill) sees the old file or the new one, never half."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(
    path: str | os.PathLike[str],
    content: str | bytes | Callable[[BinaryIO], object],
    *,
    sync: bool = False,
    temporary: str | os.PathLike[str] | None = None,
) -> None:
    """Replace `path` with `content`: text (written as UTF-8), bytes, or a callback that writes to the open
    binary handle it is given (e.g. `lambda handle: dataset.save_as(handle)`).

    The content goes to a temporary file in `path`'s folder, which `os.replace` then renames over `path`
    (atomic within one file system, so it must be the same folder). When writing fails, `path` is left as it
    was and the temporary file is removed. The folder must exist.

    sync: flush the data to the disk (`fsync`) before the rename, so that after a power loss `path` holds the
        old or the new content rather than an empty file; costs one disk flush.
    temporary: the temporary file's path, in `path`'s folder. Default: a hidden name unique to this call
        (`.<name>.<random>.tmp`), so that concurrent writers of one file never share it. A fixed name lets a
        rerun overwrite what a killed run left behind.
    """
    path = Path(path)
    temporary = Path(temporary) if temporary is not None else path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(temporary, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
