"""Any model, same harness: one `answer(images, prompts) -> list[str]` call per batch.

- `Llama3MedAnswerer`: our checkpoints, through `llama3med.api.Llama3Med.generate` (batched, left padded,
  KV cache) — the same code path as `ask`, the server and the web UI.
- `HFImageTextAnswerer`: any Hugging Face image-text-to-text model in a local folder
  (`AutoModelForImageTextToText` + `AutoProcessor`, the processor's chat template).
- `OpenAIChatAnswerer`: any OpenAI-compatible chat endpoint (vLLM, SGLang, our server, a provider); images
  go as base64 PNG data URLs; requests run with bounded concurrency and retries.

Prompts are user turns; every answerer decodes greedily unless `GenerationSettings.temperature > 0`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from llama3med.generation import GenerationSettings
from llama3med.io.image_tag import IMAGE_TOKEN, add_image_tag


class Answerer(Protocol):
    """Answers a batch of (image, prompt) pairs; returns one text per pair, in order.

    `image_keys`, when given, name each image by content (sha256 of its bytes; equal keys = equal images):
    an answerer may reuse per-image work across calls by key (ours reuses the frozen encoder's features)
    or ignore them.
    """

    def answer(
        self, images: Sequence[Image.Image], prompts: Sequence[str], image_keys: Sequence[str] | None = None
    ) -> list[str]: ...

    def describe(self) -> dict[str, Any]:
        """What was evaluated (kind, path or endpoint, config hash), for reports."""
        ...


def config_sha256(folder: Path) -> str | None:
    """sha256 of a model folder's `config.json`, canonicalised (sorted keys), or None without one."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    canonical = json.dumps(json.loads(path.read_text(encoding="utf-8")), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def torch_dtype(dtype: str | None) -> Any:
    import torch

    return getattr(torch, dtype) if dtype else torch.float32


# Our checkpoints -------------------------------------------------------------------------------------
class Llama3MedAnswerer:
    """A Llama3-Med model; each prompt is one user turn with the image."""

    def __init__(self, api: Any, decoding: GenerationSettings, path: str | Path | None = None) -> None:
        self.api, self.decoding, self.path = api, decoding, path

    @classmethod
    def from_pretrained(
        cls, path: str | Path, decoding: GenerationSettings, *, device: str | None = None, dtype: str | None = None
    ) -> Llama3MedAnswerer:
        from llama3med.api import Llama3Med

        return cls(Llama3Med.from_pretrained(path, device=device, dtype=torch_dtype(dtype)), decoding, path)

    def answer(
        self, images: Sequence[Image.Image], prompts: Sequence[str], image_keys: Sequence[str] | None = None
    ) -> list[str]:
        """Answers in one batched `generate` call; with `image_keys`, an image whose features are still held
        (memory or `--feature-cache`) is not encoded again."""
        from llama3med.api import ChatRequest

        keys = list(image_keys) if image_keys is not None else [None] * len(images)
        requests = [
            ChatRequest(image, [{"role": "user", "content": prompt}], image_key=key)
            for image, prompt, key in zip(images, prompts, keys, strict=True)
        ]
        return [result.text for result in self.api.generate(requests, settings=self.decoding)]

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "llama3med",
            "path": str(self.path) if self.path is not None else None,
            "config_sha256": config_sha256(Path(self.path)) if self.path is not None else None,
        }


