"""Python API: `Llama3Med.from_pretrained(path).chat(image, question)`.

One object wraps a model folder's model and processor and serves every interface: `ask`/`chat`,
`predict`, evaluation, the OpenAI-compatible server and the web UI all call `generate` here, so they
give the same answers for the same inputs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.processing import ImageInput, Llama3MedProcessor

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass
class ChatRequest:
    """One conversation to continue: `messages` end with a user turn; `image` goes with the first user turn."""

    image: ImageInput | None
    messages: list[Message]


@dataclass
class GenerationResult:
    """Generated text with token counts, as the server reports them."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]


@dataclass
class GenerationSettings:
    """Decoding settings; `temperature=0` means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] | None = field(default=None)
    seed: int | None = None

    def generate_kwargs(self, processor: Llama3MedProcessor) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.stop:
            kwargs.update(stop_strings=list(self.stop), tokenizer=processor.tokenizer)
        return kwargs


def with_image_tag(messages: Sequence[Message]) -> list[Message]:
    """Copy of `messages` whose first user turn starts with the `<image>` tag (unless one is present)."""
    messages = [dict(m) for m in messages]
    if not any("<image>" in m["content"] for m in messages):
        first_user = next((m for m in messages if m["role"] == "user"), None)
        if first_user is None:
            raise ValueError("a conversation with an image needs a user turn")
        first_user["content"] = "<image>\n" + first_user["content"]
    return messages


def build_messages(question: str, history: Sequence[Message] | None = None, system: str | None = None) -> list[Message]:
    """Conversation for a new question after `history` (earlier user/assistant turns)."""
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    return messages + [dict(m) for m in (history or [])] + [{"role": "user", "content": question}]


class Llama3Med:
    """A loaded Llama3-Med model folder, ready to answer questions about images."""

    def __init__(self, model: Llama3MedForConditionalGeneration, processor: Llama3MedProcessor) -> None:
        self.model = model.eval()
        self.processor = processor
        self._lock = threading.Lock()  # generate is not re-entrant on one model

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str | torch.device | None = None, dtype: torch.dtype | str | None = None
    ) -> Llama3Med:
        """Load a saved folder (config, safetensors, processor); never touches the network."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a Llama3-Med model folder (no config.json)")
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        model = Llama3MedForConditionalGeneration.from_pretrained(path, dtype=dtype or torch.float32)
        processor = Llama3MedProcessor.from_pretrained(path)
        if device is not None:
            model = model.to(device)
        return cls(model, processor)

    @property
    def device(self) -> torch.device:
        return self.model.device

    # Batched generation ---------------------------------------------------------------------------
    def prepare(self, requests: Sequence[ChatRequest]) -> dict[str, torch.Tensor]:
        """Render, tokenise (left padding) and preprocess a batch of requests."""
        prompts = [
            self.processor.render_chat(with_image_tag(r.messages) if r.image is not None else r.messages)
            for r in requests
        ]
        images = [r.image for r in requests if r.image is not None]
        inputs = self.processor(prompts, images=images or None, padding_side="left")
        return {k: v.to(self.device) for k, v in inputs.items()}

    def generate(self, requests: Sequence[ChatRequest], **generation: Any) -> list[GenerationResult]:
        """Answer a batch of conversations in one `generate` call (left padding, KV cache)."""
        settings = GenerationSettings(**generation)
        inputs = self.prepare(requests)
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        with self._lock, torch.inference_mode():
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            output = self.model.generate(**inputs, **settings.generate_kwargs(self.processor))
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return [self._result(row, n_prompt, settings) for row, n_prompt in zip(new_tokens, prompt_lengths)]

    def _result(self, tokens: torch.Tensor, prompt_tokens: int, settings: GenerationSettings) -> GenerationResult:
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        pad = self.processor.tokenizer.pad_token_id
        ids = tokens.tolist()
        # Generated ids up to and including the first end-of-turn token; padding after it is not counted.
        end = next((i for i, t in enumerate(ids) if t in eos_ids), None)
        completion = ids[: end + 1] if end is not None else [t for t in ids if t != pad or t in eos_ids]
        text = self.processor.decode(completion, skip_special_tokens=True)
        finish = "stop" if end is not None else "length"
        if settings.stop:
            cut = min((text.find(s) for s in settings.stop if s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
        if finish == "length" and len(completion) < settings.max_new_tokens:
            finish = "stop"
        return GenerationResult(text.strip(), int(prompt_tokens), len(completion), finish)

    # Conversation helpers -------------------------------------------------------------------------
    def chat(self, image: ImageInput | None, question: str, history: Sequence[Message] | None = None, **generation: Any) -> str:
        """Answer `question` about `image`, continuing `history` (earlier user/assistant turns)."""
        messages = build_messages(question, history)
        return self.generate([ChatRequest(image, messages)], **generation)[0].text

    def stream_chat(
        self, image: ImageInput | None, question: str, history: Sequence[Message] | None = None, **generation: Any
    ) -> Iterator[str]:
        """Like `chat`, yielding text pieces as they are generated."""
        from transformers import TextIteratorStreamer

        settings = GenerationSettings(**generation)
        messages = build_messages(question, history)
        inputs = self.prepare([ChatRequest(image, messages)])
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    if settings.seed is not None:
                        torch.manual_seed(settings.seed)
                    self.model.generate(**inputs, **settings.generate_kwargs(self.processor), streamer=streamer)
            except BaseException as error:  # surfaced in the caller's thread below
                errors.append(error)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        yield from (piece for piece in streamer if piece)
        worker.join()
        if errors:
            raise errors[0]
