"""Retries for provider calls: exponential backoff with jitter, honouring retry-after.

The SDKs' own retries are switched off (`max_retries=0`) so that this is the only retry policy:
backends raise `TransientError` for what is worth retrying (429, 408, 409, 5xx, timeouts, dropped
connections, unreadable responses) and `FatalBackendError` for what is not (401, 403 and other 4xx).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TypeVar

T = TypeVar("T")


class TransientError(Exception):
    """A failure that may pass: retry after `retry_after` seconds if the server said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalBackendError(Exception):
    """A failure that retrying cannot fix (bad key, no permission, unknown model, bad request)."""


class RetriesExhausted(Exception):
    """Every attempt failed with a transient error; `last_error` is the final one."""

    def __init__(self, attempts: int, last_error: TransientError) -> None:
        super().__init__(f"failed after {attempts} attempt(s): {last_error}")
        self.attempts = attempts
        self.last_error = last_error


@dataclass(frozen=True)
class RetryPolicy:
    """Attempt `n` (1-based) that failed waits a random time in [d/2, d], d = min(max, base * 2^(n-1)),
    or the server's retry-after if that is longer (capped at `max_retry_after`)."""

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError(f"invalid retry policy {self}: attempts >= 1 and delays >= 0 required")

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt`."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        backoff = rng.uniform(ceiling / 2, ceiling)
        if retry_after is None:
            return backoff
        return max(backoff, min(retry_after, self.max_retry_after))


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds from `retry-after-ms`, or `retry-after` as seconds or an HTTP date; None if absent."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    rng: random.Random,
    on_retry: Callable[[int, TransientError, float], None] | None = None,
) -> T:
    """Await `call()` until it succeeds, retrying `TransientError` per `policy`.

    `FatalBackendError` and any other exception propagate at once. `on_retry(attempt, error, delay)` is
    told about each retry (for logs and counters).
    """
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return await call()
        except TransientError as error:
            if attempt == policy.max_attempts:
                raise RetriesExhausted(attempt, error) from error
            delay = policy.delay(attempt, error.retry_after, rng)
            if on_retry is not None:
                on_retry(attempt, error, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")
