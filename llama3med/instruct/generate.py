"""The generation job: records x kinds, each record sent to one generator drawn by weight.

Per generator, `concurrency` workers take tasks from a queue (bounded concurrency); every call goes
through `retry.call_with_retries`. A fatal error (401, 403, other 4xx, missing key) cancels every
request in flight and stops the run with `GenerationAborted`; results already written stay, and a
rerun continues from them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama3med.instruct.backends import Backend, create_backend
from llama3med.instruct.batches import BatchRunner
from llama3med.instruct.dedup import DuplicateIndex, conversation_text
from llama3med.instruct.generators import GeneratorSpec, choose_generator
from llama3med.instruct.pricing import DEFAULT_PRICES_FILE, PriceTable
from llama3med.instruct.progress import GenerationProgress
from llama3med.instruct.prompting import KINDS, ChatRequest, PromptTemplate, build_request, load_prompts
from llama3med.instruct.records import CaptionRecord, read_records
from llama3med.instruct.results import GeneratorTally, ResultSink, Task
from llama3med.instruct.retry import FatalBackendError, RetriesExhausted, RetryPolicy, call_with_retries
from llama3med.instruct.store import OutputStore, ResultKey
from llama3med.instruct.validate import Rejection

log = logging.getLogger(__name__)


class GenerationAborted(RuntimeError):
    """The run stopped on an error that retrying cannot fix; the message says what to change."""


@dataclass(frozen=True)
class GenerationConfig:
    """Everything one `instruct generate` run needs."""

    input_path: Path
    out_dir: Path
    generators: tuple[GeneratorSpec, ...]
    kinds: tuple[str, ...] = KINDS
    seed: int = 0
    prompts_dir: Path | None = None
    prices_path: Path = DEFAULT_PRICES_FILE
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limit: int | None = None
    batch_size: int = 5000
    batch_poll_interval: float = 30.0
    show_progress: bool = True


@dataclass
class GenerationSummary:
    """What one run did, per generator, with estimated cost (None where the model has no price)."""

    planned: int
    already_done: int
    tallies: dict[str, GeneratorTally]
    costs: dict[str, float | None]
    repaired_bytes: int

    @property
    def failed(self) -> int:
        """Requests that failed after every retry (tried again by the next run)."""
        return sum(t.failed for t in self.tallies.values())


def plan_tasks(
    records: list[CaptionRecord],
    generators: tuple[GeneratorSpec, ...],
    kinds: tuple[str, ...],
    seed: int,
    done: set[ResultKey],
) -> tuple[list[Task], int]:
    """The tasks still to run (record order, then kind order) and how many were already done."""
    tasks, skipped = [], 0
    for record in records:
        generator = choose_generator(list(generators), record.id, seed)
        for kind in kinds:
            task = Task(record, generator, kind)
            if task.key in done:
                skipped += 1
            else:
                tasks.append(task)
    return tasks, skipped


async def run_until_first_error(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run coroutines concurrently; on the first exception cancel the others and raise it."""
    pending = {asyncio.ensure_future(c) for c in coroutines}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            errors = [future.exception() for future in done]  # retrieves every one (no asyncio warning)
            first = next((error for error in errors if error is not None), None)
            if first is not None:
                raise first
    finally:
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class _Job:
    """One run's state shared by the workers."""

    def __init__(self, config: GenerationConfig, templates: dict[str, PromptTemplate], sink: ResultSink) -> None:
        self.config = config
        self.templates = templates
        self.sink = sink
        self.rng = random.Random(config.seed)  # jitter only; does not affect which results are made

    def make_request(self, task: Task) -> ChatRequest:
        return build_request(
            self.templates[task.kind],
            task.record,
            max_tokens=task.generator.max_tokens,
            temperature=task.generator.temperature,
        )

    async def run_direct(self, backend: Backend, tasks: list[Task]) -> None:
        queue = deque(tasks)
        tally = self.sink.tally(backend.spec.name)

        def on_retry(attempt: int, error: Exception, delay: float) -> None:
            tally.retries += 1
            log.info("%s: attempt %d failed (%s); retrying in %.2f s", backend.spec.name, attempt, error, delay)

        async def worker() -> None:
            while queue:
                task = queue.popleft()
                request = self.make_request(task)
                try:
                    completion = await call_with_retries(
                        lambda request=request: backend.complete(request), self.config.retry, self.rng, on_retry
                    )
                except RetriesExhausted as error:
                    log.warning("%s: %s %s %s", backend.spec.name, task.record.id, task.kind, error)
                    self.sink.fail(task, str(error.last_error), error.attempts)
                    continue
                except FatalBackendError as error:
                    raise GenerationAborted(
                        f"stopped at record {task.record.id!r}, kind {task.kind}: {error}"
                    ) from None
                self.sink.accept(task, completion)

        workers = [worker() for _ in range(min(backend.spec.concurrency, len(tasks)))]
        await run_until_first_error(workers)


