"""What `llama3med train` prints into a log: the data summary once before training and a one-line recap after it,
progress lines while it trains, every skipped id in full, and no transformers notice about the special tokens we
set on purpose."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from train_helpers import TEST_TRAINING, data_override
from typer.testing import CliRunner

from llama3med.cli.main import app

LONG_ID = "record-with-a-very-long-identifier-" + "x" * 120  # longer than any terminal line


def test_train_logs_progress_lines_full_ids_and_no_special_token_notice(
    tmp_path: Path, vqa_file: Path, image_folder: Path, caplog, monkeypatch
) -> None:
    data = tmp_path / "vqa.jsonl"
    missing = {"id": LONG_ID, "image": "not-there.png", "question": "Is there a nodule?", "answer": "Yes"}
    data.write_text(vqa_file.read_text() + json.dumps(missing) + "\n")
    monkeypatch.setenv("LLAMA3MED_PROGRESS_SECONDS", "0.05")
    monkeypatch.setattr(logging.getLogger("transformers"), "propagate", True)  # so that caplog sees its warnings
    out = tmp_path / "out"
    args = ["train", "tiny-instruct", data_override(data, "vqa", image_folder), f"output_dir={out}", "connector=null",
            f"feature_cache_dir={tmp_path / 'features'}", *TEST_TRAINING, "--threads", "1"]
    with caplog.at_level(logging.WARNING):
        result = CliRunner(env={"COLUMNS": "60"}).invoke(app, args)
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1
    lines = result.output.splitlines()
    assert any(line.startswith("training: 0/6 steps") for line in lines)
    assert any(line.startswith("training: 6/6 steps") and "loss" in line and line.endswith("done") for line in lines)
    assert any(LONG_ID in line for line in lines)  # on one line, whole, in a 60-column log
    assert result.output.count("data summary") == 1
    recap = [line for line in lines if line.startswith("data: ")]
    assert len(recap) == 1 and recap[0].startswith("data: 25 records read, 1 skipped, 0 truncated, 0 dropped as too long")
    assert "PAD/BOS/EOS" not in caplog.text + result.output
