"""Prompt files and the requests built from them (`llama3med.instruct.prompting`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama3med.instruct.prompting import (
    KINDS,
    PromptFileError,
    build_request,
    human_question,
    load_prompt_file,
    load_prompts,
    render_source,
)
from llama3med.instruct.records import CaptionRecord
from llama3med.instruct.validate import check_reply


def test_packaged_prompts_load_and_their_examples_pass_validation():
    templates = load_prompts()
    assert set(templates) == set(KINDS)
    for kind, template in templates.items():
        assert len(template.examples) >= 2, kind
        for example in template.examples:
            question = template.questions[0] if template.output_format == "answer" else None
            turns = check_reply(example.output, False, template, question)
            assert template.min_turns <= len(turns) <= template.max_turns


def test_request_has_examples_as_turns_and_the_record_last():
    template = load_prompts(kinds=("conversation",))["conversation"]
    record = CaptionRecord("r", "r.png", "Axial CT shows X.", ("Figure 2 shows X.",), "A 50-year-old man.")
    request = build_request(template, record, max_tokens=300, temperature=None)
    roles = [m["role"] for m in request.messages]
    assert roles == ["user", "assistant"] * len(template.examples) + ["user"]
    last = request.messages[-1]["content"]
    assert "Image caption: Axial CT shows X." in last
    assert "- Figure 2 shows X." in last and "Clinical context:\nA 50-year-old man." in last
    assert request.system == template.system and request.max_tokens == 300


def test_long_source_is_cut_but_keeps_the_caption():
    record = CaptionRecord("r", "r.png", "Short caption.", (), "word " * 5000)
    text = render_source(record, 500)
    assert 490 < len(text) <= 500 and text.startswith("Image caption: Short caption.") and text.endswith("…")


def test_description_question_is_fixed_by_seed_and_record():
    template = load_prompts(kinds=("detailed_description",))["detailed_description"]
    picks = {human_question(template, f"id-{i}", seed=0) for i in range(200)}
    assert picks == set(template.questions)  # every question gets used
    assert human_question(template, "id-7", 0) == human_question(template, "id-7", 0)
    assert [human_question(template, f"id-{i}", 0) for i in range(20)] != [
        human_question(template, f"id-{i}", 1) for i in range(20)
    ]


def test_prompt_file_errors_name_file_and_field(tmp_path):
    source = (Path(load_prompts(kinds=("open_qa",))["open_qa"].path)).read_text()
    broken = tmp_path / "open_qa.yaml"
    broken.write_text(source.replace("user_template: |\n  {source}", "user_template: |\n  no placeholder"))
    with pytest.raises(PromptFileError, match=r"open_qa\.yaml: user_template must contain the placeholder \{source\}"):
        load_prompt_file(broken)
    broken.write_text(source.replace("scope: image", "scope: everywhere"))
    with pytest.raises(PromptFileError, match=r"dedup\.scope must be 'global' or 'image', got 'everywhere'"):
        load_prompt_file(broken)
    with pytest.raises(PromptFileError, match=r"prompt file for kind 'conversation' not found"):
        load_prompts(tmp_path, kinds=("conversation",))
