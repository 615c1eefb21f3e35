"""Registration of the Llama3-Med classes with transformers' Auto classes."""

from __future__ import annotations


def register_auto_classes() -> None:
    """Register config, model, image processor and processor (idempotent)."""
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForImageTextToText,
        AutoProcessor,
    )

    from llama3med.model.configuration import Llama3MedConfig
    from llama3med.model.efficientnet_lite import EfficientNetLiteConfig, EfficientNetLiteModel
    from llama3med.model.modeling import Llama3MedForConditionalGeneration
    from llama3med.model.processing import Llama3MedImageProcessor, Llama3MedProcessor
    from llama3med.model.timm_vision import TimmVisionConfig

    AutoConfig.register(Llama3MedConfig.model_type, Llama3MedConfig, exist_ok=True)
    AutoConfig.register(EfficientNetLiteConfig.model_type, EfficientNetLiteConfig, exist_ok=True)
    AutoModel.register(EfficientNetLiteConfig, EfficientNetLiteModel, exist_ok=True)
    AutoConfig.register(TimmVisionConfig.model_type, TimmVisionConfig, exist_ok=True)
    AutoModelForImageTextToText.register(Llama3MedConfig, Llama3MedForConditionalGeneration, exist_ok=True)
    AutoImageProcessor.register(Llama3MedConfig, slow_image_processor_class=Llama3MedImageProcessor, exist_ok=True)
    AutoProcessor.register(Llama3MedConfig, Llama3MedProcessor, exist_ok=True)
