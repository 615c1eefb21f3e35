"""Helpers of the training tests: recipe overrides for test data, running the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from llama3med.train.recipe import Recipe, load_recipe

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_override(path: Path, format: str, image_root: Path, **extra: object) -> str:
    entry = {"path": str(path), "format": format, "image_root": str(image_root), "name": format, **extra}
    return "data=" + json.dumps([entry])


TEST_TRAINING = [
    "training.per_device_train_batch_size=4",
    "training.logging_steps=1",
    "training.save_steps=1000",
    "training.dataloader_num_workers=0",
    "max_length=128",
]


def tiny_recipe(name: str, output_dir: Path, data: str, *overrides: str) -> Recipe:
    """A shipped tiny recipe pointed at test data and a test output folder."""
    return load_recipe(name, [data, f"output_dir={output_dir}", f"feature_cache_dir={output_dir.parent / 'features'}", *TEST_TRAINING, *overrides])


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m llama3med ...` in a fresh process (the real CLI, as a user runs it)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    return subprocess.run([sys.executable, "-m", "llama3med", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
