"""Strict weight loading: every load either fills every parameter from the checkpoint or fails naming the keys.

A checkpoint whose keys carry another prefix (`model.` vs `language_model.model.`, a full CLIP folder vs its
vision half) otherwise loads nothing and leaves random weights behind without a word. Tied parameters
(`lm_head.weight` sharing the input embedding when `tie_word_embeddings` is set) may be absent from a
checkpoint: they are filled by the tie.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import torch
from torch import nn

SHOWN_KEYS = 8


class WeightLoadingError(ValueError):
    """A checkpoint's keys do not match the module it is loaded into; lists the missing and unexpected keys."""

    def __init__(self, what: str, missing: Iterable[str] = (), unexpected: Iterable[str] = (), detail: str = "") -> None:
        self.missing, self.unexpected = sorted(missing), sorted(unexpected)
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {shown(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {shown(self.unexpected)}")
        if detail:
            parts.append(detail)
        super().__init__(f"{what}: the checkpoint does not match the model; " + "; ".join(parts))


def shown(keys: list[str]) -> str:
    """The first keys of a sorted list, and how many more there are."""
    head = ", ".join(keys[:SHOWN_KEYS])
    return head + (f", ... (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


def tied_parameter_aliases(module: nn.Module) -> dict[str, str]:
    """{name: the name it shares its tensor with} for every parameter that is a second name of another one."""
    first_name: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, parameter in module.named_parameters(remove_duplicate=False):
        if id(parameter) in first_name:
            aliases[name] = first_name[id(parameter)]
        else:
            first_name[id(parameter)] = name
    return aliases


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """Load `state_dict` into `module`; raise `WeightLoadingError` on any missing or unexpected key or shape.

    A missing key is accepted only when it names a tied parameter whose partner is in the checkpoint.
    """
    aliases = tied_parameter_aliases(module)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict and aliases.get(k) not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        detail = f"{len(shapes)} shape mismatch(es): {shown(shapes)}" if shapes else ""
        raise WeightLoadingError(what, missing, unexpected, detail)
    module.load_state_dict(state_dict, strict=False)  # tied aliases are the only keys left out, checked above


def check_loading_info(
    info: Mapping[str, Any], what: str, allowed_unexpected_prefixes: Collection[str] = ()
) -> None:
    """Raise `WeightLoadingError` when `from_pretrained(..., output_loading_info=True)` reports missing,
    unexpected or mismatched keys (unexpected keys under `allowed_unexpected_prefixes` excepted)."""
    missing = list(info.get("missing_keys") or ())
    unexpected = [k for k in info.get("unexpected_keys") or () if not k.startswith(tuple(allowed_unexpected_prefixes))]
    mismatched = [str(item) for item in info.get("mismatched_keys") or ()]
    errors = [str(e) for e in info.get("error_msgs") or ()]
    if missing or unexpected or mismatched or errors:
        detail = "; ".join(
            part
            for part in (
                f"{len(mismatched)} shape mismatch(es): {shown(sorted(mismatched))}" if mismatched else "",
                "; ".join(errors),
            )
            if part
        )
        raise WeightLoadingError(what, missing, unexpected, detail)
