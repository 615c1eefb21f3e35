"""Helpers shared by the model tests (tests/model is on sys.path when its tests run)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file


def rename_prefix(path: Path, old: str, new: str) -> None:
    """Rewrite a safetensors file with `old` key prefixes renamed to `new` (a converter's typical slip)."""
    tensors = load_file(str(path))
    save_file({(new + k[len(old):] if k.startswith(old) else k): v for k, v in tensors.items()}, str(path), {"format": "pt"})
