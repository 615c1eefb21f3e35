"""Loading a model folder for inference (`llama3med.model.loading`): the same weights and processor back, and
a damaged folder as one `ModelFolderError` line. Adapter folders (merged in memory) are tested in
tests/train/test_lora.py, on a real LoRA run's output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llama3med.folders import ModelFolder, ModelFolderError
from llama3med.model.loading import first_line, load_folder, load_model, load_processor
from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.processing import Llama3MedProcessor


def test_a_model_folder_loads_with_its_saved_weights_and_processor(tiny_model_dir: Path) -> None:
    model, processor = load_folder(tiny_model_dir)
    assert isinstance(model, Llama3MedForConditionalGeneration) and isinstance(processor, Llama3MedProcessor)
    saved = load_file(tiny_model_dir / "model.safetensors")
    state = model.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in saved.items())
    assert model.dtype == torch.float32 and load_model(ModelFolder(tiny_model_dir), torch.bfloat16).dtype == torch.bfloat16
    assert processor.tokenizer.get_vocab() == load_processor(ModelFolder(tiny_model_dir)).tokenizer.get_vocab()


def test_damaged_files_are_one_line_naming_the_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, folder)
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ModelFolderError, match=rf"^{folder}: the model cannot be loaded \(.+\); copy the folder again or rebuild it$"):
        load_model(ModelFolder(folder))
    (folder / "tokenizer.json").write_text("{ not json")
    with pytest.raises(ModelFolderError, match=rf"^{folder}: the processor cannot be loaded \("):
        load_processor(ModelFolder(folder))
    with pytest.raises(ModelFolderError, match="does not exist"):
        load_folder(tmp_path / "missing")


def test_first_line_of_an_error() -> None:
    assert first_line(OSError("truncated file\nmore detail")) == "truncated file"
    assert first_line(RuntimeError("")) == "RuntimeError"
