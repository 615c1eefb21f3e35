"""The image tag: where an image sits in a conversation's text.

It is the placeholder of the LLaVA conversation format (`{"from": "human", "value": "<image>\\n..."}`) that
training data, generated instruction data and LLaVA-Med's evaluation questions carry, and the special token the
tokenizer adds and the processor expands into the image's feature positions. It lives on the ground floor
because text-only parts (instruction-data generation, benchmark loading) write and read it without loading the
model.
"""

from __future__ import annotations

__all__ = ["IMAGE_TOKEN", "add_image_tag"]

IMAGE_TOKEN = "<image>"


def add_image_tag(text: str, *, tag: str = IMAGE_TOKEN) -> str:
    """`text` with the image tag in front of it, on a line of its own (LLaVA's convention: `"<image>\\n" + text`).
    `tag` is another model's image token, for processors that name theirs differently."""
    return f"{tag}\n{text}"
