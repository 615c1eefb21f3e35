"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
