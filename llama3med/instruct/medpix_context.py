"""Attach MedPix case-report context to caption records (the caption sample's MedPix part).

`captions.jsonl` rows carry `case_id`; `original/medpix/data_test.jsonl` holds each case's report. The
context given to the LLM is the case's history, exam, findings and diagnosis — what a radiologist
knows when reading the image. Rows without a `case_id` (MedICaT) pass through unchanged.
"""

from __future__ import annotations

from pathlib import Path

from llama3med.instruct.records import RecordError
from llama3med.io.jsonl import read_jsonl, write_jsonl

CONTEXT_FIELDS = (("History", "History"), ("Exam", "Exam"), ("Findings", "Findings"), ("Case Diagnosis", "Diagnosis"))


def case_context(case: dict[str, object]) -> str | None:
    """The context text of one MedPix case (`Case` object), or None when every field is empty."""
    parts = []
    for field, label in CONTEXT_FIELDS:
        value = case.get(field)
        if isinstance(value, str) and value.strip():
            parts.append(f"{label}: {' '.join(value.split())}")
    return "\n".join(parts) or None


def attach_medpix_context(captions_path: Path, cases_path: Path, out_path: Path) -> tuple[int, int]:
    """Write `out_path`: the caption rows with `context` added from their case; returns (rows, with context)."""
    contexts: dict[str, str | None] = {}
    for line_number, case in read_jsonl(cases_path, RecordError):
        try:
            contexts[case["U_id"]] = case_context(case.get("Case") or {})
        except (KeyError, TypeError) as error:
            raise RecordError(f"{cases_path}:{line_number}: not a MedPix case record ({error})") from None
    with_context = 0
    rows = []
    for line_number, row in read_jsonl(captions_path, RecordError):
        case_id = row.get("case_id")
        if case_id is not None:
            if case_id not in contexts:
                raise RecordError(f"{captions_path}:{line_number}: case_id {case_id!r} not in {cases_path}")
            if contexts[case_id]:
                row["context"] = contexts[case_id]
                with_context += 1
        rows.append(row)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_path, rows)
    return len(rows), with_context
