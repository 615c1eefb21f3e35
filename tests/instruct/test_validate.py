"""Parsing replies, rejection reasons and the LLaVA format (`llama3med.instruct.validate`)."""

from __future__ import annotations

import pytest

from llama3med.instruct.prompting import load_prompts
from llama3med.instruct.records import CaptionRecord
from llama3med.instruct.validate import Rejection, Turn, check_reply, find_leak, to_llava

TEMPLATES = load_prompts()
CONVERSATION = TEMPLATES["conversation"]
CLOSED = TEMPLATES["closed_qa"]
DESCRIPTION = TEMPLATES["detailed_description"]


def reason_of(text: str, template=CONVERSATION, truncated: bool = False, question: str | None = None) -> str:
    with pytest.raises(Rejection) as raised:
        check_reply(text, truncated, template, question)
    return raised.value.reason


def test_tolerant_parsing_of_marker_styles():
    text = (
        "Here is the conversation:\n\n"
        "**Question 1:** What kind of scan is this?\n**Answer:** An axial CT\nof the abdomen.\n"
        "2. Q: Is there free fluid?\n   A: No, there is none.\n"
    )
    assert check_reply(text, False, CONVERSATION) == [
        Turn("What kind of scan is this?", "An axial CT of the abdomen."),
        Turn("Is there free fluid?", "No, there is none."),
    ]


def test_a_line_starting_with_a_word_is_not_a_marker():
    text = "Question: Which lines are seen?\nAnswer: A-lines are present.\nA 3 cm cyst lies nearby.\nQuestion: Is there a pneumothorax?\nAnswer: No."
    turns = check_reply(text, False, CONVERSATION)
    assert turns[0].answer == "A-lines are present. A 3 cm cyst lies nearby."


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("   \n", "empty"),
        ("No markers here at all.", "malformed"),
        ("Question: One?\nAnswer: Yes.", "malformed"),  # a conversation needs 2 pairs
        ("Question: One?\nQuestion: Two?\nAnswer: Yes.\nAnswer: No.", "malformed"),
        ("Answer: Yes.\nQuestion: Why?", "malformed"),
        ("Question: What is seen?\nAnswer:\nQuestion: Size?\nAnswer: 3 cm.", "malformed"),
        ("Question: What does the caption describe?\nAnswer: A mass.\nQuestion: Size?\nAnswer: 3 cm.", "source_leak"),
        ("Question: What is seen?\nAnswer: As mentioned in the text, a mass.\nQuestion: Size?\nAnswer: 3 cm.", "source_leak"),
        ("Question: What is seen?\nAnswer: According to the report, a mass.\nQuestion: Size?\nAnswer: 3 cm.", "source_leak"),
        ("Question: What is seen?\nAnswer: I cannot see the image, but a mass.\nQuestion: Size?\nAnswer: 3 cm.", "source_leak"),
        ("Question: What is seen?\nAnswer: " + "word " * 151 + "\nQuestion: Size?\nAnswer: 3 cm.", "answer_too_long"),
    ],
)
def test_rejection_reasons(text, reason):
    assert reason_of(text) == reason


def test_truncated_and_closed_answer_limit():
    assert reason_of("Question: a?\nAnswer: b\nQuestion: c?\nAnswer: d", truncated=True) == "truncated"
    assert reason_of("Question: Is the heart enlarged?\nAnswer: No, it is of normal size here.", CLOSED) == "answer_too_long"
    assert check_reply("Question: Is the heart enlarged?\nAnswer: No", False, CLOSED) == [Turn("Is the heart enlarged?", "No")]


def test_description_is_one_answer_to_the_chosen_question():
    turns = check_reply("Answer: This axial CT shows a mass.", False, DESCRIPTION, "Describe this image.")
    assert turns == [Turn("Describe this image.", "This axial CT shows a mass.")]
    assert reason_of("Question: What?\nAnswer: X", DESCRIPTION, question="Describe.") == "malformed"


@pytest.mark.parametrize(
    "clean",
    [
        "The report of a fracture was confirmed clinically.",  # 'report' not as a source
        "The lesion enhances after contrast, as described in the literature for hemangiomas.",
        "The text-book appearance of a hemangioma.",
    ],
)
def test_medical_text_without_source_reference_is_not_a_leak(clean):
    assert find_leak([Turn("What is seen?", clean)]) is None


def test_llava_format():
    record = CaptionRecord("r1", "pmc/r1.png", "c")
    entry = to_llava(record, [Turn("Q1?", "A1."), Turn("Q2?", "A2.")], "anthropic:claude", "conversation")
    assert entry == {
        "id": "r1:conversation:anthropic:claude",
        "image": "pmc/r1.png",
        "conversations": [
            {"from": "human", "value": "<image>\nQ1?"},
            {"from": "gpt", "value": "A1."},
            {"from": "human", "value": "Q2?"},
            {"from": "gpt", "value": "A2."},
        ],
    }
