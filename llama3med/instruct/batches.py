"""Anthropic Message Batches for bulk jobs (half the price, results within 24 h).

Requests are submitted in batches of at most `batch_size`; each submitted batch id is appended to
`batches.jsonl` in the output folder at once, with the (record id, kind) of each request. A rerun first
collects every batch that was submitted but not yet collected — a killed job never pays twice for a
batch whose id was written. (The one window left: a kill between the API accepting a batch and its id
reaching the disk; that batch is then submitted again and the first result stored wins.)
Per-request errors, expiries and cancellations are logged to `failures.jsonl` and retried next run.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama3med.instruct.backends import AnthropicBackend
from llama3med.instruct.prompting import ChatRequest
from llama3med.instruct.records import CaptionRecord
from llama3med.instruct.results import ResultSink, Task
from llama3med.instruct.retry import RetryPolicy, call_with_retries
from llama3med.instruct.store import JsonlAppender, ResultKey, read_jsonl

BATCHES_FILE = "batches.jsonl"
log = logging.getLogger(__name__)


def custom_id(key: ResultKey) -> str:
    """A batch `custom_id` (letters, digits, `_-`, at most 64) derived from the result key."""
    digest = hashlib.sha256("\x1f".join((key.record_id, key.generator, key.kind)).encode("utf-8"))
    return "r" + digest.hexdigest()[:40]


def open_batches(path: Path, generator: str) -> dict[str, dict[str, list[str]]]:
    """Batches of `generator` submitted but not collected: batch id -> {custom_id: [record_id, kind]}."""
    submitted: dict[str, dict[str, list[str]]] = {}
    for event in read_jsonl(path):
        if event.get("generator") != generator:
            continue
        if event.get("event") == "submitted":
            submitted[event["batch_id"]] = event["requests"]
        elif event.get("event") == "collected":
            submitted.pop(event["batch_id"], None)
    return submitted


@dataclass
class BatchRunner:
    """Runs the tasks of one Anthropic generator through Message Batches."""

    backend: AnthropicBackend
    out_dir: Path
    sink: ResultSink
    make_request: Callable[[Task], ChatRequest]
    policy: RetryPolicy
    rng: random.Random
    poll_interval: float
    batch_size: int

    @property
    def state_path(self) -> Path:
        """`batches.jsonl`: the batches submitted and collected, in order."""
        return self.out_dir / BATCHES_FILE

    async def _api(self, call: Callable[[], Any]) -> Any:
        async def mapped() -> Any:
            try:
                return await call()
            except Exception as error:
                self.backend.errors.raise_mapped(error)

        return await call_with_retries(mapped, self.policy, self.rng)

    async def run(self, tasks: list[Task], records: dict[str, CaptionRecord]) -> None:
        """Collect open batches from earlier runs, then submit and collect the remaining tasks."""
        spec = self.backend.spec
        state = JsonlAppender(self.state_path)
        try:
            pending = {custom_id(task.key): task for task in tasks}
            for batch_id, requests in open_batches(self.state_path, spec.name).items():
                batch_tasks = {}
                for cid, (record_id, kind) in requests.items():
                    pending.pop(cid, None)
                    if record_id in records and kind in self.sink.templates:
                        batch_tasks[cid] = Task(records[record_id], spec, kind)
                log.info("collecting batch %s from an earlier run (%d requests)", batch_id, len(requests))
                await self._collect(batch_id, batch_tasks, state)
            submitted = []
            remaining = list(pending.items())
            for start in range(0, len(remaining), self.batch_size):
                chunk = dict(remaining[start : start + self.batch_size])
                submitted.append((await self._submit(chunk, state), chunk))
            for batch_id, chunk in submitted:
                await self._collect(batch_id, chunk, state)
        finally:
            state.close()

    async def _submit(self, tasks: dict[str, Task], state: JsonlAppender) -> str:
        requests = [
            {"custom_id": cid, "params": self.backend.request_params(self.make_request(task))}
            for cid, task in tasks.items()
        ]
        batch = await self._api(lambda: self.backend.client.messages.batches.create(requests=requests))
        state.append(
            {
                "event": "submitted",
                "batch_id": batch.id,
                "generator": self.backend.spec.name,
                "requests": {cid: [task.record.id, task.kind] for cid, task in tasks.items()},
            }
        )
        log.info("submitted batch %s with %d requests", batch.id, len(requests))
        return batch.id

    async def _collect(self, batch_id: str, tasks: dict[str, Task], state: JsonlAppender) -> None:
        batches = self.backend.client.messages.batches
        while True:
            batch = await self._api(lambda: batches.retrieve(batch_id))
            if batch.processing_status == "ended":
                break
            await asyncio.sleep(self.poll_interval)

        handled: set[str] = set()

        async def read_results() -> None:
            async for entry in await batches.results(batch_id):
                task = tasks.get(entry.custom_id)
                if task is None or entry.custom_id in handled:
                    continue
                handled.add(entry.custom_id)
                result = entry.result
                if result.type == "succeeded":
                    self.sink.accept(task, self.backend.completion_from_message(result.message))
                elif task.key not in self.sink.done:
                    error = getattr(getattr(result, "error", None), "error", None)
                    detail = f": {getattr(error, 'type', '')} {getattr(error, 'message', '')}" if error else ""
                    self.sink.fail(task, f"batch {batch_id}: request {result.type}{detail}", attempts=1)

        # Re-reading after a dropped stream is safe: entries already handled are skipped.
        await self._api(read_results)
        for cid, task in tasks.items():
            if cid not in handled and task.key not in self.sink.done:
                self.sink.fail(task, f"batch {batch_id}: no result for this request", attempts=1)
        state.append({"event": "collected", "batch_id": batch_id, "generator": self.backend.spec.name})
