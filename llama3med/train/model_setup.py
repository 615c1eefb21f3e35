"""The model a recipe trains: a preset or model folder, optionally stage 1's connector loaded by path,
modules frozen per learning rate (0 = frozen; the vision tower always is), LoRA / QLoRA through `peft`."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from transformers.integrations import is_deepspeed_zero3_enabled

from llama3med.folders import check_model_folder
from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.presets import PRESETS, build_preset
from llama3med.model.processing import Llama3MedProcessor
from llama3med.model.weights import WeightLoadingError
from llama3med.train.recipe import Recipe

if TYPE_CHECKING:
    from transformers.integrations import HfDeepSpeedConfig

logger = logging.getLogger(__name__)

# LoRA goes on the LLM's linear layers only; the connector is trained in full (`connector_layers`).
DEFAULT_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
# In a LoRA output folder whose recipe starts from a preset (which has no folder of its own): the base model the
# adapter applies to, named by the adapter's `base_model_name_or_path`.
BASE_MODEL_DIR = "base-model"


@contextlib.contextmanager
def gathered(parameters: Iterable[torch.nn.Parameter], modify: bool = False) -> Iterator[None]:
    """Under DeepSpeed ZeRO-3 parameters are partitioned across ranks: gather them for direct use
    (loading a connector, running the frozen encoder before training); elsewhere a no-op."""
    if not is_deepspeed_zero3_enabled():
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(parameters), modifier_rank=0 if modify else None):
        yield


@contextlib.contextmanager
def without_zero3_init(deepspeed_config: HfDeepSpeedConfig | None) -> Iterator[None]:
    """Build a preset as a plain module even under ZeRO-3: presets load weights with `load_state_dict`, which
    partitioned parameters do not take; DeepSpeed partitions the finished module when training starts.

    `deepspeed_config` is the run's (`TrainingArguments.hf_deepspeed_config`): unregistered inside, registered
    again afterwards. Without it while ZeRO-3 is on, nothing could be restored: `ValueError`."""
    from transformers.integrations import set_hf_deepspeed_config, unset_hf_deepspeed_config

    if deepspeed_config is None:
        if is_deepspeed_zero3_enabled():
            raise ValueError(
                "DeepSpeed ZeRO-3 is on: pass the run's TrainingArguments.hf_deepspeed_config as deepspeed_config"
                " so that a preset is built whole and the configuration is registered again afterwards"
            )
        yield
        return
    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        set_hf_deepspeed_config(deepspeed_config)


def read_connector_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """`connector.*` tensors of a saved model folder (single or sharded safetensors)."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    weights: dict[str, torch.Tensor] = {}
    prefixes: set[str] = set()
    for name in files:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"connector source {folder} has no {name} (is it a saved model folder?)")
        with safe_open(str(path), framework="pt") as handle:
            prefixes.update(k.split(".", 1)[0] for k in handle.keys())
            weights.update({k: handle.get_tensor(k) for k in handle.keys() if k.startswith("connector.")})
    if not weights:
        # Stage 2 must never start from a random connector because stage 1 saved it under another name.
        raise WeightLoadingError(
            f"connector of {folder}", missing=["connector.*"],
            detail=f"its tensors are named {', '.join(f'{p}.*' for p in sorted(prefixes))}",
        )
    return weights


