"""Label masking from the chat template, with Meta's real Llama-3 tokenizer and SmolLM2's."""

from __future__ import annotations

import pytest

from llama3med.model.processing import Llama3MedImageProcessor, Llama3MedProcessor
from llama3med.model.tokenization import LLAMA3_CHAT_TEMPLATE, build_tiny_tokenizer, prepare_tokenizer
from llama3med.train.data.supervision import (
    IGNORE_INDEX,
    SampleTooLong,
    SupervisedSample,
    SupervisionError,
    fit_length,
    special_token_ids,
    supervise,
)

TWO_TURNS = [
    {"role": "system", "content": "You are a careful radiology assistant."},
    {"role": "user", "content": "<image>\nIs there a nodule in the right lung?"},
    {"role": "assistant", "content": "Yes: a 12 mm nodule in the right upper lobe (axial CT, 3/4)."},
    {"role": "user", "content": "Is it calcified?"},
    {"role": "assistant", "content": "No, it is not calcified — follow-up CT in 3 months is advised."},
]
ASSISTANT_TEXTS = [m["content"] for m in TWO_TURNS if m["role"] == "assistant"]
NUM_IMAGE_TOKENS = 9


def processor_for(tokenizer) -> Llama3MedProcessor:
    return Llama3MedProcessor(
        Llama3MedImageProcessor(64), prepare_tokenizer(tokenizer), num_image_tokens=NUM_IMAGE_TOKENS
    )


@pytest.fixture(scope="module")
def llama3_processor() -> Llama3MedProcessor:
    pytest.importorskip("tiktoken")
    from llama3med.model.tokenization import load_llama3_tokenizer

    try:
        return processor_for(load_llama3_tokenizer())
    except FileNotFoundError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def smollm2_processor() -> Llama3MedProcessor:
    from transformers import AutoTokenizer

    from llama3med.model.pretrained import smollm2_folder

    try:
        return processor_for(AutoTokenizer.from_pretrained(smollm2_folder()))
    except FileNotFoundError as error:
        pytest.skip(str(error))


