"""The retry policy (`llama3med.instruct.retry`): Retry-After headers, jittered exponential backoff, and which
errors are retried."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timezone

import pytest

from llama3med.instruct.retry import (
    FatalBackendError,
    RetriesExhausted,
    RetryPolicy,
    TransientError,
    call_with_retries,
    parse_retry_after,
)


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


def test_a_date_in_the_past_is_zero_and_a_bad_millisecond_value_falls_back():
    now = datetime(2024, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after({"retry-after": "Sat, 01 Jun 2024 11:00:00 GMT"}, now) == 0.0
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "-5"}) == 0.0


@pytest.mark.parametrize("settings", [{"max_attempts": 0}, {"base_delay": -1.0}, {"max_retry_after": -0.5}])
def test_invalid_policies_are_refused(settings):
    with pytest.raises(ValueError, match="attempts >= 1 and delays >= 0 required"):
        RetryPolicy(**settings)
