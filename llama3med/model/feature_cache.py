"""Frozen-feature cache: the vision tower never trains, so its multi-scale output for an image is computed
once and stored on disk, reused by later epochs, by resumed runs and by stage 2.

Key = sha256 of the image file's bytes + a fingerprint of everything the features depend on: the
encoder's config and weights, the feature layer / prefix tokens, the scales and the image processor's
settings. Layout: `<root>/<fingerprint[:16]>/<sha[:2]>/<sha>.safetensors` holding one tensor
`features` [g*g, n_scales*C]; files are read memory-mapped. Writes go to a temporary file in the same
folder and are renamed into place, so a killed run never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from llama3med.io.files import atomic_write
from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.processing import Llama3MedImageProcessor


def encoder_fingerprint(model: Llama3MedForConditionalGeneration, image_processor: Llama3MedImageProcessor) -> str:
    """sha256 over the encoder config, its weights, the feature settings, the scales and the preprocessing."""
    config = model.config
    settings = {
        "vision_config": config.vision_config.to_dict(),
        "vision_feature_layer": config.vision_feature_layer,
        "vision_prefix_tokens": config.vision_prefix_tokens,
        "scales": list(config.scales),
        "image_processor": {
            "image_size": image_processor.image_size,
            "image_mean": image_processor.image_mean,
            "image_std": image_processor.image_std,
            "pad_to_square": image_processor.pad_to_square,
            "resample": image_processor.resample,
        },
    }
    for volatile in ("transformers_version", "_name_or_path", "dtype", "torch_dtype"):
        settings["vision_config"].pop(volatile, None)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.vision_tower.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


class FeatureCache:
    """On-disk store of frozen multi-scale image features for one encoder fingerprint."""

    def __init__(self, root: str | Path, fingerprint: str, dtype: torch.dtype | None = None) -> None:
        self.folder = Path(root) / fingerprint[:16]
        self.fingerprint = fingerprint
        self.dtype = dtype

    def path(self, image_sha256: str) -> Path:
        return self.folder / image_sha256[:2] / f"{image_sha256}.safetensors"

    def __contains__(self, image_sha256: str) -> bool:
        return self.path(image_sha256).is_file()

    def load(self, image_sha256: str) -> torch.Tensor:
        """Features [g*g, n_scales*C] of one image (memory-mapped read)."""
        path = self.path(image_sha256)
        if not path.is_file():
            raise KeyError(f"no cached features for image {image_sha256} under {self.folder}")
        with safe_open(str(path), framework="pt") as handle:
            return handle.get_tensor("features")

    def store(self, image_sha256: str, features: torch.Tensor) -> None:
        """Write one image's features atomically (temporary file + rename)."""
        path = self.path(image_sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        features = features.detach().to("cpu", self.dtype or features.dtype).contiguous()
        atomic_write(path, save({"features": features}, metadata={"fingerprint": self.fingerprint}))

    def fill(
        self,
        items: Sequence[tuple[str, Path]],
        encode: Callable[[list[Path]], torch.Tensor],
        batch_size: int = 8,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Compute and store the features of every `(sha256, path)` not yet cached; returns how many.

        `encode(paths)` returns features [len(paths), g*g, n_scales*C].
        """
        missing = [(sha, path) for sha, path in dict(items).items() if sha not in self]
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            features = encode([path for _, path in chunk])
            for (sha, _), one in zip(chunk, features, strict=True):
                self.store(sha, one)
            if progress is not None:
                progress(len(chunk))
        return len(missing)
