"""The Llama3-Med classes in transformers' Auto classes (`llama3med.model.registration`): a saved folder loads
through `AutoConfig`, `AutoModelForImageTextToText` and `AutoProcessor` as our classes."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoProcessor

from llama3med.model.configuration import Llama3MedConfig
from llama3med.model.efficientnet_lite import EfficientNetLiteConfig, EfficientNetLiteModel
from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.processing import Llama3MedImageProcessor, Llama3MedProcessor
from llama3med.model.registration import register_auto_classes
from llama3med.model.timm_vision import TimmVisionConfig


def test_auto_classes_load_a_saved_folder_as_our_classes(tiny_model_dir: Path) -> None:
    register_auto_classes()
    register_auto_classes()  # idempotent
    assert isinstance(AutoConfig.from_pretrained(tiny_model_dir), Llama3MedConfig)
    assert isinstance(AutoModelForImageTextToText.from_pretrained(tiny_model_dir), Llama3MedForConditionalGeneration)
    assert isinstance(AutoProcessor.from_pretrained(tiny_model_dir), Llama3MedProcessor)
    assert isinstance(AutoImageProcessor.from_pretrained(tiny_model_dir), Llama3MedImageProcessor)


def test_encoder_configs_are_known_by_their_model_types() -> None:
    register_auto_classes()
    assert isinstance(AutoConfig.for_model(EfficientNetLiteConfig.model_type), EfficientNetLiteConfig)
    assert isinstance(AutoModel.from_config(EfficientNetLiteConfig()), EfficientNetLiteModel)
    assert isinstance(AutoConfig.for_model(TimmVisionConfig.model_type), TimmVisionConfig)
