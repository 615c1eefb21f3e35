"""Prompt templates per answer type (`llama3med.eval.templates`): the packaged files, a folder of one's own,
rendering, the sha256 recorded in reports, and refused folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from llama3med.eval.benchmarks import Question
from llama3med.eval.metrics import CLOSED, OPEN
from llama3med.eval.templates import PromptTemplates

CLOSED_QUESTION = Question("q1", Path("a.png"), "Is there a nodule?", "yes", CLOSED)
OPEN_QUESTION = Question("q2", Path("a.png"), "Which organ is shown?", "liver", OPEN)


def test_packaged_templates_give_the_format_instruction_after_the_question():
    templates = PromptTemplates.load()
    assert Path(templates.source).name == "prompts" and set(templates.texts) == {CLOSED, OPEN}
    assert templates.render(CLOSED_QUESTION) == (
        'Is there a nodule?\nAnswer with "yes" or "no". If the question offers options, answer with one of them.'
    )
    assert templates.render(OPEN_QUESTION) == "Which organ is shown?\nAnswer with a single word or phrase."


def test_a_folder_of_ones_own_and_its_description(tmp_path):
    (tmp_path / "closed.txt").write_text("Q: {question} (yes/no)\n\n")
    (tmp_path / "open.txt").write_text("Question: {question}\nShort answer:")
    templates = PromptTemplates.load(tmp_path)
    assert templates.render(CLOSED_QUESTION) == "Q: Is there a nodule? (yes/no)"  # trailing whitespace dropped
    assert templates.render(OPEN_QUESTION) == "Question: Which organ is shown?\nShort answer:"
    described = templates.describe()
    assert described["source"] == str(tmp_path)
    assert described["closed"] == {
        "file": "closed.txt", "text": "Q: {question} (yes/no)\n\n",
        "sha256": hashlib.sha256(b"Q: {question} (yes/no)\n\n").hexdigest(),
    }
    assert described["open"]["sha256"] != described["closed"]["sha256"]


def test_a_question_text_with_braces_is_pasted_verbatim(tmp_path):
    (tmp_path / "closed.txt").write_text("{question}")
    (tmp_path / "open.txt").write_text("{question} {answer}")  # only {question} is interpreted
    odd = Question("q3", Path("a.png"), "Is {x} > 2?", "x", OPEN)
    assert PromptTemplates.load(tmp_path).render(odd) == "Is {x} > 2? {answer}"


def test_refused_folders(tmp_path):
    (tmp_path / "closed.txt").write_text("{question}")
    with pytest.raises(FileNotFoundError, match=r"open\.txt not found \(a prompts folder needs closed\.txt and open\.txt\)"):
        PromptTemplates.load(tmp_path)
    (tmp_path / "open.txt").write_text("{question} and again {question}")
    with pytest.raises(ValueError, match=r"open\.txt must contain \{question\} exactly once, found 2"):
        PromptTemplates.load(tmp_path)
    (tmp_path / "open.txt").write_text("no placeholder")
    with pytest.raises(ValueError, match="found 0"):
        PromptTemplates.load(tmp_path)
