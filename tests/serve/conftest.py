"""Fixtures for the serving tests: the tiny model loaded once, test images, a real `llama3med serve` process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_helpers import API_KEY, RunningServer, free_port, stop_process, wait_for_http


@pytest.fixture(scope="session")
def tiny_api(tiny_model_dir: Path):
    """The Python API on the same folder the servers load: the reference for every equality check."""
    from llama3med.api import Llama3Med

    return Llama3Med.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small RGB test images (different sizes and content) saved as PNG files."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    paths = {}
    for name, (height, width) in {"scan": (96, 80), "slide": (64, 112)}.items():
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        paths[name] = folder / f"{name}.png"
        Image.fromarray(pixels).save(paths[name])
    return paths


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
