"""Kill-and-resume: a run killed with SIGKILL and resumed ends with the same weights as an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file
from train_helpers import REPO_ROOT, TEST_TRAINING, data_override

from llama3med.train.hf_private import STAGING_DIR
from llama3med.train.recipe import load_recipe
from llama3med.train.run import train
from llama3med.train.trainer import last_complete_checkpoint


def overrides(out: Path, vqa_file: Path, image_folder: Path) -> list[str]:
    return [
        data_override(vqa_file, "vqa", image_folder), f"output_dir={out}", "connector=null",
        *TEST_TRAINING, "training.max_steps=18", "training.save_steps=3",  # 6 steps per epoch: crosses epochs
    ]


def test_sigkill_then_resume_gives_identical_weights(tmp_path: Path, vqa_file: Path, image_folder: Path) -> None:
    train(load_recipe("tiny-instruct", overrides(tmp_path / "reference", vqa_file, image_folder)))

    out = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "llama3med", "train", "tiny-instruct", *overrides(out, vqa_file, image_folder)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (out / "checkpoints" / "checkpoint-6").is_dir():
        assert process.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint-6 within 240 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()
    killed_at = last_complete_checkpoint(out / "checkpoints")
    assert killed_at is not None and int(killed_at.name.split("-")[1]) < 18
    at_kill = load_file(killed_at / "model.safetensors")

    # A save interrupted half-way (what a kill during a save leaves) is never picked up.
    half = out / "checkpoints" / STAGING_DIR / "checkpoint-99"
    half.mkdir(parents=True, exist_ok=True)
    (half / "model.safetensors").write_bytes(b"half-written")
    assert last_complete_checkpoint(out / "checkpoints") == killed_at

    result = train(load_recipe("tiny-instruct", overrides(out, vqa_file, image_folder)), resume=True)
    assert result.global_step == 18
    assert not (out / "checkpoints" / STAGING_DIR).exists()

    expected = load_file(tmp_path / "reference" / "model.safetensors")
    actual = load_file(out / "model.safetensors")
    assert expected.keys() == actual.keys()
    worst = max((expected[k] - actual[k]).abs().max().item() for k in expected)
    assert worst <= 1e-6, f"resumed run differs from the uninterrupted one by {worst}"
    # the weights did move after the kill: the comparison is not between two copies of one checkpoint
    assert max((at_kill[k] - actual[k]).abs().max().item() for k in actual) > 1e-4
