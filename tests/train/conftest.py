"""Synthetic training data (real PNG files, one corrupt file, one missing file) and recipe helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

QUESTIONS = [
    ("Is there a nodule in the right lung?", "Yes"),
    ("What modality is used in this image?", "CT"),
    ("Is this a normal chest x-ray?", "No"),
    ("Which organ is abnormal?", "The liver"),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread here and in the training subprocesses. On a shared 2-core machine, two OpenMP
    threads that get descheduled spin-wait and make a `tiny` step up to 50x slower; results do not depend on
    it, and every comparison (resume, DDP) runs all its sides with this same setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 deterministic noise PNGs of different sizes, plus `corrupt.png` (not an image)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(12):
        size = (40 + 8 * i, 48 + 4 * i)
        Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG")
    return folder


@pytest.fixture(scope="session")
def vqa_file(image_folder: Path) -> Path:
    """24 VQA records over the 12 images (benchmark JSONL format)."""
    path = image_folder.parent / "vqa.jsonl"
    with path.open("w") as handle:
        for i in range(24):
            question, answer = QUESTIONS[i % len(QUESTIONS)]
            handle.write(json.dumps({"id": f"q{i}", "image": f"img{i % 12}.png", "question": question, "answer": answer}) + "\n")
    return path


@pytest.fixture(scope="session")
def caption_file(image_folder: Path) -> Path:
    """12 caption records, one per image."""
    path = image_folder.parent / "captions.jsonl"
    with path.open("w") as handle:
        for i in range(12):
            handle.write(json.dumps({"id": f"c{i}", "image": f"img{i}.png", "caption": f"Axial CT image {i} of the chest."}) + "\n")
    return path