def load_base(
    spec: dict[str, Any], quantization: str | None = None, deepspeed_config: HfDeepSpeedConfig | None = None
) -> tuple[Llama3MedForConditionalGeneration, Llama3MedProcessor]:
    """Model and processor from `{"model": preset | folder, "model_args": {...}, "connector": folder | None,
    "seed": int}`. Under DeepSpeed, `deepspeed_config` is the run's `TrainingArguments.hf_deepspeed_config`:
    a folder loads partitioned (ZeRO-3), a preset is built whole (`without_zero3_init`).

    Parts without pretrained weights (the `small` preset's connector, any layer a folder lacks) are initialised
    from torch's generator seeded with `seed` (default 0), so the same spec always gives the same weights
    (`merge` rebuilds a LoRA run's base from its spec); the caller's generator state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(spec.get("seed", 0)))
        return _load_base(spec, quantization, deepspeed_config)


def _load_base(
    spec: dict[str, Any], quantization: str | None, deepspeed_config: HfDeepSpeedConfig | None
) -> tuple[Llama3MedForConditionalGeneration, Llama3MedProcessor]:
    name, model_args = spec["model"], dict(spec.get("model_args") or {})
    if Path(name).is_dir():
        check_model_folder(Path(name))  # an adapter folder or an incomplete one: say what to do, in one line
        if model_args:  # a folder's config.json fixes its architecture: ignoring them would train another model
            shadow = f" (it shadows the preset {name!r}: move or rename the folder to build the preset)" if name in PRESETS else ""
            raise ValueError(f"model_args {model_args} change a preset's architecture, but {name!r} is a model folder{shadow}")
        if name in PRESETS:
            logger.warning("%r is both a model folder here and a preset: loading the folder", name)
        kwargs: dict[str, Any] = {"dtype": torch.float32}
        if quantization == "4bit":
            kwargs.update(qlora_loading_kwargs())
        model = Llama3MedForConditionalGeneration.from_pretrained(name, **kwargs)
        processor = Llama3MedProcessor.from_pretrained(name)
    elif name in PRESETS:
        if quantization:
            raise ValueError("QLoRA loads 4-bit weights from a model folder: build one first (`llama3med build`)")
        with without_zero3_init(deepspeed_config):
            model, processor = build_preset(name, **model_args)
    else:
        raise FileNotFoundError(f"model {name!r} is neither a model folder nor a preset ({', '.join(PRESETS)})")
    if spec.get("connector"):
        weights = read_connector_weights(spec["connector"])
        with gathered(model.connector.parameters(), modify=True):
            model.load_connector(weights)
    return model, processor


def qlora_loading_kwargs() -> dict[str, Any]:
    """`from_pretrained` arguments for a 4-bit (NF4) LLM; a clear error where no GPU or bitsandbytes is present."""
    if not torch.cuda.is_available():
        raise RuntimeError(
            "QLoRA (quantization: 4bit) needs a CUDA GPU: bitsandbytes' 4-bit kernels do not run on this machine's"
            " CPU. Use plain LoRA here (quantization=null) or run on a GPU machine."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise RuntimeError("QLoRA needs bitsandbytes: pip install 'llama3med[gpu]'") from error
    from accelerate import PartialState
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=["vision_tower", "connector", "lm_head"],
    )
    return {"quantization_config": config, "dtype": torch.bfloat16, "device_map": {"": PartialState().local_process_index}}


def base_spec(recipe: Recipe) -> dict[str, Any]:
    """How to rebuild this recipe's starting model (folder paths made absolute)."""
    model = str(Path(recipe.model).resolve()) if Path(recipe.model).is_dir() else recipe.model
    connector = str(Path(recipe.connector).resolve()) if recipe.connector else None
    return {"model": model, "model_args": recipe.model_args, "connector": connector, "seed": recipe.seed}


def connector_layers(model: Llama3MedForConditionalGeneration) -> list[str]:
    """Names of the connector's layers with state (`connector.0`, `connector.2`; a feature standardisation's
    buffers too): PEFT trains and saves these in full. The layers are wrapped one by one, not the `Sequential`, so
    `model.connector[0]` still works."""
    return [f"connector.{name}" for name, child in model.connector.named_children() if child.state_dict()]


def lora_base_folder(spec: dict[str, Any], output_dir: Path) -> Path:
    """The model folder a LoRA adapter applies to: the recipe's model folder, or for a preset `OUTPUT/base-model`
    (which `save_lora_base` writes)."""
    return Path(spec["model"]) if Path(spec["model"]).is_dir() else (output_dir / BASE_MODEL_DIR).resolve()


def save_lora_base(model: Llama3MedForConditionalGeneration, processor: Llama3MedProcessor, folder: Path) -> None:
    """Save a preset-built base (its random parts drawn from the run's seed, a stage-1 connector loaded) as the
    model folder its LoRA adapter names, so the adapter folder is a standard PEFT folder that loads anywhere."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def prepare_for_stage(
    model: Llama3MedForConditionalGeneration, recipe: Recipe, gradient_checkpointing: bool = False, base_model_path: str | None = None
) -> torch.nn.Module:
    """Freeze per learning rate (0 = frozen) and wrap in LoRA when the recipe asks; returns the model to train.

    The adapter config names `base_model_path` as its base (PEFT's `base_model_name_or_path`). The connector
    travels in the adapter when it is trained or was loaded from stage 1 (the base folder does not have it)."""
    rates = recipe.learning_rates
    model.vision_tower.requires_grad_(False)
    model.connector.requires_grad_(rates["connector"] > 0)
    model.language_model.requires_grad_(rates["llm"] > 0 and not recipe.lora)
    if not recipe.lora:
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if recipe.quantization:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    settings = dict(recipe.lora)
    unknown = set(settings) - {"r", "alpha", "dropout", "target_modules"}
    if unknown:
        raise ValueError(f"lora: unknown key(s) {sorted(unknown)}; valid: r, alpha, dropout, target_modules")
    config = LoraConfig(
        r=int(settings.get("r", 128)),
        lora_alpha=int(settings.get("alpha", 256)),
        lora_dropout=float(settings.get("dropout", 0.05)),
        target_modules=settings.get("target_modules", DEFAULT_LORA_TARGETS),
        modules_to_save=connector_layers(model) if rates["connector"] > 0 or recipe.connector else None,
    )
    if base_model_path is not None:
        model.name_or_path = base_model_path  # what PEFT writes as the adapter's base_model_name_or_path
    adapted = get_peft_model(model, config)
    if not rates["connector"]:
        adapted.base_model.model.connector.requires_grad_(False)  # saved with the adapter, not trained
    return adapted
