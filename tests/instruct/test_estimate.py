"""Cost estimate before a run, and MedPix case context for the caption sample."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from llama3med.cli.instruct_commands import instruct_app
from llama3med.instruct.estimate import (
    TEMPLATE_TOKENS_PER_MESSAGE,
    KindEstimate,
    cost_for_records,
    estimate_kinds,
    measured_output_tokens,
    request_tokens,
)
from llama3med.instruct.generators import GeneratorSpec
from llama3med.instruct.medpix_context import attach_medpix_context
from llama3med.instruct.pricing import PriceTable
from llama3med.instruct.prompting import build_request, load_prompts
from llama3med.instruct.records import CaptionRecord, RecordError, read_records


def words(text: str) -> int:
    return len(text.split())


def test_estimate_uses_examples_or_measured_replies(tmp_path):
    templates = load_prompts(kinds=("closed_qa", "conversation"))
    records = [CaptionRecord("a", "a.png", "Axial CT of the head."), CaptionRecord("b", "b.png", "MRI " * 50)]
    estimates = {e.kind: e for e in estimate_kinds(records, templates, words)}
    closed = templates["closed_qa"]
    expected_prompt = sum(
        request_tokens(build_request(closed, r, max_tokens=1, temperature=None), words) for r in records
    ) / 2
    assert estimates["closed_qa"].input_tokens == pytest.approx(expected_prompt)
    assert estimates["closed_qa"].output_tokens == pytest.approx(
        sum(words(e.output) + 1 for e in closed.examples) / len(closed.examples)
    )
    request = build_request(closed, records[0], max_tokens=1, temperature=None)
    texts = [request.system, *(m["content"] for m in request.messages)]
    assert request_tokens(request, words) == 1 + sum(map(words, texts)) + TEMPLATE_TOKENS_PER_MESSAGE * len(texts)

    (tmp_path / "conversations.jsonl").write_text(
        "".join(
            json.dumps({"record_id": f"r{i}", "generator": "g", "kind": "conversation", "usage": {"input_tokens": 1, "output_tokens": n}}) + "\n"
            for i, n in enumerate([100, 300])
        )
    )
    measured = measured_output_tokens(tmp_path)
    assert measured == {"conversation": 200.0}
    estimates = {e.kind: e for e in estimate_kinds(records, templates, words, measured)}
    assert (estimates["conversation"].output_tokens, estimates["conversation"].output_source) == (200.0, "measured")
    assert estimates["closed_qa"].output_source == "few-shot examples"


def test_cost_for_records():
    estimates = [KindEstimate("a", 1, 1000.0, 200.0, "x"), KindEstimate("b", 1, 500.0, 20.0, "x")]
    opus = GeneratorSpec("opus", "anthropic", "claude-3-opus-20240229")
    # 10k records: 15M input x $15 + 2.2M output x $75 per million.
    assert cost_for_records(estimates, opus, PriceTable.from_file(), 10_000) == pytest.approx(225 + 165)
    llama = GeneratorSpec("llama", "openai", "meta-llama/Meta-Llama-3-70B-Instruct", base_url="http://h/v1")
    assert cost_for_records(estimates, llama, PriceTable.from_file(), 10_000) is None


@pytest.mark.skipif(importlib.util.find_spec("llama_models") is None, reason="Llama-3 tokenizer not installed")
def test_estimate_command_with_the_llama3_tokenizer(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "a", "image": "a.png", "caption": "Axial CT shows a liver lesion."}) + "\n")
    result = CliRunner().invoke(
        instruct_app, ["estimate", "--input", str(path), "-g", "anthropic-batch:claude-3-haiku-20240307", "--kind", "open_qa"]
    )
    assert result.exit_code == 0, result.output
    assert "open_qa" in result.output and "claude-3-haiku-20240307" in result.output and "$" in result.output


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
