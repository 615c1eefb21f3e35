"""MedPix case context for the caption sample (`llama3med.instruct.medpix_context`)."""

from __future__ import annotations

import json

import pytest

from llama3med.instruct.medpix_context import attach_medpix_context, case_context
from llama3med.instruct.records import RecordError, read_records


def test_medpix_context_from_the_real_case_reports(benchmarks_dir, tmp_path):
    sample = benchmarks_dir / "captions-sample"
    out = tmp_path / "with_context.jsonl"
    assert attach_medpix_context(sample / "captions.jsonl", sample / "original/medpix/data_test.jsonl", out) == (210, 200)
    records = {r.id: r for r in read_records(out)}
    cases = {json.loads(line)["U_id"]: json.loads(line)["Case"] for line in (sample / "original/medpix/data_test.jsonl").open()}
    first = json.loads((sample / "captions.jsonl").open().readline())
    context = records[first["id"]].context
    case = cases[first["case_id"]]
    assert context.startswith("History: " + " ".join(case["History"].split()))
    assert context.endswith("Diagnosis: " + " ".join(case["Case Diagnosis"].split()))
    medicat = [r for r in records.values() if r.id.startswith("medicat-")]
    assert len(medicat) == 10 and all(r.context is None for r in medicat)
    assert sum(len(r.mentions) for r in medicat) == 10  # MedICaT's inline references became mentions


def test_medpix_context_unknown_case_is_an_error(tmp_path):
    captions = tmp_path / "c.jsonl"
    captions.write_text(json.dumps({"id": "a", "image": "a.png", "caption": "c", "case_id": "MPX9"}) + "\n")
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps({"U_id": "MPX1", "Case": {"History": "h"}}) + "\n")
    with pytest.raises(RecordError, match=r"c\.jsonl:1: case_id 'MPX9' not in"):
        attach_medpix_context(captions, cases, tmp_path / "out.jsonl")


def test_case_context_keeps_the_filled_fields_in_order_with_whitespace_collapsed():
    case = {"Case Diagnosis": "Hemangioma", "Findings": " A   4 cm\nlesion. ", "History": "", "Exam": None}
    assert case_context(case) == "Findings: A 4 cm lesion.\nDiagnosis: Hemangioma"
    assert case_context({"History": "  "}) is None


def test_a_case_line_that_is_no_medpix_record_is_an_error(tmp_path):
    captions = tmp_path / "c.jsonl"
    captions.write_text(json.dumps({"id": "a", "image": "a.png", "caption": "c"}) + "\n")
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps({"Case": {"History": "h"}}) + "\n")
    with pytest.raises(RecordError, match=r"cases\.jsonl:1: not a MedPix case record"):
        attach_medpix_context(captions, cases, tmp_path / "out.jsonl")
