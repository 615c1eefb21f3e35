"""Load: 16 concurrent clients for 30 s against `llama3med serve` (tiny): every request answered, no 5xx,
resident memory flat after warm-up."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import openai
import pytest
from serve_helpers import API_KEY, data_url, image_message

CLIENTS = 16


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def hammer(server, urls: list[str], seconds: float) -> tuple[Counter, list[str]]:
    """CLIENTS threads send requests (every fourth one streamed) back to back for `seconds`."""
    outcomes: Counter = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client_loop(index: int) -> None:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key=API_KEY, max_retries=0, timeout=120)
        n = 0
        while time.monotonic() < deadline:
            messages = [image_message(urls[(index + n) % len(urls)], f"Question {index}-{n}: what is shown?")]
            try:
                if n % 4 == 3:
                    stream = client.chat.completions.create(model=server.model_name, messages=messages, max_tokens=12, stream=True)
                    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
                    finished = True
                else:
                    response = client.chat.completions.create(model=server.model_name, messages=messages, max_tokens=12)
                    text = response.choices[0].message.content
                    finished = response.usage.completion_tokens > 0
                with lock:
                    outcomes["ok" if finished and text is not None else "empty"] += 1
            except openai.APIStatusError as error:
                with lock:
                    outcomes[error.status_code] += 1
                    failures.append(f"{error.status_code}: {error.body}")
            except Exception as error:  # connection errors, timeouts
                with lock:
                    outcomes[type(error).__name__] += 1
                    failures.append(repr(error))
            n += 1

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, failures


@pytest.mark.slow  # 36 s by design (6 s warm-up + 30 s); keeps the area's default suite short
def test_sixteen_clients_for_thirty_seconds(server, images) -> None:
    urls = [data_url(path.read_bytes()) for path in images.values()]
    warm, warm_failures = hammer(server, urls, seconds=6)
    assert warm_failures == [] and warm["ok"] > 0, warm
    rss_after_warm_up = resident_kib(server.process.pid)
    before = httpx.get(f"{server.base_url}/health").json()

    outcomes, failures = hammer(server, urls, seconds=30)

    rss_at_end = resident_kib(server.process.pid)
    after = httpx.get(f"{server.base_url}/health").json()
    assert failures == [], failures[:5]
    assert set(outcomes) == {"ok"} and outcomes["ok"] >= CLIENTS, outcomes
    assert server.process.poll() is None
    assert rss_at_end <= rss_after_warm_up * 1.10, (rss_after_warm_up, rss_at_end)
    # Dynamic batching really happened: fewer generate calls than requests.
    calls = after["generate_calls"] - before["generate_calls"]
    answered = after["requests_answered"] - before["requests_answered"]
    assert answered >= outcomes["ok"] and calls < answered / 2, (calls, answered)
