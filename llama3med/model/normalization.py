"""Pixel normalisation per vision-encoder family: the mean/std and resampling filter each encoder was trained with.

An encoder fed another family's statistics sees shifted, wrongly scaled inputs (SigLIP's 0.5/0.5 against
CLIP's 0.48/0.27 makes every input ~2x too wide), so the statistics are chosen from the encoder, in this order:

1. a vision folder's own preprocessing file: `preprocessor_config.json` (Hugging Face) or the `pretrained_cfg`
   of a timm `config.json`;
2. else the family's published values, keyed by the vision config's `model_type` (`FAMILY_NORMALIZATION`).

Every family is padded to a square with its mean colour, never centre-cropped (the whole image reaches the
S2 hierarchy; LLaVA's and the Llama3-Med authors' `pad` aspect mode).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from transformers import PretrainedConfig

RESAMPLING_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class ImageNormalization:
    """Per-channel `mean` and `std` (applied to pixels scaled to [0, 1]), the resize filter, and where they came from."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: str = "bicubic"
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"image mean and std need 3 values each, got {self.mean} and {self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"image std must be positive, got {self.std}")
        if self.resample not in RESAMPLING_FILTERS:
            raise ValueError(f"resample must be one of {sorted(RESAMPLING_FILTERS)}, got {self.resample!r}")


# Published values per family (each family's own image processor or model card).
CLIP = ImageNormalization(
    (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711), "bicubic", "CLIP (OpenAI) published values"
)
SIGLIP = ImageNormalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic", "SigLIP published values")
IMAGENET = ImageNormalization(
    (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic", "ImageNet statistics (DINOv2, timm default)"
)
# EfficientNet-Lite was trained on inputs scaled to [-1, 1].
EFFICIENTNET_LITE = ImageNormalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic", "EfficientNet-Lite [-1, 1] inputs")
# H-optimus-0's model card (Bioptimus): its own statistics of H&E pathology tiles.
H_OPTIMUS_0 = ImageNormalization(
    (0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517), "bicubic", "H-optimus-0 published values"
)

FAMILY_NORMALIZATION: dict[str, ImageNormalization] = {
    "clip_vision_model": CLIP,
    "clip": CLIP,
    "siglip_vision_model": SIGLIP,
    "siglip": SIGLIP,
    "siglip2_vision_model": SIGLIP,
    "siglip2": SIGLIP,
    "dinov2": IMAGENET,
    "dinov2_with_registers": IMAGENET,
    "llama3med_efficientnet_lite": EFFICIENTNET_LITE,
}

PREPROCESSOR_CONFIG = "preprocessor_config.json"


def resample_name(value: Any, where: str) -> str:
    """A resampling filter given as PIL's integer code (Hugging Face files) or a name -> its name."""
    if isinstance(value, str) and value.lower() in RESAMPLING_FILTERS:
        return value.lower()
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            name = Image.Resampling(value).name.lower()
        except ValueError:
            name = ""
        if name in RESAMPLING_FILTERS:
            return name
    raise ValueError(f"{where}: unsupported resampling filter {value!r} (expected one of {sorted(RESAMPLING_FILTERS)})")


def family_normalization(vision_config: PretrainedConfig) -> ImageNormalization:
    """The published normalisation of the encoder family `vision_config` describes.

    A config that carries its own statistics (a timm encoder's `pretrained_cfg`) wins over the family table.
    """
    own = getattr(vision_config, "image_normalization", None)
    if callable(own):
        return own()
    normalization = FAMILY_NORMALIZATION.get(vision_config.model_type)
    if normalization is None:
        raise ValueError(
            f"no published normalisation is known for vision model type {vision_config.model_type!r}"
            f" (known: {', '.join(sorted(FAMILY_NORMALIZATION))}); give the vision folder's {PREPROCESSOR_CONFIG}"
            " or pass image_mean and image_std explicitly"
        )
    return normalization


def folder_normalization(folder: str | Path) -> ImageNormalization | None:
    """The normalisation a Hugging Face vision folder declares in its `preprocessor_config.json` (None without one)."""
    path = Path(folder) / PREPROCESSOR_CONFIG
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if settings.get("do_normalize") is False:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:
        if "image_mean" not in settings or "image_std" not in settings:
            raise ValueError(f"{path}: image_mean and image_std are required when do_normalize is not false")
        mean, std = broadcast3(settings["image_mean"], path), broadcast3(settings["image_std"], path)
    resample = resample_name(settings["resample"], str(path)) if "resample" in settings else "bicubic"
    return ImageNormalization(mean, std, resample, str(path))


def broadcast3(value: Any, where: Path | str) -> tuple[float, float, float]:
    """A per-channel statistic given as one number or three -> three floats."""
    values = [value] if isinstance(value, (int, float)) else list(value)
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ValueError(f"{where}: expected 1 or 3 channel values, got {value!r}")
    return (float(values[0]), float(values[1]), float(values[2]))
