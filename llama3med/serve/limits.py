"""Limits the server enforces on every request; each one exceeded is a clear 4xx, never a crash."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama3med.io.images import ImageLimits

MiB = 1024 * 1024


@dataclass(frozen=True)
class ServerLimits:
    """Upper bounds for one request and for the server as a whole.

    `max_prompt_tokens=None` means the model's context length minus the request's `max_tokens`.
    `max_image_decompressed_bytes` caps what a compressed image container (a deflated DICOM, a gzip NIfTI)
    may inflate to: `max_image_bytes` alone bounds only the encoded size.
    `require_image=False` (`--allow-text-only`) lets text-only conversations through to the language model,
    e.g. when the server is the LLM behind `llama3med instruct generate`.
    """

    max_body_bytes: int = 12 * MiB
    max_image_bytes: int = 8 * MiB
    max_image_pixels: int = 40_000_000
    max_image_decompressed_bytes: int = 256 * MiB
    max_tokens: int = 1024
    max_prompt_chars: int = 200_000
    max_prompt_tokens: int | None = None
    max_concurrent_requests: int = 64
    require_image: bool = True

    def image_limits(self) -> ImageLimits:
        """The image loader's limits for images sent to the server (imported lazily: it pulls in decoders)."""
        from llama3med.io.images import ImageLimits

        return ImageLimits(
            max_pixels=self.max_image_pixels,
            max_bytes=self.max_image_bytes,
            max_decompressed_bytes=self.max_image_decompressed_bytes,
        )
