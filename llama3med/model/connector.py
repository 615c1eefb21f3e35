"""Connectors (a.k.a. multi-modal projectors): vision features [B, T, n_scales*C] -> LLM embeddings [B, T, D]."""

from __future__ import annotations

from torch import nn


def build_connector(connector_type: str, input_size: int, output_size: int) -> nn.Sequential:
    """Build `linear`, `mlp2x_gelu` (Linear-GELU-Linear, the LLaVA-1.5/Llama3-Med default) or `mlp3x_gelu`."""
    if connector_type == "linear":
        return nn.Sequential(nn.Linear(input_size, output_size))
    depth = {"mlp2x_gelu": 2, "mlp3x_gelu": 3}.get(connector_type)
    if depth is None:
        raise ValueError(f"unknown connector type {connector_type!r}")
    layers: list[nn.Module] = [nn.Linear(input_size, output_size)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(output_size, output_size)]
    return nn.Sequential(*layers)


def connector_input_width(state_dict: dict) -> int:
    """Input width a saved connector expects (its first Linear's in_features)."""
    first = min((k for k in state_dict if k.endswith("weight")), key=lambda k: int(k.split(".")[-2]))
    return int(state_dict[first].shape[1])
