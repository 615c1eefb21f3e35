"""The shell commands of README.md and docs/*.md, as a reader would copy them: every line of a ```bash / sh /
shell / console fence, joined over `\\` continuations and over quotes that span lines, comment-only lines left
out. `tests/test_docs_commands.py` classifies each one and runs those that run on a CPU."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHELL_FENCES = ("bash", "sh", "shell", "console")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


@dataclass(frozen=True)
class DocCommand:
    """One documented command: where it is, its text as written (comments kept, for bash to run) and its key
    (comments dropped, whitespace and continuations collapsed: what the classification table names)."""

    doc: str
    line: int
    text: str
    key: str


def strip_comments(text: str) -> tuple[str, bool]:
    """`text` without shell comments, and whether it is a complete command (no open quote, no trailing `\\`).
    A `#` starts a comment only outside quotes and at the start of a word, as in bash."""
    out: list[str] = []
    quote: str | None = None
    index = 0
    while index < len(text):
        char = text[index]
        if quote == "'":
            quote = None if char == "'" else quote
        elif char == "\\" and index + 1 < len(text):
            out.append(text[index : index + 2])
            index += 2
            continue
        elif quote == '"':
            quote = None if char == '"' else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1].isspace()):
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            continue
        out.append(char)
        index += 1
    code = "".join(out)
    return code, quote is None and not code.rstrip(" \t").endswith("\\")


def command_key(code: str) -> str:
    return re.sub(r"\s+", " ", code.replace("\\\n", " ")).strip()


def commands_in(markdown: str, doc: str) -> list[DocCommand]:
    """The commands of one Markdown text (`doc` names it in the results)."""
    commands: list[DocCommand] = []
    fence: str | None = None
    shell = False
    pending: list[str] = []
    start = 0
    for number, line in enumerate(markdown.splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence, shell = match.group(2), match.group(3).lower() in SHELL_FENCES
            continue
        if match and match.group(2).startswith(fence) and not match.group(3):
            if pending:
                raise ValueError(f"{doc}:{start}: the command is not finished when its block ends")
            fence = None
            continue
        if not shell or (not pending and (not line.strip() or line.strip().startswith("#"))):
            continue
        if not pending:
            start = number
        pending.append(line)
        code, complete = strip_comments("\n".join(pending))
        if complete:
            commands.append(DocCommand(doc, start, "\n".join(pending).strip(), command_key(code)))
            pending = []
    return commands


def documented_commands() -> list[DocCommand]:
    """Every command of README.md and docs/*.md, in file order."""
    docs = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    return [c for path in docs for c in commands_in(path.read_text(encoding="utf-8"), str(path.relative_to(REPO_ROOT)))]
