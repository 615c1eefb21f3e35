"""Fixtures for the evaluation tests: small real image files and a tiny benchmark folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image


def write_benchmark(folder: Path, records: list[dict], images: dict[str, tuple[int, int, int]]) -> Path:
    """A benchmark in the shared layout: `test.jsonl` + `images/<name>` PNG files of solid colours."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for name, colour in images.items():
        Image.new("RGB", (40, 24), colour).save(folder / "images" / name)
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return folder


@pytest.fixture
def make_benchmark():
    """`write_benchmark(folder, records, images)`, for tests that build their own benchmark folder."""
    return write_benchmark


@pytest.fixture
def small_benchmark_dir(tmp_path: Path) -> Path:
    """Four questions (2 open, 2 closed) on two images, in the shared JSONL layout."""
    records = [
        {"id": "q1", "image": "red.png", "question": "Which lung?", "answer": "left lung", "answer_type": "OPEN", "question_type": "POS", "image_organ": "CHEST"},
        {"id": "q2", "image": "red.png", "question": "Is it normal?", "answer": "no", "answer_type": "CLOSED", "question_type": "ABN", "image_organ": "CHEST"},
        {"id": "q3", "image": "blue.png", "question": "What organ?", "answer": "liver", "answer_type": "OPEN", "question_type": "ORGAN", "image_organ": "ABD"},
        {"id": "q4", "image": "blue.png", "question": "Is there a mass?", "answer": "Yes", "answer_type": "CLOSED", "question_type": "PRES", "image_organ": "ABD"},
    ]
    return write_benchmark(tmp_path / "vqa-rad", records, {"red.png": (200, 10, 10), "blue.png": (10, 10, 200)})