# Hugging Face image-text-to-text models ---------------------------------------------------------------
class HFImageTextAnswerer:
    """Any `AutoModelForImageTextToText` model with its `AutoProcessor`, batched with left padding.

    The prompt goes through the processor's chat template as `[image, text]` content of one user turn;
    a processor without a chat template gets `"<image token>\\n{prompt}"`.
    """

    def __init__(self, model: Any, processor: Any, decoding: GenerationSettings, path: str | Path | None = None) -> None:
        self.model, self.processor, self.decoding, self.path = model.eval(), processor, decoding, path
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"  # generation continues every row from its last prompt token

    @classmethod
    def from_pretrained(
        cls, path: str | Path, decoding: GenerationSettings, *, device: str | None = None, dtype: str | None = None
    ) -> HFImageTextAnswerer:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from llama3med.model.registration import register_auto_classes

        register_auto_classes()  # so that our own folders load through the Auto classes too
        processor = AutoProcessor.from_pretrained(path)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype(dtype))
        return cls(model.to(device) if device else model, processor, decoding, path)

    def render(self, prompt: str) -> str:
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return add_image_tag(prompt, tag=getattr(self.processor, "image_token", IMAGE_TOKEN))

    def generate_kwargs(self) -> dict[str, Any]:
        return self.decoding.generate_kwargs(self.tokenizer) | {"pad_token_id": self.tokenizer.pad_token_id}

    def answer(
        self, images: Sequence[Image.Image], prompts: Sequence[str], image_keys: Sequence[str] | None = None
    ) -> list[str]:
        """Answers in one batched `generate` call (`image_keys` unused: the model encodes its own images)."""
        import torch

        texts = [self.render(prompt) for prompt in prompts]
        inputs = self.processor(images=list(images), text=texts, padding=True, return_tensors="pt")
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)  # casts only the floating pixel values
        with torch.inference_mode():
            if self.decoding.seed is not None:
                torch.manual_seed(self.decoding.seed)
            output = self.model.generate(**inputs, **self.generate_kwargs())
        new_tokens = output[:, inputs["input_ids"].shape[1] :]  # [B, new]
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "hf",
            "path": str(self.path) if self.path is not None else None,
            "architecture": type(self.model).__name__,
            "config_sha256": config_sha256(Path(self.path)) if self.path is not None else None,
        }


# OpenAI-compatible chat endpoints --------------------------------------------------------------------
def png_data_url(image: Image.Image) -> str:
    """The image as a `data:image/png;base64,...` URL (PNG: lossless, so the endpoint sees our pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class EndpointError(RuntimeError):
    """A chat-completions request failed after its retries."""


class OpenAIChatAnswerer:
    """Chat completions against `base_url` (e.g. `http://127.0.0.1:8000/v1`) with the `openai` client.

    At most `max_concurrency` requests are in flight; each is retried up to `max_retries` times with the
    client's exponential backoff on connection errors, timeouts, 408/409/429 and 5xx responses.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        decoding: GenerationSettings,
        *,
        api_key: str | None = None,
        max_concurrency: int = 8,
        max_retries: int = 3,
        timeout: float = 120.0,
    ) -> None:
        from openai import OpenAI

        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.base_url, self.model, self.decoding = base_url, model, decoding
        self.max_concurrency, self.max_retries = max_concurrency, max_retries
        # Local servers (vLLM, ours) ignore the key, but the client requires one.
        self.client = OpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=max_retries, timeout=timeout)

    def answer_one(self, image: Image.Image, prompt: str) -> str:
        from openai import OpenAIError

        content = [{"type": "image_url", "image_url": {"url": png_data_url(image)}}, {"type": "text", "text": prompt}]
        options: dict[str, Any] = {"temperature": self.decoding.temperature, "max_tokens": self.decoding.max_new_tokens}
        if self.decoding.temperature > 0:
            options["top_p"] = self.decoding.top_p
        if self.decoding.seed is not None:
            options["seed"] = self.decoding.seed
        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": content}], **options
            )
        except OpenAIError as error:
            raise EndpointError(f"{self.base_url}: chat completion failed after {self.max_retries} retries: {error}") from error
        if not response.choices:
            raise EndpointError(f"{self.base_url}: response has no choices")
        return (response.choices[0].message.content or "").strip()

    def answer(
        self, images: Sequence[Image.Image], prompts: Sequence[str], image_keys: Sequence[str] | None = None
    ) -> list[str]:
        """One request per pair, `max_concurrency` at a time (`image_keys` unused: each request sends its image)."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, max(1, len(prompts)))) as pool:
            return list(pool.map(self.answer_one, images, prompts))

    def describe(self) -> dict[str, Any]:
        return {"kind": "openai-endpoint", "path": self.base_url, "model": self.model, "config_sha256": None}
