"""timm vision transformers (H-optimus-0 and other timm-format folders) as Llama3-Med encoders.

A timm-format folder holds `config.json` with `architecture` (a timm model name), `model_args` (keyword
arguments of `timm.create_model`), optionally `num_classes` / `global_pool` and a `pretrained_cfg` with the
model's `mean`, `std` and `interpolation`; and the weights as `model.safetensors` or `pytorch_model.bin`.
H-optimus-0 (Bioptimus) is such a folder: a ViT-g/14 (`vit_giant_patch14_reg4_dinov2`: 1 class token +
4 register tokens, SwiGLU-packed MLP, SiLU, no position embedding on the prefix tokens, layer scale 1e-5),
1536 wide. The Llama3-Med authors take its final normalised layer (`forward_features`) and drop the prefix
tokens; `TimmViTTower` in `llama3med.model.vision_tower` does the same.

timm is an optional dependency (`pip install 'llama3med[pathology]'`, which also brings torchvision): this
module's config and folder reading work without it; building the encoder needs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig

from llama3med.model.normalization import H_OPTIMUS_0, IMAGENET, ImageNormalization, broadcast3, resample_name

PATHOLOGY_EXTRA = "pip install 'llama3med[pathology]'"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Arguments whose values name classes: JSON can only hold their names, timm wants the classes.
LAYER_ARGUMENTS = ("mlp_layer", "norm_layer", "embed_layer", "block_fn")

H_OPTIMUS_0_ARCHITECTURE = "vit_giant_patch14_reg4_dinov2"
# H-optimus-0's model card: created with init_values=1e-5 and a fixed 224 px input.
H_OPTIMUS_0_MODEL_ARGS = {"img_size": 224, "init_values": 1e-5, "dynamic_img_size": False, "num_classes": 0}


class TimmUnavailableError(ImportError):
    """timm (or the torchvision it imports) cannot be imported."""


def import_timm() -> Any:
    """The `timm` module, or an error that names the extra to install."""
    try:
        import timm
    except ImportError as error:
        raise TimmUnavailableError(
            f"timm encoders (H-optimus-0 and other timm-format folders) need timm: {PATHOLOGY_EXTRA} ({error})"
        ) from error
    except RuntimeError as error:  # a torchvision built for another torch fails while registering its ops
        raise TimmUnavailableError(
            f"timm is installed but cannot be imported because its torchvision does not match this torch ({error});"
            f" install a torchvision built for torch {torch.__version__}, e.g. {PATHOLOGY_EXTRA}"
        ) from error
    return timm


class TimmVisionConfig(PretrainedConfig):
    """A timm vision transformer: `architecture` + `model_args` for `timm.create_model`, the geometry the
    Llama3-Med config needs (image size, patch size, width, prefix tokens) and the model's normalisation.

    The geometry is read from the built model by `timm_config_from_folder`, so it always agrees with timm.
    """

    model_type = "llama3med_timm_vision"

    def __init__(
        self,
        architecture: str = H_OPTIMUS_0_ARCHITECTURE,
        model_args: dict[str, Any] | None = None,
        image_size: int = 224,
        patch_size: int = 14,
        hidden_size: int = 1536,
        num_prefix_tokens: int = 5,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        interpolation: str = "bicubic",
        normalization_source: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.architecture = architecture
        self.model_args = dict(model_args if model_args is not None else H_OPTIMUS_0_MODEL_ARGS)
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.hidden_size = int(hidden_size)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.image_mean = list(image_mean) if image_mean is not None else None
        self.image_std = list(image_std) if image_std is not None else None
        self.interpolation = interpolation
        self.normalization_source = normalization_source
        super().__init__(**kwargs)

    def image_normalization(self) -> ImageNormalization:
        """The model's own statistics (its `pretrained_cfg`), else timm's ImageNet default."""
        if self.image_mean is None or self.image_std is None:
            return IMAGENET
        return ImageNormalization(
            broadcast3(self.image_mean, "timm pretrained_cfg"),
            broadcast3(self.image_std, "timm pretrained_cfg"),
            resample_name(self.interpolation, "timm pretrained_cfg"),
            self.normalization_source or f"timm pretrained_cfg of {self.architecture}",
        )


def h_optimus_0_config() -> TimmVisionConfig:
    """H-optimus-0's architecture and statistics (no weights: give its folder as `vision_path` for those)."""
    return TimmVisionConfig(
        architecture=H_OPTIMUS_0_ARCHITECTURE,
        model_args=dict(H_OPTIMUS_0_MODEL_ARGS),
        image_size=224,
        patch_size=14,
        hidden_size=1536,
        num_prefix_tokens=5,
        image_mean=list(H_OPTIMUS_0.mean),
        image_std=list(H_OPTIMUS_0.std),
        interpolation=H_OPTIMUS_0.resample,
        normalization_source=H_OPTIMUS_0.source,
    )


