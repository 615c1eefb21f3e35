"""The connector's feature standardisation through training: stage 1 fits it on its images' cached features,
stage 2 (full or LoRA) inherits it unchanged, and the saved folders answer with it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import data_override, tiny_recipe

from llama3med.api import Llama3Med
from llama3med.model.connector import FeatureStandardizer
from llama3med.model.feature_cache import FeatureCache, encoder_fingerprint
from llama3med.model.presets import build_preset
from llama3med.train.run import train

STANDARDIZE = "model_args.connector_input_norm=standardize"


@pytest.fixture(scope="module")
def aligned(tmp_path_factory: pytest.TempPathFactory, caption_file: Path, image_folder: Path) -> Path:
    out = tmp_path_factory.mktemp("std") / "align"
    train(tiny_recipe("tiny-align", out, data_override(caption_file, "caption", image_folder), STANDARDIZE))
    return out


def test_stage1_fits_the_statistics_of_its_training_images(aligned: Path, image_folder: Path) -> None:
    saved = load_file(aligned / "model.safetensors")
    assert bool(saved["connector.0.fitted"])
    model, processor = build_preset("tiny", connector_input_norm="standardize")
    cache = FeatureCache(aligned.parent / "features", encoder_fingerprint(model, processor.image_processor))
    shas = [hashlib.sha256((image_folder / f"img{i}.png").read_bytes()).hexdigest() for i in range(12)]
    tokens = torch.stack([cache.load(sha) for sha in shas]).double().flatten(0, 1)  # [12 * g*g, k*C]
    torch.testing.assert_close(saved["connector.0.mean"].double(), tokens.mean(0), rtol=1e-5, atol=1e-6)
    expected_std = tokens.std(0).clamp_min(0.05 * tokens.std(0)[tokens.std(0) > 0].median())
    torch.testing.assert_close(saved["connector.0.std"].double(), expected_std, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_stage2_keeps_the_stage1_statistics(aligned: Path, vqa_file: Path, image_folder: Path,
                                           tmp_path: Path, lora: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = ["lora.r=4", "lora.alpha=8", "learning_rates.llm=1e-3"] if lora else []
    out = tmp_path / "instruct"

    def no_refit(self: FeatureStandardizer, batches: object) -> int:
        raise AssertionError("stage 2 refitted the statistics its stage-1 connector brought")

    monkeypatch.setattr(FeatureStandardizer, "fit", no_refit)  # stage 2's images are stage 1's: a refit would agree
    train(tiny_recipe("tiny-instruct", out, data_override(vqa_file, "vqa", image_folder), STANDARDIZE,
                      f"connector={aligned}", "training.max_steps=2", *extra))
    stage1 = load_file(aligned / "model.safetensors")
    model = Llama3Med.from_pretrained(out).model  # an adapter folder loads onto its base
    standardizer = model.feature_standardizer
    assert standardizer is not None and bool(standardizer.fitted)
    assert torch.equal(standardizer.mean, stage1["connector.0.mean"])
    assert torch.equal(standardizer.std, stage1["connector.0.std"])


def test_stage1_without_images_to_fit_is_a_clear_error(tmp_path: Path) -> None:
    text_only = tmp_path / "text.jsonl"
    text_only.write_text('{"id": "t0", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}\n')
    with pytest.raises(ValueError, match="no images to fit it on"):
        train(tiny_recipe("tiny-align", tmp_path / "align", data_override(text_only, "llava", tmp_path), STANDARDIZE))
