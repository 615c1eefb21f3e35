"""Tokenizers (`llama3med.model.tokenization`): the tiny offline one, Meta's Llama-3 tokenizer from the
`llama-models` package, and the preparation every tokenizer gets. List-content chat messages through the prepared
template are in test_chat_messages.py."""

from __future__ import annotations

import importlib.util

import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from llama3med.io.image_tag import IMAGE_TOKEN
from llama3med.model.tokenization import (
    CONTENT_PARTS_MARKER,
    LLAMA3_CHAT_TEMPLATE,
    LLAMA3_SPECIAL_TOKENS,
    build_tiny_tokenizer,
    llama_models_tokenizer_path,
    load_llama3_tokenizer,
    prepare_tokenizer,
    with_content_parts,
)

HAS_LLAMA_MODELS = importlib.util.find_spec("llama_models") is not None


def test_the_tiny_tokenizer_has_llama3_specials_first_and_is_the_same_every_build():
    tokenizer = build_tiny_tokenizer()
    assert len(tokenizer) == 512
    assert tokenizer.convert_tokens_to_ids(LLAMA3_SPECIAL_TOKENS) == list(range(len(LLAMA3_SPECIAL_TOKENS)))
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>",
    )
    text = "Is there a nodule in the right lung? Yes, 3 mm."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert build_tiny_tokenizer().get_vocab() == tokenizer.get_vocab()  # merges learnt from a fixed corpus
    assert len(build_tiny_tokenizer(vocab_size=300)) == 300


def test_the_llama3_chat_format():
    tokenizer = build_tiny_tokenizer()
    assert tokenizer.chat_template == LLAMA3_CHAT_TEMPLATE
    rendered = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief. "}, {"role": "user", "content": " Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_prepare_adds_the_image_token_once_and_learns_list_content():
    tokenizer = build_tiny_tokenizer()
    prepared = prepare_tokenizer(tokenizer)
    assert prepared is tokenizer and len(tokenizer) == 513
    assert tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) == 512
    assert tokenizer(f"{IMAGE_TOKEN}\nWhat?", add_special_tokens=False)["input_ids"][0] == 512  # one token, never split
    assert tokenizer.chat_template.startswith(CONTENT_PARTS_MARKER) and tokenizer.chat_template.endswith(LLAMA3_CHAT_TEMPLATE)
    template = tokenizer.chat_template
    prepare_tokenizer(tokenizer)
    assert len(tokenizer) == 513 and tokenizer.chat_template == template  # idempotent
    assert with_content_parts(template) == template


def test_prepare_fills_a_missing_pad_token_and_chat_template():
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = None
    tokenizer.pad_token = None
    prepare_tokenizer(tokenizer)
    assert tokenizer.pad_token == "<|finetune_right_pad_id|>"
    assert tokenizer.chat_template == with_content_parts(LLAMA3_CHAT_TEMPLATE)


def test_a_tokenizer_without_template_that_is_not_llama3_is_refused():
    words = Tokenizer(models.WordLevel({"[UNK]": 0, "end": 1, "lung": 2}, unk_token="[UNK]"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", eos_token="end")
    with pytest.raises(ValueError, match="no chat template and is not a Llama-3 tokenizer"):
        prepare_tokenizer(tokenizer)
    assert tokenizer.pad_token == "end"  # no Llama-3 pad token: the end-of-sequence token pads


@pytest.mark.skipif(not HAS_LLAMA_MODELS, reason="package llama-models (Meta's tokenizer.model) not installed")
def test_meta_llama3_tokenizer_from_the_llama_models_package():
    path = llama_models_tokenizer_path()
    assert path.name == "tokenizer.model" and path.parent.name == "llama3" and path.is_file()
    tokenizer = load_llama3_tokenizer()
    assert len(tokenizer) == 128_000 + 256
    assert tokenizer.convert_tokens_to_ids(["<|begin_of_text|>", "<|eot_id|>", "<|reserved_special_token_245|>"]) == [
        128_000, 128_009, 128_255,
    ]
    assert tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [9906, 1917]  # Meta's ids
    assert tokenizer.chat_template == LLAMA3_CHAT_TEMPLATE
