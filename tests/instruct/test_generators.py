"""Generator specs, the weighted draw, and the retry policy."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import datetime, timezone

import pytest

from llama3med.instruct.generators import (
    GeneratorSpec,
    GeneratorSpecError,
    choose_generator,
    parse_generator_option,
    resolve_generators,
)
from llama3med.instruct.retry import (
    FatalBackendError,
    RetriesExhausted,
    RetryPolicy,
    TransientError,
    call_with_retries,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("anthropic:claude-3-opus-20240229", ("anthropic:claude-3-opus-20240229", "anthropic", None, 1.0, False)),
        ("anthropic:claude-3-opus-20240229:2.5", ("anthropic:claude-3-opus-20240229", "anthropic", None, 2.5, False)),
        ("anthropic-batch:claude-3-opus-20240229:3", ("anthropic:claude-3-opus-20240229", "anthropic", None, 3.0, True)),
        ("openai:llama-3-70b@http://host:8000/v1", ("openai:llama-3-70b", "openai", "http://host:8000/v1", 1.0, False)),
        ("openai:llama-3-70b@http://host:8000/v1:4", ("openai:llama-3-70b", "openai", "http://host:8000/v1", 4.0, False)),
        ("openai:llama-3-70b@http://host:8000", ("openai:llama-3-70b", "openai", "http://host:8000", 1.0, False)),
        ("openai:llama3:70b@http://h/v1", ("openai:llama3:70b", "openai", "http://h/v1", 1.0, False)),
    ],
)
def test_inline_spec_syntax(text, expected):
    spec = parse_generator_option(text, {})
    assert (spec.name, spec.provider, spec.base_url, spec.weight, spec.batch) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gemini:pro", "PROVIDER one of anthropic, anthropic-batch, openai"),
        ("openai:", "missing model name"),
        ("openai:m@ftp://host/v1", "must start with http:// or https://"),
        ("anthropic:m:0", "weight must be positive"),
    ],
)
def test_bad_specs_are_explained(text, message):
    with pytest.raises(GeneratorSpecError, match=message):
        parse_generator_option(text, {})


def test_generators_file_names_weights_and_defaults(tmp_path):
    path = tmp_path / "generators.yaml"
    path.write_text(
        "generators:\n"
        "  claude-opus:\n    provider: anthropic\n    model: claude-3-opus-20240229\n    weight: 1\n"
        "  llama3-70b:\n    provider: openai\n    model: meta-llama/Meta-Llama-3-70B-Instruct\n"
        "    base_url: http://gpu:8000/v1\n    api_key_env: VLLM_KEY\n    concurrency: 32\n"
    )
    specs = resolve_generators([], path, {"concurrency": 4, "timeout": 60.0})
    assert [(s.name, s.concurrency, s.timeout, s.key_env) for s in specs] == [
        ("claude-opus", 4, 60.0, "ANTHROPIC_API_KEY"),
        ("llama3-70b", 32, 60.0, "VLLM_KEY"),
    ]
    picked = resolve_generators(["llama3-70b:3", "anthropic:claude-3-haiku-20240307"], path)
    assert [(s.name, s.weight) for s in picked] == [("llama3-70b", 3.0), ("anthropic:claude-3-haiku-20240307", 1.0)]
    path.write_text("generators:\n  x:\n    provider: openai\n    model: m\n    colour: red\n")
    with pytest.raises(GeneratorSpecError, match=r"generator 'x': unknown field\(s\) \['colour'\]"):
        resolve_generators([], path)


def test_same_name_twice_and_batch_for_openai_are_refused(tmp_path):
    with pytest.raises(GeneratorSpecError, match="used twice: openai:m"):
        resolve_generators(["openai:m@http://a/v1", "openai:m@http://b/v1"], None)
    path = tmp_path / "g.yaml"
    path.write_text("generators:\n  x:\n    provider: openai\n    model: m\n    batch: true\n")
    with pytest.raises(GeneratorSpecError, match="batch mode exists for anthropic only"):
        resolve_generators([], path)


def test_weighted_draw_is_deterministic_and_follows_weights():
    specs = [GeneratorSpec("claude", "anthropic", "c", weight=1.0), GeneratorSpec("llama", "openai", "l", weight=3.0)]
    draws = [choose_generator(specs, f"rec-{i}", seed=0).name for i in range(4000)]
    share = Counter(draws)["llama"] / len(draws)
    assert 0.72 < share < 0.78
    assert draws == [choose_generator(specs, f"rec-{i}", seed=0).name for i in range(4000)]
    assert draws != [choose_generator(specs, f"rec-{i}", seed=1).name for i in range(4000)]


def test_retry_after_parsing():
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "7"}) == 0.25
    now = datetime(2024, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after({"retry-after": "Sat, 01 Jun 2024 12:00:30 GMT"}, now) == 30.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_doubles_with_jitter_and_honours_retry_after():
    policy = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=8.0, max_retry_after=20.0)
    rng = random.Random(0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0)]:
        delays = [policy.delay(attempt, None, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert len(set(delays)) > 150  # jittered
    assert policy.delay(1, 12.0, rng) == 12.0
    assert policy.delay(1, 600.0, rng) == 20.0  # capped


def test_call_with_retries_counts_attempts_and_stops_on_fatal():
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("HTTP 503")
        return "done"

    retries: list[int] = []
    assert asyncio.run(call_with_retries(flaky, policy, random.Random(0), lambda a, e, d: retries.append(a))) == "done"
    assert retries == [1, 2]

    async def always_down() -> str:
        raise TransientError("HTTP 500")

    with pytest.raises(RetriesExhausted, match="failed after 3 attempt"):
        asyncio.run(call_with_retries(always_down, policy, random.Random(0)))

    fatal_calls: list[int] = []

    async def unauthorised() -> str:
        fatal_calls.append(1)
        raise FatalBackendError("HTTP 401")

    with pytest.raises(FatalBackendError):
        asyncio.run(call_with_retries(unauthorised, policy, random.Random(0)))
    assert fatal_calls == [1]
