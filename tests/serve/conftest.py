"""Fixtures for the serving tests: a real `llama3med serve` process (the tiny model loaded once and the test
images are the root conftest's `tiny_api` and `images`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import API_KEY, RunningServer, free_port, stop_process, wait_for_http


@pytest.fixture(scope="session")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`python -m llama3med serve` on 127.0.0.1 (a free port), with an API key, as a separate process."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [
        sys.executable, "-m", "llama3med", "serve",
        "--model", str(tiny_model_dir), "--port", str(port), "--api-key", API_KEY,
        "--model-name", "llama3-med-tiny", "--log-level", "warning",
    ]  # fmt: skip
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    running = RunningServer(f"http://127.0.0.1:{port}", process, "llama3-med-tiny", log)
    wait_for_http(f"{running.base_url}/health", process, log)
    yield running
    stop_process(process)
