"""What the benchmark scripts share: the data root argument, and the `llama3med` package as of an earlier git
revision for benchmarks that compare the code before a change (`--before REV`). A script in bench/ imports this
as `common` (Python puts the script's folder first on sys.path)."""

from __future__ import annotations

import argparse
import os
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

from llama3med.folders import DATA_ROOT_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]


def add_data_root(parser: argparse.ArgumentParser, holds: str) -> None:
    """`--data-root`, the folder holding `holds`: default `$LLAMA3MED_DATA_ROOT`, required when that is unset."""
    parser.add_argument("--data-root", type=Path, default=os.environ.get(DATA_ROOT_ENV), required=DATA_ROOT_ENV not in os.environ,
                        help=f"Folder holding {holds} (default: ${DATA_ROOT_ENV}).")


def unpack_revision(revision: str, folder: Path) -> Path:
    """The `llama3med` package as of `revision`, unpacked under `folder` (which then goes on PYTHONPATH)."""
    archive = subprocess.run(["git", "archive", revision, "llama3med"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder
