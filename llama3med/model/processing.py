"""Processor: image processor (pad to square, resize to the largest scale, normalise with the encoder's own
statistics, see `llama3med.model.normalization`) + tokenizer + chat template + `<image>` expansion, saved and
loaded with the model folder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, ProcessorMixin
from transformers.image_processing_utils import BaseImageProcessor

from llama3med.io.image_tag import IMAGE_TOKEN
from llama3med.model.normalization import CLIP, RESAMPLING_FILTERS, ImageNormalization
from llama3med.model.tokenization import with_content_parts

ImageInput = Any  # path, bytes, PIL image or numpy array; decoded by llama3med.io.images.load_image


def to_rgb_image(image: ImageInput) -> Image.Image:
    """Any supported image input -> RGB PIL image, through the one image-loading module."""
    if isinstance(image, Image.Image) and image.mode == "RGB":
        return image
    from llama3med.io.images import load_image

    return load_image(image)


def pad_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Centre the image on a square canvas of its longer side (aspect ratio kept, no crop)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


class Llama3MedImageProcessor(BaseImageProcessor):
    """Images -> `pixel_values` [N, 3, S, S] at the largest scale S; the model derives the smaller scales.

    Aspect ratio is kept by padding to a square with the encoder's mean colour (zero after
    normalisation); grayscale, 16-bit, palette, RGBA and CMYK inputs become 3-channel RGB first.
    `resample` is the encoder family's resize filter (`bicubic`, `bilinear`, ...); `normalization_source`
    records where mean, std and filter came from (shown by `llama3med info`).
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        image_size: int = 1344,
        image_mean: Sequence[float] = CLIP.mean,
        image_std: Sequence[float] = CLIP.std,
        pad_to_square: bool = True,
        resample: str = "bicubic",
        normalization_source: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if resample not in RESAMPLING_FILTERS:
            raise ValueError(f"resample must be one of {sorted(RESAMPLING_FILTERS)}, got {resample!r}")
        self.image_size = int(image_size)
        self.image_mean = [float(m) for m in image_mean]
        self.image_std = [float(s) for s in image_std]
        self.pad_to_square = pad_to_square
        self.resample = resample
        self.normalization_source = normalization_source

    @classmethod
    def for_encoder(cls, image_size: int, normalization: ImageNormalization) -> Llama3MedImageProcessor:
        """An image processor at `image_size` with an encoder family's (or folder's) normalisation."""
        return cls(
            image_size,
            normalization.mean,
            normalization.std,
            resample=normalization.resample,
            normalization_source=normalization.source or None,
        )

    def preprocess_one(self, image: ImageInput) -> torch.Tensor:
        """One image -> normalised tensor [3, S, S]."""
        rgb = to_rgb_image(image)
        if self.pad_to_square:
            rgb = pad_to_square(rgb, tuple(int(round(m * 255)) for m in self.image_mean))
        rgb = rgb.resize((self.image_size, self.image_size), RESAMPLING_FILTERS[self.resample])
        array = np.asarray(rgb, dtype=np.float32) / 255.0  # [S, S, 3]
        array = (array - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
        return torch.from_numpy(array.transpose(2, 0, 1).copy())

    def preprocess(self, images: ImageInput | Sequence[ImageInput], **kwargs: Any) -> BatchFeature:
        """Images -> BatchFeature with `pixel_values` [N, 3, S, S] (float32)."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        return BatchFeature({"pixel_values": torch.stack([self.preprocess_one(im) for im in images])})


class Llama3MedProcessor(ProcessorMixin):
    """Tokenizer + image processor. Each `<image>` in a prompt becomes `num_image_tokens` image-token ids,
    exactly as many as the vision path yields embeddings, so ids, masks and labels always line up."""

    def __init__(
        self,
        image_processor: Llama3MedImageProcessor | None = None,
        tokenizer: Any = None,
        num_image_tokens: int = 256,
        image_token: str = IMAGE_TOKEN,
        chat_template: str | None = None,
        system_prompt: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.num_image_tokens = int(num_image_tokens)
        self.image_token = image_token
        # Sent as the system turn of every conversation that has none (set by a training recipe's
        # `system_prompt`, saved with the processor so that inference uses what training used).
        self.system_prompt = system_prompt or None
        # Folders saved before list content parts were supported get them on load (string content renders
        # exactly as before); the tokenizer gets the same template so its own apply_chat_template agrees.
        chat_template = chat_template or tokenizer.chat_template
        if chat_template:
            chat_template = tokenizer.chat_template = with_content_parts(chat_template)
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)

    # Text ---------------------------------------------------------------------------------------
    def render_chat(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """Render `[{role, content}]` with the chat template. Content is a string (which may hold `<image>`) or
        a list of parts, llava-hf / OpenAI style: `{"type": "image"}` or `"image_url"` -> `<image>`, `{"type":
        "text", "text": ...}` -> its text. With a `system_prompt`, a conversation without a system turn gets it."""
        if self.system_prompt and not (messages and messages[0].get("role") == "system"):
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt, chat_template=self.chat_template
        )

    def expand_image_tokens(self, ids: Sequence[int]) -> list[int]:
        """Replace each image-token id by `num_image_tokens` copies."""
        out: list[int] = []
        for token in ids:
            out.extend([token] * self.num_image_tokens if token == self.image_token_id else [token])
        return out

    def tokenize(self, text: str) -> list[int]:
        """Rendered prompt -> ids with images expanded (no special tokens added: the template has them)."""
        return self.expand_image_tokens(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def pad(self, sequences: Sequence[Sequence[int]], padding_side: str = "left") -> tuple[torch.Tensor, torch.Tensor]:
        """Pad id lists -> (input_ids [B, L], attention_mask [B, L])."""
        length = max(len(s) for s in sequences)
        pad_id = self.tokenizer.pad_token_id
        ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, seq in enumerate(sequences):
            span = slice(length - len(seq), length) if padding_side == "left" else slice(0, len(seq))
            ids[row, span] = torch.tensor(seq, dtype=torch.long)
            mask[row, span] = 1
        return ids, mask

    def __call__(
        self,
        text: str | Sequence[str],
        images: ImageInput | Sequence[ImageInput] | None = None,
        padding_side: str = "left",
        **kwargs: Any,
    ) -> BatchFeature:
        """Tokenise rendered prompts and preprocess their images (in the order the `<image>` tags appear).

        `images` is flat or, as `apply_chat_template(tokenize=True)` passes them, one list per prompt. Left
        padding is the default because it is what batched generation needs; other tokenizer keyword
        arguments (`padding`, `return_tensors`) are accepted and the result is always torch tensors.
        """
        texts = [text] if isinstance(text, str) else list(text)
        sequences = [self.tokenize(t) for t in texts]
        n_tags = sum(t.count(self.image_token) for t in texts)
        image_list: list[ImageInput] = []
        for item in [] if images is None else (images if isinstance(images, (list, tuple)) else [images]):
            image_list.extend(item if isinstance(item, (list, tuple)) else [item])
        if n_tags != len(image_list):
            raise ValueError(f"prompts contain {n_tags} {self.image_token} tag(s) but {len(image_list)} image(s) were given")
        input_ids, attention_mask = self.pad(sequences, padding_side)
        data: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if image_list:
            data["pixel_values"] = self.image_processor(image_list)["pixel_values"]
        return BatchFeature(data)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]
