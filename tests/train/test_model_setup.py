"""The model a recipe starts from (`llama3med.train.model_setup`): under DeepSpeed ZeRO-3 a preset is built whole,
with the run's DeepSpeed configuration registered again afterwards (through transformers' public
`set_hf_deepspeed_config` / `unset_hf_deepspeed_config`); `model_args` beside a model folder are refused, and a
folder named like a preset is loaded with a warning."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest
from transformers.integrations import is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

from llama3med.train.model_setup import load_base, without_zero3_init

needs_deepspeed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed (`make test` installs it)"
)
ZERO3 = {"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1}


@pytest.fixture
def zero3_config() -> Iterator[object]:
    """A registered ZeRO-3 configuration, as `TrainingArguments(deepspeed=...)` leaves one; unregistered after."""
    from transformers.integrations import HfDeepSpeedConfig

    config = HfDeepSpeedConfig(ZERO3)  # registers itself
    assert is_deepspeed_zero3_enabled()
    yield config
    unset_hf_deepspeed_config()


@needs_deepspeed
def test_a_preset_is_built_whole_under_zero3_and_the_configuration_comes_back(zero3_config: object) -> None:
    with without_zero3_init(zero3_config):
        assert not is_deepspeed_zero3_enabled()
    assert is_deepspeed_zero3_enabled()
    model, _ = load_base({"model": "tiny"}, deepspeed_config=zero3_config)
    assert all(p.numel() > 0 for p in model.parameters())  # ZeRO-3 partitions would be empty placeholders
    assert is_deepspeed_zero3_enabled()


@needs_deepspeed
def test_zero3_without_its_configuration_is_refused(zero3_config: object) -> None:
    with pytest.raises(ValueError, match="hf_deepspeed_config"):
        load_base({"model": "tiny"})
    assert is_deepspeed_zero3_enabled()


def test_without_deepspeed_nothing_changes() -> None:
    assert not is_deepspeed_zero3_enabled()
    with without_zero3_init(None):
        assert not is_deepspeed_zero3_enabled()
    model, processor = load_base({"model": "tiny"})
    assert model.config.image_token_id == processor.image_token_id


def test_model_args_with_a_model_folder_are_refused(tiny_model_dir, tmp_path, monkeypatch, caplog) -> None:
    # a folder's config.json fixes the architecture: scales given beside it would be silently ignored
    with pytest.raises(ValueError, match=r"model_args \{'scales': \[32\]\} change a preset's architecture"):
        load_base({"model": str(tiny_model_dir), "model_args": {"scales": [32]}})
    # a folder named like a preset in the working directory wins over the preset, and says so
    (tmp_path / "tiny").symlink_to(tiny_model_dir)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="it shadows the preset 'tiny'"):
        load_base({"model": "tiny", "model_args": {"scales": [32]}})
    model, _ = load_base({"model": "tiny"})
    assert "'tiny' is both a model folder here and a preset" in caplog.text
    assert model.config.to_dict()["scales"] == load_base({"model": str(tiny_model_dir)})[0].config.to_dict()["scales"]