def resolve_layer_arguments(timm: Any, model_args: dict[str, Any]) -> dict[str, Any]:
    """`model_args` with class names (`"SwiGLUPacked"`) replaced by timm's classes; other values unchanged.
    (`act_layer` names are resolved by timm itself.)"""
    resolved = dict(model_args)
    for key in LAYER_ARGUMENTS:
        name = resolved.get(key)
        if isinstance(name, str):
            layer = getattr(timm.layers, name.rsplit(".", 1)[-1], None)
            if layer is None:
                raise ValueError(f"timm model_args: {key}={name!r} is not a class in timm.layers")
            resolved[key] = layer
    return resolved


def create_timm_encoder(config: TimmVisionConfig) -> nn.Module:
    """The (randomly initialised) timm model `config` describes; its head is removed (features only)."""
    timm = import_timm()
    model_args = resolve_layer_arguments(timm, config.model_args)
    model_args.setdefault("num_classes", 0)
    return timm.create_model(config.architecture, pretrained=False, **model_args)


def is_timm_folder(folder: str | Path) -> bool:
    """Whether `folder` is a timm-format model folder (`config.json` with `architecture` and no `model_type`)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return False
    settings = json.loads(path.read_text(encoding="utf-8"))
    return isinstance(settings.get("architecture"), str) and "model_type" not in settings


def timm_config_from_folder(folder: str | Path) -> TimmVisionConfig:
    """The `TimmVisionConfig` of a timm-format folder; geometry read from the model timm builds (on the meta
    device, so no memory is used), statistics from the folder's `pretrained_cfg`."""
    folder = Path(folder)
    settings = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    model_args = dict(settings.get("model_args") or {})
    for key in ("num_classes", "global_pool"):
        if key in settings and key not in model_args:
            model_args[key] = settings[key]
    pretrained = settings.get("pretrained_cfg") or {}
    config = TimmVisionConfig(
        architecture=settings["architecture"],
        model_args=model_args,
        image_mean=pretrained.get("mean"),
        image_std=pretrained.get("std"),
        interpolation=pretrained.get("interpolation", "bicubic"),
        normalization_source=f"pretrained_cfg in {folder / 'config.json'}" if "mean" in pretrained else None,
    )
    with torch.device("meta"):
        encoder = create_timm_encoder(config)
    config.image_size, config.patch_size = timm_geometry(encoder)
    config.hidden_size = int(encoder.num_features)
    config.num_prefix_tokens = int(encoder.num_prefix_tokens)
    return config


def timm_geometry(encoder: nn.Module) -> tuple[int, int]:
    """(image size, patch size) of a timm ViT; square images and patches only (S2 tiles are square)."""
    embed = encoder.patch_embed
    image, patch = tuple(embed.img_size), tuple(embed.patch_size)
    if image[0] != image[1] or patch[0] != patch[1]:
        raise ValueError(f"timm encoder has a non-square input {image} or patch {patch}; S2 needs square tiles")
    return int(image[0]), int(patch[0])


def read_timm_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a timm-format folder (`model.safetensors`, else `pytorch_model.bin`)."""
    folder = Path(folder)
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"timm folder {folder} has no weights ({' or '.join(WEIGHT_FILES)})")
