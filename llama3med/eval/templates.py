"""Prompt templates per answer type, kept as text files (`prompts/closed.txt`, `prompts/open.txt`) so that
the exact wording is versioned, overridable (`--prompts DIR`) and recorded with its sha256 in every report.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from llama3med.eval.benchmarks import Question
from llama3med.eval.metrics import CLOSED, OPEN

PLACEHOLDER = "{question}"
TEMPLATE_FILES = {CLOSED: "closed.txt", OPEN: "open.txt"}


@dataclass(frozen=True)
class PromptTemplates:
    """The template text per answer type and the folder it was read from."""

    texts: dict[str, str]
    source: str

    @classmethod
    def load(cls, folder: str | Path | None = None) -> PromptTemplates:
        """Read `closed.txt` and `open.txt` from `folder` (default: the packaged `llama3med/eval/prompts`).

        Each must contain `{question}` exactly once; nothing else in it is interpreted.
        """
        base = Path(folder) if folder is not None else resources.files("llama3med.eval") / "prompts"
        texts = {}
        for answer_type, name in TEMPLATE_FILES.items():
            path = base / name
            if not path.is_file():
                raise FileNotFoundError(f"prompt template {path} not found (a prompts folder needs {' and '.join(TEMPLATE_FILES.values())})")
            text = path.read_text(encoding="utf-8")
            if text.count(PLACEHOLDER) != 1:
                raise ValueError(f"prompt template {path} must contain {PLACEHOLDER} exactly once, found {text.count(PLACEHOLDER)}")
            texts[answer_type] = text
        return cls(texts, str(base))

    def render(self, question: Question) -> str:
        """The prompt for one question: its answer type's template with the question filled in (trailing
        whitespace of the file dropped)."""
        return self.texts[question.answer_type].rstrip().replace(PLACEHOLDER, question.question)

    def describe(self) -> dict[str, object]:
        """Template texts and their sha256, for reports."""
        return {
            "source": self.source,
            **{
                answer_type.lower(): {"file": TEMPLATE_FILES[answer_type], "text": text, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
                for answer_type, text in self.texts.items()
            },
        }