def _seed_duplicates(templates: dict[str, PromptTemplate], store: OutputStore) -> DuplicateIndex:
    index = DuplicateIndex({kind: template.dedup for kind, template in templates.items()})
    for entry in store.contents.accepted:
        if entry["kind"] not in templates:
            continue
        try:
            index.check_and_add(entry["kind"], entry["id"], entry["image"], conversation_text(entry["conversations"]))
        except Rejection:
            pass  # kept by an earlier run under other dedup settings; it stays, and its twin is indexed
    return index


async def run_generation(config: GenerationConfig) -> GenerationSummary:
    """Run (or resume) a generation job; see the module docstring."""
    records = read_records(config.input_path)[: config.limit]
    templates = load_prompts(config.prompts_dir, config.kinds)
    prices = PriceTable.from_file(config.prices_path)
    store = OutputStore(config.out_dir)
    backends: dict[str, Backend] = {}
    try:
        tasks, already_done = plan_tasks(records, config.generators, config.kinds, config.seed, store.contents.done)
        by_generator = {spec.name: [t for t in tasks if t.generator.name == spec.name] for spec in config.generators}
        progress = GenerationProgress(by_generator, enabled=config.show_progress)
        sink = ResultSink(store, templates, _seed_duplicates(templates, store), config.seed, progress)
        job = _Job(config, templates, sink)
        # Batch generators start even with no new task: batches of an earlier run may wait to be collected.
        active = [spec for spec in config.generators if by_generator[spec.name] or spec.batch]
        try:
            for spec in active:
                backends[spec.name] = create_backend(spec)
        except FatalBackendError as error:
            raise GenerationAborted(str(error)) from None
        records_by_id = {record.id: record for record in records}
        coroutines = [
            BatchRunner(
                backends[spec.name],  # type: ignore[arg-type]  # batch specs are always anthropic
                config.out_dir,
                sink,
                job.make_request,
                config.retry,
                job.rng,
                config.batch_poll_interval,
                config.batch_size,
            ).run(by_generator[spec.name], records_by_id)
            if spec.batch
            else job.run_direct(backends[spec.name], by_generator[spec.name])
            for spec in active
        ]
        with progress:
            try:
                await run_until_first_error(coroutines)
            except FatalBackendError as error:
                raise GenerationAborted(str(error)) from None
        costs = {
            spec.name: prices.cost(
                spec.provider,
                spec.model,
                sink.tally(spec.name).input_tokens,
                sink.tally(spec.name).output_tokens,
                spec.batch,
            )
            for spec in config.generators
        }
        return GenerationSummary(
            planned=len(tasks),
            already_done=already_done,
            tallies={spec.name: sink.tally(spec.name) for spec in config.generators},
            costs=costs,
            repaired_bytes=store.repaired_bytes,
        )
    finally:
        for backend in backends.values():
            await backend.aclose()
        store.close()


def generate(config: GenerationConfig) -> GenerationSummary:
    """Synchronous entry point: `asyncio.run(run_generation(config))`."""
    return asyncio.run(run_generation(config))
