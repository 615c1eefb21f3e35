"""List-content chat messages (llava-hf / OpenAI style) in the chat template, the processor's
`apply_chat_template`, transformers' image-text-to-text pipeline and the Python API; string content unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from jinja2.exceptions import TemplateError
from PIL import Image
from transformers import AutoProcessor, pipeline

import llama3med.model  # noqa: F401  (registers the Auto classes)
from llama3med.api import ChatRequest, Llama3Med
from llama3med.model.processing import Llama3MedProcessor
from llama3med.model.tokenization import LLAMA3_CHAT_TEMPLATE, build_tiny_tokenizer, prepare_tokenizer

# SmolLM2-135M-Instruct's own template (ChatML with a default system turn), which concatenates
# `message['content']` as a string: the `small` preset's tokenizer brings it.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>'"
    " + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

STRING_CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "<image>\nIs there a nodule?"},
    {"role": "assistant", "content": "Yes."},
    {"role": "user", "content": "Where?"},
]
LIST_CONVERSATION = [
    {"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a nodule?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]},
    {"role": "user", "content": [{"type": "text", "text": "Where?"}]},
]


def _image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (50, 70, 3), dtype=np.uint8))


@pytest.mark.parametrize("template", [LLAMA3_CHAT_TEMPLATE, CHATML_TEMPLATE], ids=["llama3", "chatml"])
def test_list_content_renders_like_string_content_and_strings_render_as_before(template: str) -> None:
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = template
    before = tokenizer.apply_chat_template(STRING_CONVERSATION, tokenize=False, add_generation_prompt=True)
    try:  # the plain template pastes the list as Python text (Llama-3) or cannot add it to a string (ChatML)
        plain = tokenizer.apply_chat_template(LIST_CONVERSATION, tokenize=False, add_generation_prompt=True)
    except TypeError:
        plain = None
    assert plain != before
    prepare_tokenizer(tokenizer)
    assert tokenizer.apply_chat_template(STRING_CONVERSATION, tokenize=False, add_generation_prompt=True) == before
    assert tokenizer.apply_chat_template(LIST_CONVERSATION, tokenize=False, add_generation_prompt=True) == before
    # OpenAI's image part places the image the same way; parts keep their order
    openai_style = [{"role": "user", "content": [{"type": "text", "text": "Q?"}, {"type": "image_url", "image_url": {"url": "x"}}]}]
    assert "Q?\n<image>" in tokenizer.apply_chat_template(openai_style, tokenize=False)
    assert prepare_tokenizer(tokenizer).chat_template.count("list content parts") == 1  # idempotent


def test_an_unsupported_content_part_is_refused_by_name(tiny_model_dir: Path) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    with pytest.raises(TemplateError, match="part of type video is not supported"):
        processor.render_chat([{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What?"}]}])


def test_a_folder_saved_with_a_string_only_template_accepts_list_content(tiny_model_dir: Path, tmp_path: Path) -> None:
    old = Llama3MedProcessor.from_pretrained(tiny_model_dir)
    old.chat_template = old.tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE  # as folders were saved before
    old.save_pretrained(tmp_path)
    loaded = Llama3MedProcessor.from_pretrained(tmp_path)
    assert loaded.render_chat(LIST_CONVERSATION) == loaded.render_chat(STRING_CONVERSATION)
    assert loaded.tokenizer.apply_chat_template(LIST_CONVERSATION, tokenize=False) == loaded.render_chat(STRING_CONVERSATION, False)


def test_apply_chat_template_tokenizes_with_the_images_from_the_messages(tiny_model_dir: Path, tmp_path: Path) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    image = _image(0)
    image.save(tmp_path / "scan.png")
    expected = processor(processor.render_chat(STRING_CONVERSATION), images=[image])
    for image_part in ({"type": "image", "image": image}, {"type": "image", "path": str(tmp_path / "scan.png")}):
        messages = [dict(m) for m in LIST_CONVERSATION]
        messages[1] = {"role": "user", "content": [image_part, {"type": "text", "text": "Is there a nodule?"}]}
        inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
        assert set(inputs) == {"input_ids", "attention_mask", "pixel_values"}
        assert torch.equal(inputs["input_ids"], expected["input_ids"])
        assert torch.equal(inputs["pixel_values"], expected["pixel_values"])
        assert (inputs["input_ids"] == processor.image_token_id).sum() == processor.num_image_tokens


def test_image_text_to_text_pipeline_answers_chat_messages_like_the_api(tiny_model_dir: Path) -> None:
    image = _image(1)
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "What organ is this?"}]}]
    answer = pipeline("image-text-to-text", model=str(tiny_model_dir))(text=messages, max_new_tokens=8, do_sample=False)
    reply = answer[0]["generated_text"][-1]
    assert reply["role"] == "assistant"
    api = Llama3Med.from_pretrained(tiny_model_dir)
    assert reply["content"].strip() == api.chat(image, "What organ is this?", max_new_tokens=8)


def test_api_takes_list_content_messages(tiny_model_dir: Path) -> None:
    api = Llama3Med.from_pretrained(tiny_model_dir)
    image = _image(2)
    as_strings = ChatRequest(image, [{"role": "user", "content": "What organ is this?"}])
    as_parts = ChatRequest(image, [{"role": "user", "content": [{"type": "text", "text": "What organ is this?"}]}])
    placed = ChatRequest(image, [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What organ is this?"}]}])
    assert api.render(as_strings) == api.render(as_parts) == api.render(placed)
    texts = [r.text for r in api.generate([as_strings, as_parts, placed], max_new_tokens=6)]
    assert texts[0] == texts[1] == texts[2]