def supervised_spans(sample: SupervisedSample) -> list[list[int]]:
    """Runs of consecutive supervised positions, as token-id lists."""
    spans, current = [], []
    for token, label in zip(sample.input_ids, sample.labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    return spans + ([current] if current else [])


@pytest.mark.parametrize("which", ["llama3_processor", "smollm2_processor"])
def test_supervised_spans_decode_to_the_assistant_texts(which: str, request: pytest.FixtureRequest) -> None:
    processor: Llama3MedProcessor = request.getfixturevalue(which)
    sample = supervise(processor, TWO_TURNS, "rec-1")
    spans = supervised_spans(sample)
    assert len(spans) == 2
    end_of_turn = {tuple(span[-1:]) for span in spans}
    assert len(end_of_turn) == 1 and span_is_special(processor, spans[0][-1])
    decoded = [processor.tokenizer.decode(span[:-1], clean_up_tokenization_spaces=False) for span in spans]
    assert decoded == ASSISTANT_TEXTS
    # the end-of-turn token supervised is the one generation stops on
    assert processor.tokenizer.convert_ids_to_tokens(spans[0][-1]) in {"<|eot_id|>", "<|im_end|>"}
    # image tokens: expanded to NUM_IMAGE_TOKENS copies, never supervised
    image_positions = [i for i, t in enumerate(sample.input_ids) if t == processor.image_token_id]
    assert len(image_positions) == NUM_IMAGE_TOKENS
    assert all(sample.labels[i] == IGNORE_INDEX for i in image_positions)
    # system and user text is never supervised
    unsupervised = [
        t
        for t, label in zip(sample.input_ids, sample.labels, strict=True)
        if label == IGNORE_INDEX and t != processor.image_token_id
    ]
    text = processor.tokenizer.decode(unsupervised, clean_up_tokenization_spaces=False)
    assert "careful radiology assistant" in text and "Is it calcified?" in text
    assert "12 mm nodule" not in text


def span_is_special(processor: Llama3MedProcessor, token: int) -> bool:
    return token in special_token_ids(processor.tokenizer)


def test_template_that_alters_assistant_text_is_an_error_naming_the_record() -> None:
    tokenizer = build_tiny_tokenizer()
    # a template that upper-cases assistant text: the masks would not match the data
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE.replace(
        "message['content'] | trim",
        "(message['content'] | upper if message['role'] == 'assistant' else message['content'] | trim)",
    )
    processor = processor_for(tokenizer)
    with pytest.raises(SupervisionError, match="record rec-7"):
        supervise(processor, TWO_TURNS[1:3], "rec-7")


def test_template_without_end_of_turn_token_is_an_error() -> None:
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}:\n{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:\n{% endif %}"
    processor = processor_for(tokenizer)
    with pytest.raises(SupervisionError, match="rec-8.*end-of-turn"):
        supervise(processor, TWO_TURNS[1:3], "rec-8")


def test_token_straddling_prompt_and_answer_is_a_tokenisation_mismatch() -> None:
    # The generation prompt ends in a space that BPE merges into the answer's first word: training ids
    # would differ from what the model sees at inference, so this is reported, not trained on.
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    processor = processor_for(tokenizer)
    with pytest.raises(SupervisionError, match="record rec-9: tokenisation mismatch in assistant turn 1"):
        supervise(processor, TWO_TURNS[1:3], "rec-9")


def test_truncation_cuts_text_only_and_never_image_tokens() -> None:
    processor = processor_for(build_tiny_tokenizer())
    sample = supervise(processor, TWO_TURNS, "r")
    image_end = max(i for i, t in enumerate(sample.input_ids) if t == processor.image_token_id) + 1
    first_supervised = min(i for i, label in enumerate(sample.labels) if label != IGNORE_INDEX)
    cut = fit_length(sample, first_supervised + 3, "text", processor.image_token_id)
    assert cut.truncated and cut.input_ids == sample.input_ids[: first_supervised + 3]
    assert cut.input_ids.count(processor.image_token_id) == NUM_IMAGE_TOKENS
    with pytest.raises(SampleTooLong, match="image tokens"):
        fit_length(sample, image_end - 1, "text", processor.image_token_id)
    with pytest.raises(SampleTooLong, match="nothing supervised"):
        fit_length(sample, first_supervised, "text", processor.image_token_id)
    with pytest.raises(SampleTooLong):
        fit_length(sample, len(sample.input_ids) - 1, "drop", processor.image_token_id)
    assert fit_length(sample, len(sample.input_ids), "drop", processor.image_token_id) is sample


# Special-token strings inside data text ---------------------------------------------------------------
@pytest.mark.parametrize("which", ["llama3_processor", "smollm2_processor"])
def test_special_token_strings_in_data_text_are_plain_text(which: str, request: pytest.FixtureRequest) -> None:
    processor: Llama3MedProcessor = request.getfixturevalue(which)
    tokenizer = processor.tokenizer
    eot = tokenizer.convert_ids_to_tokens(supervised_spans(supervise(processor, TWO_TURNS[1:3], "plain"))[0][-1])
    reply = f"The caption ends with {eot} and <|start_header_id|>user<|end_header_id|> here."
    messages = [
        {"role": "user", "content": f"<image>\nWhat does {eot} mean?"},
        {"role": "assistant", "content": reply},
    ]
    sample = supervise(processor, messages, "rec-special")
    specials = special_token_ids(tokenizer)
    (span,) = supervised_spans(sample)
    assert tokenizer.decode(span[:-1], clean_up_tokenization_spaces=False) == reply
    assert not specials & set(span[:-1]) and span[-1] in specials  # only the template's end of turn is a control token
    eot_id = tokenizer.convert_tokens_to_ids(eot)
    plain = supervise(processor, [{"role": "user", "content": "<image>\nWhat?"}, {"role": "assistant", "content": "Fine."}], "ref")
    assert sample.input_ids.count(eot_id) == plain.input_ids.count(eot_id)  # as many as the template's own turns
    assert sample.input_ids.count(processor.image_token_id) == NUM_IMAGE_TOKENS  # the <image> tag stays the placeholder


def test_conversations_without_special_strings_tokenise_as_one_call(llama3_processor: Llama3MedProcessor) -> None:
    from llama3med.model.chat_encoding import encode_chat

    text = llama3_processor.render_chat(TWO_TURNS, add_generation_prompt=False)
    whole = llama3_processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert encode_chat(llama3_processor, TWO_TURNS).input_ids == whole


@pytest.mark.parametrize("which", ["llama3_processor", "smollm2_processor"])
def test_system_prompt_of_the_processor_is_sent_and_never_supervised(which: str, request: pytest.FixtureRequest) -> None:
    processor: Llama3MedProcessor = request.getfixturevalue(which)
    processor.system_prompt = "You are a careful biomedical assistant."
    try:
        sample = supervise(processor, TWO_TURNS[1:3], "rec-system")
        own = supervise(processor, TWO_TURNS[:3], "rec-own-system")  # a record's own system turn wins
    finally:
        processor.system_prompt = None
    text = processor.tokenizer.decode(sample.input_ids, clean_up_tokenization_spaces=False)
    assert text.count("careful biomedical assistant") == 1
    assert [processor.tokenizer.decode(s[:-1]) for s in supervised_spans(sample)] == [ASSISTANT_TEXTS[0]]
    own_text = processor.tokenizer.decode(own.input_ids, clean_up_tokenization_spaces=False)
    assert "careful radiology assistant" in own_text and "careful biomedical assistant" not in own_text
