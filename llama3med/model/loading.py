"""Loading a model folder, or a LoRA adapter folder over one, for inference: what `Llama3Med.from_pretrained`,
every command that takes `--model`, and `llama3med merge` use.

An adapter folder's adapters are merged into its base in memory (`merge_and_unload`), so the loaded model is
the plain model `llama3med merge` would write and runs at the plain model's speed. Anything wrong with a folder
(missing, incomplete or damaged files, an adapter whose base is not there) is a `ModelFolderError` in one line.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError

from llama3med.folders import ModelFolder, ModelFolderError, resolve_model_folder
from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.processing import Llama3MedProcessor

# What a damaged or mismatched folder raises while loading: unreadable or truncated files (OSError, safetensors'
# own error), bad JSON or shapes (ValueError, RuntimeError from load_state_dict).
LOAD_ERRORS = (OSError, ValueError, RuntimeError, SafetensorError)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_model(folder: ModelFolder, dtype: torch.dtype = torch.float32) -> Llama3MedForConditionalGeneration:
    """The model of a checked folder; an adapter folder's adapters merged into its base."""
    source = folder.base or folder.path
    try:
        model = Llama3MedForConditionalGeneration.from_pretrained(source, dtype=dtype)
    except LOAD_ERRORS as error:
        raise ModelFolderError(f"{source}: the model cannot be loaded ({first_line(error)}); copy the folder again or rebuild it") from error
    if not folder.is_adapter:
        return model
    from peft import PeftModel

    try:
        adapted = PeftModel.from_pretrained(model, str(folder.path))
    except LOAD_ERRORS as error:
        raise ModelFolderError(f"{folder.path}: the LoRA adapter cannot be loaded onto {source} ({first_line(error)})") from error
    return adapted.merge_and_unload()


def load_processor(folder: ModelFolder) -> Llama3MedProcessor:
    """The processor saved with the folder (an adapter folder's own, else its base's)."""
    source = folder.path if (folder.path / "tokenizer_config.json").is_file() else (folder.base or folder.path)
    try:
        return Llama3MedProcessor.from_pretrained(source)
    except LOAD_ERRORS as error:
        raise ModelFolderError(f"{source}: the processor cannot be loaded ({first_line(error)}); copy the folder again or rebuild it") from error


def load_folder(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[Llama3MedForConditionalGeneration, Llama3MedProcessor]:
    """Model and processor of a model folder or a LoRA adapter folder (see the module docstring)."""
    folder = resolve_model_folder(path)
    return load_model(folder, dtype), load_processor(folder)
