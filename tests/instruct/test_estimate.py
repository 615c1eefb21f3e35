"""Token and cost estimates before a run (`llama3med.instruct.estimate`)."""

from __future__ import annotations

import json

import pytest

from llama3med.instruct.estimate import (
    TEMPLATE_TOKENS_PER_MESSAGE,
    KindEstimate,
    cost_for_records,
    estimate_kinds,
    measured_output_tokens,
    request_tokens,
)
from llama3med.instruct.generators import GeneratorSpec
from llama3med.instruct.pricing import PriceTable
from llama3med.instruct.prompting import build_request, load_prompts
from llama3med.instruct.records import CaptionRecord


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
