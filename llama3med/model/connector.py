"""Connectors (a.k.a. multi-modal projectors): vision features [B, T, n_scales*C] -> LLM embeddings [B, T, D]."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from llama3med.model.configuration import INPUT_NORMS

# A channel whose spread is below this fraction of the median channel's is divided by that floor instead: a
# channel constant on the training images (EfficientNet-Lite0 has dozens) stays near 0 rather than blowing up
# on an image where it moves a little.
STD_FLOOR = 0.05


class FeatureStandardizer(nn.Module):
    """Per-channel standardisation of the frozen features, `(x - mean) / std`, with the statistics of the training
    images: fitted once (`fit`, before the connector's first step) and then fixed. They are buffers, saved and
    loaded with the connector, never trained.

    Why: the channels of a frozen encoder differ in spread by orders of magnitude (EfficientNet-Lite0 at
    224/448/896 px: standard deviation 0 to 2.3, median 0.26). A Linear layer trained by Adam from a small random
    initialisation takes many steps before a low-spread channel, which may be the one that carries a small target,
    moves its output; standardised, every channel starts on an equal footing. Unfitted, it is the identity."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean.to(features.dtype)) / self.std.to(features.dtype)  # [B, T, C]

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor]) -> int:
        """Set mean and std from feature batches [N, T, C] (every token a sample); returns the tokens seen."""
        width = self.mean.numel()
        total = torch.zeros(width, dtype=torch.float64)
        squares = torch.zeros(width, dtype=torch.float64)
        count = 0
        for batch in batches:
            rows = batch.reshape(-1, width).to(torch.float64)  # [N*T, C]
            total += rows.sum(0)
            squares += rows.square().sum(0)
            count += rows.shape[0]
        if count < 2:
            raise ValueError(f"fitting the feature standardisation needs at least 2 feature tokens, got {count}")
        mean = total / count
        std = ((squares / count - mean.square()).clamp_min(0.0) * count / (count - 1)).sqrt()  # [C]
        spread = std[std > 0]
        floor = STD_FLOOR * (spread.median() if spread.numel() else torch.tensor(1.0, dtype=torch.float64))
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(float(floor)))
        self.fitted.fill_(True)
        return count


def build_connector(connector_type: str, input_size: int, output_size: int, input_norm: str = "none") -> nn.Sequential:
    """Build `linear`, `mlp2x_gelu` (Linear-GELU-Linear, the LLaVA-1.5/Llama3-Med default) or `mlp3x_gelu`,
    preceded by a `FeatureStandardizer` when `input_norm` is `standardize`."""
    if input_norm not in INPUT_NORMS:
        raise ValueError(f"unknown connector input norm {input_norm!r}; choose from {INPUT_NORMS}")
    depth = {"linear": 1, "mlp2x_gelu": 2, "mlp3x_gelu": 3}.get(connector_type)
    if depth is None:
        raise ValueError(f"unknown connector type {connector_type!r}")
    layers: list[nn.Module] = [FeatureStandardizer(input_size)] if input_norm == "standardize" else []
    layers.append(nn.Linear(input_size, output_size))
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(output_size, output_size)]
    return nn.Sequential(*layers)


def connector_input_width(state_dict: dict) -> int:
    """Input width a saved connector expects (its first Linear's in_features)."""
    first = min((k for k in state_dict if k.endswith("weight")), key=lambda k: int(k.split(".")[-2]))
    return int(state_dict[first].shape[1])
