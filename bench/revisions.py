"""The `llama3med` package as of an earlier git revision, for benchmarks that compare the code before a change
(`--before REV`): unpacked with `git archive` into a folder that the child processes put first on PYTHONPATH."""

from __future__ import annotations

import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def unpack_revision(revision: str, folder: Path) -> Path:
    """The `llama3med` package as of `revision`, unpacked under `folder` (which then goes on PYTHONPATH)."""
    archive = subprocess.run(["git", "archive", revision, "llama3med"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder
