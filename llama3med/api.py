"""Python API: `Llama3Med.from_pretrained(path).chat(image, question)`.

One object wraps a model folder's model and processor and serves every interface: `ask`/`chat`,
`predict`, evaluation, the OpenAI-compatible server and the web UI all call `generate` here, so they
give the same answers for the same inputs.
"""

from __future__ import annotations

import inspect
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import DynamicCache, GenerationMixin

from llama3med.generation import GenerationSettings, generation_settings
from llama3med.io.image_tag import IMAGE_TOKEN, add_image_tag
from llama3med.model.chat_encoding import encode_chat
from llama3med.model.decoding import decode_dropping_finished
from llama3med.model.image_feature_cache import DEFAULT_MAX_BYTES, ImageFeatureCache, pixel_key
from llama3med.model.loading import load_folder
from llama3med.model.modeling import Llama3MedForConditionalGeneration
from llama3med.model.processing import ImageInput, Llama3MedProcessor

# transformers from 5.2x takes a prefilled KV cache as `generate(cache=...)` (before: `past_key_values`).
GENERATE_TAKES_CACHE = "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters

# {"role": "system" | "user" | "assistant", "content": str or a list of llava-hf / OpenAI content parts}
Message = dict[str, Any]


@dataclass
class ChatRequest:
    """One conversation to continue: `messages` end with a user turn; `image` goes with the first user turn.

    `image_key` optionally names the image as the model will see it (a sha256 hex digest; equal keys must mean
    equal pixels, e.g. the image file's sha256 when every request loads it the same way): its features are then
    looked up before the image is even preprocessed. Without one, the preprocessed pixels are hashed.

    `prompt_ids` optionally holds `Llama3Med.prompt_ids(request)` already computed (the server tokenises each
    prompt once to check its length); generation then uses it instead of tokenising the messages again.
    """

    image: ImageInput | None
    messages: list[Message]
    image_key: str | None = None
    prompt_ids: list[int] | None = None


@dataclass
class GenerationResult:
    """Generated text with token counts, as the server reports them."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]


def places_image(content: str | list[dict[str, Any]] | None) -> bool:
    """Whether message content holds the image's place: an `<image>` tag in a string, an image part in a list."""
    if isinstance(content, str):
        return IMAGE_TOKEN in content
    return any(part.get("type") in ("image", "image_url") for part in content or ())


def with_image_tag(messages: Sequence[Message]) -> list[Message]:
    """Copy of `messages` whose first user turn starts with the image (unless a turn already places it):
    the `<image>` tag for string content, an image part for list content."""
    messages = [dict(m) for m in messages]
    if not any(places_image(m["content"]) for m in messages):
        first_user = next((m for m in messages if m["role"] == "user"), None)
        if first_user is None:
            raise ValueError("a conversation with an image needs a user turn")
        content = first_user["content"]
        first_user["content"] = [{"type": "image"}, *content] if isinstance(content, list) else add_image_tag(content)
    return messages


def build_messages(question: str, history: Sequence[Message] | None = None, system: str | None = None) -> list[Message]:
    """Conversation for a new question after `history` (earlier user/assistant turns)."""
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    return messages + [dict(m) for m in (history or [])] + [{"role": "user", "content": question}]


class Llama3Med:
    """A loaded Llama3-Med model folder, ready to answer questions about images."""

    def __init__(
        self,
        model: Llama3MedForConditionalGeneration,
        processor: Llama3MedProcessor,
        feature_memory_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.model = model.eval()
        self.processor = processor
        # The encoder is frozen: each image's features are kept (by image key) and reused by later requests
        # on the same image, e.g. the other questions on one benchmark image or the next turn of a chat.
        self.image_features = ImageFeatureCache(feature_memory_bytes)
        self._lock = threading.Lock()  # generate is not re-entrant on one model

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str | torch.device | None = None, dtype: torch.dtype | str | None = None
    ) -> Llama3Med:
        """Load a saved model folder (config, safetensors, processor), or a LoRA adapter folder over one (its
        adapters merged in memory, as `llama3med merge` does); never touches the network. A folder that cannot
        be used raises `llama3med.folders.ModelFolderError` saying why."""
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        model, processor = load_folder(path, dtype or torch.float32)
        if device is not None:
            model = model.to(device)
        return cls(model, processor)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def use_feature_cache(self, root: str | Path) -> None:
        """Keep image features on disk under `root` too (the training frozen-feature cache's layout, one folder
        per encoder fingerprint), so a later run with the same encoder and scales skips the encoder."""
        from llama3med.model.feature_cache import FeatureCache, encoder_fingerprint

        with self._lock:
            self.image_features.disk = FeatureCache(root, encoder_fingerprint(self.model, self.processor.image_processor))

    # Batched generation ---------------------------------------------------------------------------
    def render(self, request: ChatRequest) -> str:
        """The prompt text of one request (chat template applied, `<image>` tag placed)."""
        return self.processor.render_chat(with_image_tag(request.messages) if request.image is not None else request.messages)

    def prompt_ids(self, request: ChatRequest) -> list[int]:
        """Token ids of one request's prompt, image tokens expanded. Special-token strings typed inside the
        messages are plain text, never control tokens, exactly as training encodes its data
        (`llama3med.model.chat_encoding`)."""
        messages = with_image_tag(request.messages) if request.image is not None else list(request.messages)
        encoding = encode_chat(self.processor, messages, add_generation_prompt=True)
        return self.processor.expand_image_tokens(encoding.input_ids)

    def prompt_length(self, request: ChatRequest) -> int:
        """Prompt tokens of one request, image tokens included (what `generate` reports as `prompt_tokens`)."""
        return len(self.prompt_ids(request))

    def prepare(self, requests: Sequence[ChatRequest]) -> dict[str, torch.Tensor]:
        """Render, tokenise (left padding) and preprocess a batch of requests: the model's inputs with
        `pixel_values` (what `generate` feeds the model instead is `encode_images`' reusable features)."""
        input_ids, attention_mask = self.tokenize(requests)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        images = [r.image for r in requests if r.image is not None]
        if images:
            inputs["pixel_values"] = self.processor.image_processor(images)["pixel_values"].to(self.device)
        return inputs

    def prompt_sequences(self, requests: Sequence[ChatRequest]) -> list[list[int]]:
        """Each request's prompt ids (its precomputed `prompt_ids`, else `prompt_ids(request)`), after checking
        there is one `<image>` tag per image."""
        n_tags = sum(self.render(r).count(self.processor.image_token) for r in requests)
        n_images = sum(r.image is not None for r in requests)
        if n_tags != n_images:
            raise ValueError(f"prompts contain {n_tags} {self.processor.image_token} tag(s) but {n_images} image(s) were given")
        return [r.prompt_ids if r.prompt_ids is not None else self.prompt_ids(r) for r in requests]

    def tokenize(self, requests: Sequence[ChatRequest]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rendered, tokenised prompts, left padded: (input_ids [B, L], attention_mask [B, L]), on the device."""
        input_ids, attention_mask = self.processor.pad(self.prompt_sequences(requests), "left")
        return input_ids.to(self.device), attention_mask.to(self.device)

    def encode_images(self, requests: Sequence[ChatRequest]) -> tuple[list[str], torch.Tensor | None]:
        """(image keys, frozen features [N_img, g*g, n_scales*C]) of the requests' images in order; no keys and
        None without images.

        Features come from `image_features` (memory, then the disk cache if one is in use); the images found
        in neither are preprocessed and encoded together, each distinct image once."""
        images = [r for r in requests if r.image is not None]
        if not images:
            return [], None
        preprocess = self.processor.image_processor.preprocess_one
        pixels = {i: preprocess(r.image) for i, r in enumerate(images) if r.image_key is None}  # [3, S, S] each
        keys = [r.image_key or pixel_key(pixels[i]) for i, r in enumerate(images)]
        features = self.image_features.features(
            keys,
            lambda i: pixels[i] if i in pixels else preprocess(images[i].image),
            lambda batch: self.model.encode_images(batch.to(self.device)),
        )
        return keys, torch.stack([f.to(self.device) for f in features])

    def shared_prefix_inputs(
        self, sequences: list[list[int]], keys: list[str], image_features: torch.Tensor | None
    ) -> dict[str, Any] | None:
        """`generate` inputs that prefill each distinct image's prompt prefix once for the whole batch.

        Questions on one image share everything up to and including its image tokens (system prompt, turn
        header, `num_image_tokens` image positions: 70 of ~90 prompt tokens for `small`). That prefix is run once
        per distinct (image, prefix) pair; its KV cache is copied to every row that shares it, and each row
        goes on from its own question: ids `[prefix][left padding][question]`, the padding masked out, so
        positions (from the attention mask) are those of the row alone. None when it does not apply: rows
        without an image, prefixes of different lengths, nothing shared, or a transformers without `cache=`.
        """
        if not GENERATE_TAKES_CACHE or image_features is None or len(keys) != len(sequences):
            return None
        image_token = self.processor.image_token_id
        cuts = {len(s) - s[::-1].index(image_token) for s in sequences}  # just after each row's last image token
        if len(cuts) != 1:
            return None
        cut = cuts.pop()
        if any(len(s) == cut for s in sequences):  # a row must have text after its image to go on from
            return None
        groups: dict[tuple[str, tuple[int, ...]], int] = {}
        rows = [groups.setdefault((key, tuple(s[:cut])), len(groups)) for key, s in zip(keys, sequences, strict=True)]
        if len(groups) == len(sequences):
            return None
        first = [rows.index(group) for group in range(len(groups))]
        prefix_ids = torch.tensor([sequences[row][:cut] for row in first], device=self.device)  # [U, P]
        cache = DynamicCache(config=self.model.config.text_config)
        self.model(input_ids=prefix_ids, image_features=image_features[first], cache=cache, use_cache=True, logits_to_keep=1)
        cache.batch_select_indices(torch.tensor(rows, device=self.device))  # every layer's K/V: [U, ...] -> [B, ...]
        question_ids, question_mask = self.processor.pad([s[cut:] for s in sequences], "left")  # [B, Q]
        prefix_rows = torch.tensor([s[:cut] for s in sequences])  # [B, P]
        return {
            "input_ids": torch.cat([prefix_rows, question_ids], dim=1).to(self.device),  # [B, P + Q]
            "attention_mask": torch.cat([torch.ones_like(prefix_rows), question_mask], dim=1).to(self.device),
            "cache": cache,
        }

    def generation_inputs(self, requests: Sequence[ChatRequest], sequences: list[list[int]]) -> dict[str, Any]:
        """`model.generate` inputs for `requests` whose prompt ids are `sequences` (`prompt_sequences`): images
        encoded (or found in `image_features`), each image's prompt prefix prefilled once where rows share it
        (`shared_prefix_inputs`), else the left-padded prompts with the image features. Call under
        `torch.inference_mode()`."""
        keys, image_features = self.encode_images(requests)  # image features [N_img, g*g, n_scales*C] or None
        inputs = self.shared_prefix_inputs(sequences, keys, image_features)
        if inputs is None:
            input_ids, attention_mask = self.processor.pad(sequences, "left")  # [B, L] each
            inputs = {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device)}
            if image_features is not None:
                inputs["image_features"] = image_features
        return inputs

    def generate(
        self,
        requests: Sequence[ChatRequest],
        *,
        on_text: Callable[[int, str], None] | None = None,
        settings: GenerationSettings | None = None,
        **generation: Any,
    ) -> list[GenerationResult]:
        """Answer a batch of conversations in one `generate` call (left padding, KV cache); each row leaves the
        batch as soon as its answer is complete (`llama3med.model.decoding.decode_dropping_finished`).

        `on_text(row, piece)`, if given, is called from this thread with each row's text as it is generated;
        a row's pieces concatenate to exactly its result's `text`. Decoding follows `settings`, or the
        `GenerationSettings` fields given as keyword arguments (`max_new_tokens=32, temperature=0.7`); `chat`,
        `stream_chat` and `stream_generate` take the same.
        """
        settings = generation_settings(settings, generation)
        sequences = self.prompt_sequences(requests)
        prompt_lengths = [len(s) for s in sequences]
        deltas = TextDeltas(self, settings, len(requests), on_text) if on_text is not None else None
        with self._lock, torch.inference_mode():
            inputs = self.generation_inputs(requests, sequences)
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            generated = self.model.generate(
                **inputs,
                **settings.generate_kwargs(self.processor.tokenizer),
                custom_generate=decode_dropping_finished,
                on_tokens=deltas.add if deltas is not None else None,
            )
        results = [self._result(ids, n_prompt, settings) for ids, n_prompt in zip(generated, prompt_lengths, strict=True)]
        if deltas is not None:
            deltas.finish(results)
        return results

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return set(eos if isinstance(eos, list) else [eos])

    def completion_ids(self, ids: list[int]) -> tuple[list[int], bool]:
        """Generated ids up to and including the first end-of-turn token, and whether that token was reached."""
        eos_ids = self._eos_ids()
        end = next((i for i, t in enumerate(ids) if t in eos_ids), None)
        return (ids[: end + 1], True) if end is not None else (ids, False)

    def completion_text(self, completion: list[int], settings: GenerationSettings) -> tuple[str, bool]:
        """Decoded completion cut before the first stop string (unstripped), and whether one was found."""
        text = self.processor.decode(completion, skip_special_tokens=True)
        cut = min((text.find(s) for s in settings.stop or () if s in text), default=-1)
        return (text[:cut], True) if cut >= 0 else (text, False)

    def _result(self, generated: list[int], prompt_tokens: int, settings: GenerationSettings) -> GenerationResult:
        completion, ended = self.completion_ids(generated)
        text, stopped = self.completion_text(completion, settings)
        finish = "stop" if ended or stopped or len(completion) < settings.max_new_tokens else "length"
        return GenerationResult(text.strip(), int(prompt_tokens), len(completion), finish)

    # Conversation helpers -------------------------------------------------------------------------
    def chat(self, image: ImageInput | None, question: str, history: Sequence[Message] | None = None, **generation: Any) -> str:
        """Answer `question` about `image`, continuing `history` (earlier user/assistant turns)."""
        messages = build_messages(question, history)
        return self.generate([ChatRequest(image, messages)], **generation)[0].text

    def stream_chat(
        self, image: ImageInput | None, question: str, history: Sequence[Message] | None = None, **generation: Any
    ) -> Iterator[str]:
        """Like `chat`, yielding text pieces as they are generated; they concatenate to `chat`'s answer."""
        return self.stream_generate(ChatRequest(image, build_messages(question, history)), **generation)

    def stream_generate(self, request: ChatRequest, **generation: Any) -> Iterator[str]:
        """Like `generate` for one request, yielding its text pieces as they are generated."""
        pieces: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                self.generate([request], on_text=lambda _row, piece: pieces.put(piece), **generation)
            except BaseException as error:  # surfaced in the caller's thread below
                errors.append(error)
            finally:
                pieces.put(None)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        yield from iter(pieces.get, None)
        worker.join()
        if errors:
            raise errors[0]


class TextDeltas:
    """Turns the token ids each decoding step gives the live rows into per-row text pieces.

    A piece is sent only once it cannot change any more: text that may still turn into a stop string,
    an incomplete UTF-8 character and trailing whitespace (results are stripped) are held back, so the
    pieces of a row always concatenate to exactly its final `GenerationResult.text`.
    """

    def __init__(self, api: Llama3Med, settings: GenerationSettings, batch_size: int, on_text: Callable[[int, str], None]) -> None:
        self.api, self.settings, self.on_text = api, settings, on_text
        self.ids: list[list[int]] = [[] for _ in range(batch_size)]
        self.sent = [""] * batch_size

    def add(self, rows: list[int], tokens: list[int]) -> None:
        """One decoding step: `tokens[i]` is the new token of batch row `rows[i]` (the rows still generating)."""
        for row, token in zip(rows, tokens, strict=True):
            self.ids[row].append(token)
            completion, _ = self.api.completion_ids(self.ids[row])
            self._send(row, self._settled_text(completion))

    def finish(self, results: Sequence[GenerationResult]) -> None:
        """Send whatever of each row's final text was held back."""
        for row, result in enumerate(results):
            self._send(row, result.text)

    def _settled_text(self, completion: list[int]) -> str:
        text, stopped = self.api.completion_text(completion, self.settings)
        text = text.lstrip()
        if stopped:
            return text.rstrip()
        text = text.rstrip("\ufffd")  # an incomplete multi-byte character decodes to U+FFFD
        held = max((k for s in self.settings.stop or () for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        return text[: len(text) - held].rstrip()

    def _send(self, row: int, text: str) -> None:
        if len(text) > len(self.sent[row]) and text.startswith(self.sent[row]):
            self.on_text(row, text[len(self.sent[row]):])
            self.sent[row] = text
