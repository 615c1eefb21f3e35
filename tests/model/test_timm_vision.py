"""timm encoders: a tiny random ViT with H-optimus-0's architecture flags, saved as a timm-format folder, loads
back strictly and encodes through S2; without timm the error names the extra to install.

timm imports torchvision, and PyPI's torchvision cannot load beside the CPU-only torch of `make setup`, so the
tests that need timm skip there (with the import error as the reason) and run where `llama3med[pathology]`
is installed on a matching torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from llama3med.model.builder import build_llama3med
from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.presets import build_preset
from llama3med.model.pretrained import load_vision_folder, vision_config_from_folder
from llama3med.model.timm_vision import (
    TimmUnavailableError,
    TimmVisionConfig,
    create_timm_encoder,
    h_optimus_0_config,
    import_timm,
    is_timm_folder,
)
from llama3med.model.tokenization import build_tiny_tokenizer
from llama3med.model.vision_tower import TimmViTTower
from llama3med.model.weights import WeightLoadingError

H_OPTIMUS_MEAN, H_OPTIMUS_STD = [0.707223, 0.578729, 0.703617], [0.211883, 0.230117, 0.177517]


def timm_or_skip():
    try:
        return import_timm()
    except TimmUnavailableError as error:
        pytest.skip(f"timm is not importable here: {error}")


def test_without_timm_the_error_names_the_extra() -> None:
    try:
        import_timm()
    except TimmUnavailableError:
        pass
    else:
        pytest.skip("timm is importable here; the missing-timm error cannot be observed")
    with pytest.raises(TimmUnavailableError, match=r"llama3med\[pathology\]"):
        create_timm_encoder(h_optimus_0_config())
    with pytest.raises(TimmUnavailableError, match=r"llama3med\[pathology\]"):
        build_preset("llama3-med-8b-authors", vision="h-optimus-0")


@pytest.fixture
def tiny_h_optimus_folder(tmp_path: Path) -> Path:
    """A timm-format folder like H-optimus-0's (`vit_giant_patch14_reg4_dinov2`: 4 register tokens, SwiGLU-packed
    MLP, SiLU, no class embedding on positions, layer scale 1e-5), shrunk to 32 wide, 2 blocks, 28 px tiles."""
    timm = timm_or_skip()
    model_args = {"img_size": 28, "patch_size": 14, "embed_dim": 32, "depth": 2, "num_heads": 2,
                  "init_values": 1e-5, "dynamic_img_size": False}
    torch.manual_seed(0)
    encoder = timm.create_model("vit_giant_patch14_reg4_dinov2", pretrained=False, num_classes=0, **model_args)
    assert encoder.num_prefix_tokens == 5 and encoder.no_embed_class
    assert type(encoder.blocks[0].mlp).__name__ == "GluMlp" and isinstance(encoder.blocks[0].mlp.act, torch.nn.SiLU)
    # Layer scale starts at init_values; a random ViT would otherwise barely differ from the identity.
    for block in encoder.blocks:
        for scale in (block.ls1, block.ls2):
            scale.gamma.data.normal_(0, 0.5)
    folder = tmp_path / "h-optimus-tiny"
    folder.mkdir()
    config = {
        "architecture": "vit_giant_patch14_reg4_dinov2", "num_classes": 0, "global_pool": "token",
        "model_args": model_args,
        "pretrained_cfg": {"mean": H_OPTIMUS_MEAN, "std": H_OPTIMUS_STD, "interpolation": "bicubic", "input_size": [3, 28, 28]},
    }
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


def tiny_model_with(vision_config: TimmVisionConfig, scales: list[int]) -> Llama3MedForConditionalGeneration:
    source, _ = build_preset("tiny")
    model, processor = build_llama3med(
        vision_config, source.config.text_config, build_tiny_tokenizer(), scales=scales, vision_feature_layer=-1
    )
    return model, processor


def test_timm_folder_loads_strictly_and_encodes_through_s2(tiny_h_optimus_folder: Path, tmp_path: Path) -> None:
    timm = timm_or_skip()
    assert is_timm_folder(tiny_h_optimus_folder)
    config = vision_config_from_folder(tiny_h_optimus_folder)
    assert isinstance(config, TimmVisionConfig)
    assert (config.image_size, config.patch_size, config.hidden_size, config.num_prefix_tokens) == (28, 14, 32, 5)
    model, processor = tiny_model_with(config, scales=[28, 56, 84])
    load_vision_folder(model, tiny_h_optimus_folder)
    images = processor.image_processor
    assert images.image_mean == H_OPTIMUS_MEAN and images.image_std == H_OPTIMUS_STD

    pixels = torch.randn(2, 3, 84, 84, generator=torch.Generator().manual_seed(0))
    features = model.encode_images(pixels)  # [2, g*g, 3 * 32], g = 28 / 14
    assert features.shape == (2, 4, 3 * 32)
    # The base scale's features are the tile's final normalised tokens without the 5 prefix tokens.
    reference = timm.create_model(config.architecture, pretrained=False, **config.model_args)
    reference.load_state_dict(model.vision_tower.encoder.state_dict())
    reference.eval()
    base = torch.nn.functional.interpolate(pixels, size=(28, 28), mode="bicubic", align_corners=False)
    with torch.no_grad():
        expected = reference.forward_features(base)[:, 5:]  # [2, 4, 32]
    torch.testing.assert_close(features[..., :32], expected, rtol=1e-5, atol=1e-5)
    # Layer -2 (Hugging Face numbering): the first of the 2 blocks' output, before the final norm.
    with torch.no_grad():
        first_block = reference.blocks[0](reference._pos_embed(reference.patch_embed(base)))[:, 5:]  # [2, 4, 32]
    grid = TimmViTTower(reference, feature_layer=-2)(base)  # [2, 32, 2, 2]
    torch.testing.assert_close(grid.flatten(2).transpose(1, 2), first_block, rtol=1e-5, atol=1e-5)
    assert features[..., 32:].abs().sum() > 0 and not torch.allclose(features[..., 32:64], features[..., :32])

    model.save_pretrained(tmp_path / "saved")
    processor.save_pretrained(tmp_path / "saved")
    reloaded = Llama3MedForConditionalGeneration.from_pretrained(tmp_path / "saved")
    torch.testing.assert_close(reloaded.encode_images(pixels), features)


def test_renamed_timm_weights_are_refused(tiny_h_optimus_folder: Path) -> None:
    from safetensors.torch import load_file

    path = tiny_h_optimus_folder / "model.safetensors"
    save_file({f"trunk.{k}": v for k, v in load_file(str(path)).items()}, str(path))
    model, _ = tiny_model_with(vision_config_from_folder(tiny_h_optimus_folder), scales=[28, 56])
    with pytest.raises(WeightLoadingError, match=r"missing key\(s\): blocks\.0\..*unexpected key\(s\): trunk\.") as caught:
        load_vision_folder(model, tiny_h_optimus_folder)
    assert "cls_token" in caught.value.missing and "trunk.cls_token" in caught.value.unexpected


def test_authors_preset_with_h_optimus_0_on_the_meta_device() -> None:
    timm_or_skip()
    model, processor = build_preset("llama3-med-8b-authors", vision="h-optimus-0")
    config = model.config
    assert (config.num_image_tokens, config.encoder_passes_per_image) == (256, 46)
    assert config.connector_input_size == 3 * 1536 and model.connector[0].in_features == 3 * 1536
    assert config.vision_feature_layer == -1  # the final normalised layer, as the authors take it
    assert 1.1e9 < sum(p.numel() for p in model.vision_tower.parameters()) < 1.2e9  # ViT-g/14: 1.13 B
    assert processor.image_processor.image_mean == H_OPTIMUS_MEAN
