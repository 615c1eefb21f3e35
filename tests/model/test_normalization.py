"""Per-encoder normalisation: our image processor gives the pixels each family's own image processor gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    BitImageProcessorPil,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    CLIPVisionModel,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from llama3med.model.efficientnet_lite import EfficientNetLiteConfig
from llama3med.model.normalization import family_normalization, folder_normalization
from llama3med.model.presets import build_preset
from llama3med.model.processing import Llama3MedImageProcessor
from llama3med.model.timm_vision import h_optimus_0_config

SIZE = 64


def square_image(side: int = 90, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))


def ours(vision_config, image: Image.Image, size: int = SIZE) -> np.ndarray:
    processor = Llama3MedImageProcessor.for_encoder(size, family_normalization(vision_config))
    return processor([image])["pixel_values"][0].numpy()  # [3, S, S]


def theirs(hf_processor, image: Image.Image) -> np.ndarray:
    return hf_processor(image, return_tensors="np")["pixel_values"][0]


def test_clip_family_equals_clip_image_processor() -> None:
    image = square_image()
    reference = CLIPImageProcessorPil(size={"height": SIZE, "width": SIZE}, do_center_crop=False)
    np.testing.assert_allclose(ours(CLIPVisionConfig(), image), theirs(reference, image), atol=1e-5)


def test_siglip_family_equals_siglip_image_processor_and_not_clip() -> None:
    image = square_image(seed=1)
    reference = theirs(SiglipImageProcessorPil(size={"height": SIZE, "width": SIZE}), image)
    np.testing.assert_allclose(ours(SiglipVisionConfig(), image), reference, atol=1e-5)
    # What the SigLIP option computed before: CLIP's statistics, visibly off.
    clip_stats = Llama3MedImageProcessor(SIZE)([image])["pixel_values"][0].numpy()
    assert np.abs(clip_stats - reference).max() > 0.1


@pytest.mark.parametrize("model_type", ["dinov2", "dinov2_with_registers"])
def test_dinov2_family_equals_bit_image_processor_with_imagenet_statistics(model_type: str) -> None:
    from transformers import AutoConfig

    image = square_image(seed=2)
    reference = BitImageProcessorPil(
        size={"height": SIZE, "width": SIZE}, do_center_crop=False,
        image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD,
    )
    np.testing.assert_allclose(ours(AutoConfig.for_model(model_type), image), theirs(reference, image), atol=1e-5)


def test_h_optimus_0_statistics_as_its_model_card_applies_them() -> None:
    # H-optimus-0's card: ToTensor() then Normalize(mean, std) on a 224 px tile (no resize at 224).
    image = square_image(224, seed=3)
    mean = np.array([0.707223, 0.578729, 0.703617], np.float32)[:, None, None]
    std = np.array([0.211883, 0.230117, 0.177517], np.float32)[:, None, None]
    reference = (np.asarray(image, np.float32).transpose(2, 0, 1) / 255.0 - mean) / std
    np.testing.assert_allclose(ours(h_optimus_0_config(), image, size=224), reference, atol=1e-5)


def test_efficientnet_lite_keeps_minus_one_to_one_inputs() -> None:
    normalization = family_normalization(EfficientNetLiteConfig())
    assert normalization.mean == (0.5, 0.5, 0.5) and normalization.std == (0.5, 0.5, 0.5)


def test_padding_uses_the_mean_colour_so_it_normalises_to_about_zero() -> None:
    wide = Image.fromarray(np.full((30, 90, 3), 255, np.uint8))  # white, 3:1
    pixels = ours(SiglipVisionConfig(), wide)  # [3, 64, 64]
    assert np.abs(pixels[:, :4, :]).max() < 0.01  # top rows: padding, mean colour -> ~0
    assert np.allclose(pixels[:, SIZE // 2, SIZE // 2], 1.0)  # centre: white -> (1 - 0.5) / 0.5


def test_unknown_family_is_an_error_naming_the_way_out() -> None:
    from transformers import AutoConfig

    with pytest.raises(ValueError, match="preprocessor_config.json"):
        family_normalization(AutoConfig.for_model("vit"))


def write_clip_vision_folder(folder: Path, mean: tuple[float, ...], resample: int) -> None:
    """A tiny 224 px / patch 14 CLIP vision folder with its own preprocessor_config.json."""
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=224, patch_size=14
    )
    torch.manual_seed(0)
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessorPil(image_mean=list(mean), image_std=[0.25, 0.25, 0.25], resample=resample).save_pretrained(folder)


def test_a_vision_folders_preprocessor_config_wins(tmp_path: Path) -> None:
    mean = (0.1, 0.2, 0.3)
    write_clip_vision_folder(tmp_path, mean, PILImageResampling.BILINEAR)
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["resample"] == 2
    normalization = folder_normalization(tmp_path)
    assert normalization.mean == mean and normalization.std == (0.25, 0.25, 0.25)
    assert normalization.resample == "bilinear" and str(tmp_path) in normalization.source
    # The authors' preset on the meta device takes the folder's values, and they match CLIP's own processor.
    _, processor = build_preset("llama3-med-8b-authors", vision_path=tmp_path)
    images = processor.image_processor
    assert (tuple(images.image_mean), images.resample) == (mean, "bilinear")
    image = square_image(seed=4)
    reference = CLIPImageProcessorPil.from_pretrained(tmp_path)
    reference.size, reference.do_center_crop = {"height": images.image_size, "width": images.image_size}, False
    np.testing.assert_allclose(images([image])["pixel_values"][0].numpy(), theirs(reference, image), atol=1e-5)


def test_info_prints_the_normalisation_and_its_source(tiny_model_dir: Path) -> None:
    from typer.testing import CliRunner

    from llama3med.cli.main import app

    result = CliRunner().invoke(app, ["info", str(tiny_model_dir)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "mean (0.481455, 0.457827, 0.408211)" in result.output and "bicubic" in result.output
    assert "CLIP (OpenAI) published values" in result.output and "encoder passes" in result.output
