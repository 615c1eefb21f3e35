"""The folders llama3med works with: what a folder given as a model is (a model folder with config, weights
and processor, or a LoRA adapter folder over one, with a one-line message for anything else), the cache
folder (`cache_dir`) and the variable naming the data root (`DATA_ROOT_ENV`). Nothing here imports torch or
transformers, so the CLI can check a path before it loads a model, and every layer of the package can find the
cache and the data.

A LoRA adapter folder is a standard PEFT folder: `adapter_config.json`, whose `base_model_name_or_path` is the
base model folder, and the adapter weights (plus, from our training, the processor).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
CACHE_ENV = "LLAMA3MED_CACHE"
# The environment variable naming the data root: the folder holding the data sets (vqa-rad/, slake/, pathvqa/,
# captions-sample/, LLaVA-Med's files). `eval` / `score` read the official benchmarks under it, the shipped
# training recipes their data (`data_root: $LLAMA3MED_DATA_ROOT`).
DATA_ROOT_ENV = "LLAMA3MED_DATA_ROOT"


def cache_dir() -> Path:
    """Where converted pretrained parts and frozen features are kept: `$LLAMA3MED_CACHE`, default
    `~/.cache/llama3med`."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "llama3med"))


def feature_cache_dir() -> Path:
    """The default frozen-feature cache, `<cache_dir()>/features`: training, evaluation and the linear probe share
    it (one folder per encoder fingerprint inside)."""
    return cache_dir() / "features"


class ModelFolderError(ValueError):
    """A path given as a model is not a usable model (or adapter) folder; the message says why and what to do."""


@dataclass(frozen=True)
class ModelFolder:
    """A checked folder: `base` is None for a model folder, the base model folder for a LoRA adapter."""

    path: Path
    base: Path | None = None

    @property
    def is_adapter(self) -> bool:
        return self.base is not None

    @property
    def model_config_path(self) -> Path:
        """The `config.json` describing the model (the base's, for an adapter)."""
        return (self.base or self.path) / CONFIG_FILE


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or `ModelFolderError` saying it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFolderError(f"{path} cannot be read as JSON ({error}); the folder is damaged: copy or rebuild it") from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path} is not a JSON object; the folder is damaged: copy or rebuild it")
    return data


def merge_hint(adapter: Path) -> str:
    return f"run `llama3med merge {adapter} MERGED` where the base model exists and use MERGED"


def adapter_base(adapter: Path) -> Path:
    """The base model folder a LoRA adapter folder names (`base_model_name_or_path`), checked."""
    base_name = read_json(adapter / ADAPTER_CONFIG_FILE).get("base_model_name_or_path")
    if not base_name:
        raise ModelFolderError(
            f"{adapter} is a LoRA adapter that does not name its base model (no base_model_name_or_path in "
            f"{ADAPTER_CONFIG_FILE}): set it to the base model folder"
        )
    base = Path(base_name).expanduser()
    if not base.is_absolute() and not base.is_dir() and (adapter / base).is_dir():
        base = adapter / base  # a path relative to the adapter folder
    try:
        check_model_folder(base)
    except ModelFolderError as error:
        raise ModelFolderError(
            f"{adapter} is a LoRA adapter over the base model {base_name}, which cannot be used here ({error}); "
            f"put the base folder there, point base_model_name_or_path in {adapter / ADAPTER_CONFIG_FILE} at it, "
            f"or {merge_hint(adapter)}"
        ) from None
    return base


def check_model_folder(path: Path) -> None:
    """A plain model folder: a readable `config.json` and weights beside it."""
    if not path.exists():
        raise ModelFolderError(f"{path} does not exist")
    if not path.is_dir():
        raise ModelFolderError(f"{path} is a file, not a model folder")
    if not (path / CONFIG_FILE).is_file():
        if (path / ADAPTER_CONFIG_FILE).is_file():
            raise ModelFolderError(f"{path} is a LoRA adapter folder, not a model folder: {merge_hint(path)}")
        raise ModelFolderError(f"{path} is not a model folder (no {CONFIG_FILE}); build one with `llama3med build` or train one")
    read_json(path / CONFIG_FILE)
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ModelFolderError(
            f"{path} has a {CONFIG_FILE} but no weights ({WEIGHT_FILES[0]}): the folder is incomplete; copy it again or rebuild it"
        )


def resolve_model_folder(path: str | Path, *, adapters: bool = True) -> ModelFolder:
    """Check `path` as a model folder or (with `adapters`) a LoRA adapter folder over a usable base."""
    path = Path(path).expanduser()
    if adapters and path.is_dir() and not (path / CONFIG_FILE).is_file() and (path / ADAPTER_CONFIG_FILE).is_file():
        return ModelFolder(path, adapter_base(path))
    check_model_folder(path)
    return ModelFolder(path)
