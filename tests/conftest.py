"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = REPO_ROOT.parent / "shared" / "benchmarks"


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """`../shared/benchmarks` beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_BENCHMARKS.is_dir():
        pytest.skip(f"real benchmark data not found at {SHARED_BENCHMARKS}")
    return SHARED_BENCHMARKS


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `tiny` preset saved once per session as a model folder."""
    from llama3med.model.presets import build_preset

    folder = tmp_path_factory.mktemp("tiny-model")
    model, processor = build_preset("tiny")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


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
