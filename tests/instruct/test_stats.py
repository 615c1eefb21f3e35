"""The `instruct stats` report (`llama3med.instruct.stats`) over a hand-written output folder."""

from __future__ import annotations

import json
import re

import pytest
from rich.console import Console

from llama3med.instruct.pricing import Price, PriceTable
from llama3med.instruct.stats import Distribution, compute_stats, render_stats
from llama3med.instruct.store import CONVERSATIONS_FILE, FAILURES_FILE, REJECTS_FILE


def test_distribution():
    assert Distribution.of([5, 1, 3, 2, 4]) == Distribution(5, 1, 3.0, pytest.approx(4.6), 5)
    assert Distribution.of([]) == Distribution(0, 0, 0.0, 0.0, 0)


def write_folder(folder, accepted, rejected, failures):
    for name, entries in ((CONVERSATIONS_FILE, accepted), (REJECTS_FILE, rejected), (FAILURES_FILE, failures)):
        (folder / name).write_text("".join(json.dumps(e) + "\n" for e in entries))
    return folder


def result(record_id, kind, generator, answers=(), tokens=(0, 0), provider="anthropic", model="claude-3-opus", batch=False):
    turns = [t for answer in answers for t in ({"from": "human", "value": "Q?"}, {"from": "gpt", "value": answer})]
    return {"record_id": record_id, "kind": kind, "generator": generator, "provider": provider, "model": model,
            "batch": batch, "conversations": turns, "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]}}


def test_counts_lengths_usage_and_cost(tmp_path):
    accepted = [
        result("a", "conversation", "claude", ["one two three", "four five"], (1000, 100)),
        result("b", "open_qa", "claude", ["six"], (500, 10), batch=True),
        result("c", "open_qa", "llama", ["seven eight"], (200, 20), provider="openai", model="llama-3-70b"),
    ]
    rejected = [{**result("d", "open_qa", "claude", tokens=(300, 30)), "reason": "source_leak"}]
    failures = [{"record_id": "e", "kind": "open_qa", "generator": "claude"},
                {"record_id": "a", "kind": "conversation", "generator": "claude"}]  # failed once, then done
    prices = PriceTable((Price("anthropic:*", 10.0, 100.0, 0.5),))
    stats = compute_stats(write_folder(tmp_path, accepted, rejected, failures), prices)
    assert stats.accepted == {"claude": {"conversation": 1, "open_qa": 1}, "llama": {"open_qa": 1}}
    assert stats.rejected == {"claude": {"open_qa": 1}}
    assert stats.rejected_by_reason == {"source_leak": 1}
    assert stats.pending_failures == 1
    assert stats.answer_words == {"conversation": Distribution(2, 2, 2.5, pytest.approx(2.9), 3),
                                  "open_qa": Distribution(2, 1, 1.5, pytest.approx(1.9), 2)}
    assert stats.turns["conversation"] == Distribution(1, 2, 2.0, 2.0, 2)
    claude = stats.usage["claude"]
    assert (claude.results, claude.input_tokens, claude.output_tokens) == (3, 1800, 140)
    # per million: (1000 x 10 + 100 x 100) + half of (500 x 10 + 10 x 100) + (300 x 10 + 30 x 100)
    assert claude.cost_usd == pytest.approx((20_000 + 3_000 + 6_000) / 1e6)
    assert stats.usage["llama"].cost_usd is None  # no price for the model

    console = Console(width=200, record=True)
    render_stats(stats, console)
    text = console.export_text()
    assert "source_leak" in text and "no price" in text and "$0.03" in text
    assert re.search(r"1 request\(s\) failed after every retry", text)


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="output folder not found"):
        compute_stats(tmp_path / "missing", PriceTable(()))
