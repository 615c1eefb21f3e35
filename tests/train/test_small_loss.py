"""The `small` preset (real SmolLM2 + EfficientNet-Lite0 weights) learns VQA-RAD: loss falls >= 30 % in 40 steps."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from train_helpers import data_override

from llama3med.train.recipe import load_recipe
from llama3med.train.run import train


@pytest.mark.slow
def test_small_preset_loss_falls_on_64_vqa_rad_train_samples(benchmarks_dir: Path, tmp_path: Path) -> None:
    try:
        from llama3med.model.pretrained import smollm2_folder

        smollm2_folder()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    rad = benchmarks_dir / "vqa-rad"
    recipe = load_recipe("small-instruct", [
        data_override(rad / "train.jsonl", "vqa", rad / "images", max_samples=64), f"output_dir={tmp_path / 'out'}",
        "connector=null", "training.max_steps=40", "training.per_device_train_batch_size=4", "training.logging_steps=1",
        "training.save_steps=1000", "training.dataloader_num_workers=0",
        # the frozen encoder's features are computed once: 64 samples over 40 steps see each image ~2.5 times
        "feature_cache=true", f"feature_cache_dir={tmp_path / 'features'}",
    ])
    result = train(recipe)
    assert len(result.losses) == 40 and not result.report.skipped
    first, last = statistics.mean(result.losses[:5]), statistics.mean(result.losses[-5:])
    assert last <= 0.7 * first, f"loss fell from {first:.3f} to {last:.3f} (< 30 %)"
