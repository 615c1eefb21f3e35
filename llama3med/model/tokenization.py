"""Tokenizers: a tiny one built offline for tests, Meta's Llama-3 tokenizer from a local file, and the
preparation every tokenizer gets (an `<image>` placeholder, a pad token, a chat template)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from llama3med.io.image_tag import IMAGE_TOKEN

# Llama-3's special tokens in id order (ids 128000.. in Meta's tokenizer); the tiny tokenizer carries
# the same strings so the chat template and label masking behave as with the real one.
LLAMA3_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
]
LLAMA3_NUM_RESERVED_SPECIAL_TOKENS = 256
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The Llama-3 chat format: header per turn, content trimmed, <|eot_id|> closes each turn.
LLAMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# Prepended to every chat template: message content given as a list of parts (the llava-hf / OpenAI style,
# `[{"type": "image"}, {"type": "text", "text": "..."}]`) becomes one string before the template proper sees
# it: an image part (`image`, or OpenAI's `image_url`) becomes the `<image>` placeholder, a text part its text,
# parts joined by newlines in their order. String content passes through untouched, so a template renders
# string conversations exactly as before; any other part type (video, audio) is refused by name. Only `role`
# and `content` of a list-content message reach the template (tool calls are not supported with list content).
CONTENT_PARTS_MARKER = "{#- llama3med: list content parts -#}"
CONTENT_PARTS_PREFIX = (
    CONTENT_PARTS_MARKER
    + "{%- set content_parts = namespace(messages=[], pieces=[]) -%}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is string or message['content'] is none -%}"
    "{%- set content_parts.messages = content_parts.messages + [message] -%}"
    "{%- else -%}"
    "{%- set content_parts.pieces = [] -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}"
    "{%- set content_parts.pieces = content_parts.pieces + [part['text']] -%}"
    "{%- elif part['type'] in ['image', 'image_url'] -%}"
    "{%- set content_parts.pieces = content_parts.pieces + ['" + IMAGE_TOKEN + "'] -%}"
    "{%- else -%}"
    "{{- raise_exception('message content part of type ' ~ part['type'] ~ ' is not supported: use text, image or image_url') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- set content_parts.messages = content_parts.messages"
    " + [{'role': message['role'], 'content': content_parts.pieces | join('\n')}] -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- set messages = content_parts.messages -%}"
)


def with_content_parts(chat_template: str) -> str:
    """`chat_template` that also accepts list content parts (see `CONTENT_PARTS_PREFIX`); idempotent."""
    return chat_template if chat_template.startswith(CONTENT_PARTS_MARKER) else CONTENT_PARTS_PREFIX + chat_template


# A fixed corpus for the tiny tokenizer: the BPE merges are learnt from it, deterministically.
_TINY_CORPUS = """
What modality is used in this image? Is there a nodule in the right lung? Yes. No. The image shows a chest
x-ray with a small nodule in the left upper lobe. Is this a CT scan of the abdomen? Which organ is abnormal?
The liver, the kidney, the brain, the heart, the lungs. How many lesions are visible? one two three four five
Where is the mass located? Is the lesion on the left or the right side? axial coronal sagittal MRI T1 T2 FLAIR
Describe the histology: the tissue shows nuclei, mitotic figures, inflammation, necrosis, fibrosis, and
hemorrhage. Pathology slide stained with hematoxylin and eosin. Is there evidence of pneumothorax? effusion
cardiomegaly fracture edema opacity consolidation atelectasis. The patient presented with pain and fever.
Answer the question with a single word or phrase. Please answer yes or no. small large upper lower quadrant
""".strip()


def build_tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with Llama-3's special tokens, built offline in milliseconds."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=LLAMA3_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TINY_CORPUS.split("\n") * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
    )
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    return fast


def llama_models_tokenizer_path() -> Path:
    """Path of Meta's `tokenizer.model` shipped by the `llama-models` package (no import of the package)."""
    spec = importlib.util.find_spec("llama_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package `llama-models` is not installed (pip install --no-deps llama-models)")
    return Path(next(iter(spec.submodule_search_locations))) / "llama3" / "tokenizer.model"


def load_llama3_tokenizer(path: str | Path | None = None) -> PreTrainedTokenizerFast:
    """Meta's Llama-3 tokenizer (128,000 BPE + 256 special tokens) as a fast HF tokenizer.

    `path` is a tiktoken `tokenizer.model` file; by default the one in the `llama-models` package.
    """
    from transformers.convert_slow_tokenizer import TikTokenConverter

    path = Path(path) if path else llama_models_tokenizer_path()
    reserved = [
        f"<|reserved_special_token_{2 + i}|>"
        for i in range(LLAMA3_NUM_RESERVED_SPECIAL_TOKENS - len(LLAMA3_SPECIAL_TOKENS))
    ]
    converter = TikTokenConverter(
        vocab_file=str(path), pattern=LLAMA3_PATTERN, extra_special_tokens=LLAMA3_SPECIAL_TOKENS + reserved
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=converter.converted(),
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
    )
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    return fast


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Add the `<image>` placeholder, a pad token and (for Llama-3 tokenizers without one) a chat template;
    the chat template learns list content parts (`with_content_parts`)."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        vocab = tokenizer.get_vocab()
        tokenizer.pad_token = "<|finetune_right_pad_id|>" if "<|finetune_right_pad_id|>" in vocab else tokenizer.eos_token
    if not tokenizer.chat_template:
        if "<|start_header_id|>" not in tokenizer.get_vocab():
            raise ValueError("tokenizer has no chat template and is not a Llama-3 tokenizer; give it a chat template")
        tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    tokenizer.chat_template = with_content_parts(tokenizer.chat_template)
    return tokenizer
