"""Dynamic batching: concurrent requests are collected for a short window and those with the same
generation settings are answered by one `Llama3Med.generate` call.

Generation runs in one dedicated worker thread so the event loop keeps accepting and answering
requests meanwhile; requests that arrive while a batch runs form the next batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from llama3med.api import ChatRequest, GenerationResult, GenerationSettings, Llama3Med

logger = logging.getLogger(__name__)


@dataclass
class PendingRequest:
    request: ChatRequest
    settings: GenerationSettings
    future: asyncio.Future[GenerationResult]
    on_text: Callable[[str], None] | None = None
    text_sent: bool = field(default=False)


def batch_key(settings: GenerationSettings) -> Hashable:
    """Requests batch together only when their settings are equal; sampling with a seed runs alone, since its
    random draws would otherwise depend on the other rows of the batch."""
    if settings.temperature > 0 and settings.seed is not None:
        return object()
    seed = settings.seed if settings.temperature > 0 else None
    return (settings.max_new_tokens, settings.temperature, settings.top_p, tuple(settings.stop or ()), seed)


class DynamicBatcher:
    """Answers `submit`ted requests in batches of up to `max_batch_size` (1 turns batching off)."""

    def __init__(self, api: Llama3Med, *, window_s: float = 0.01, max_batch_size: int = 16) -> None:
        if max_batch_size < 1 or window_s < 0:
            raise ValueError("max_batch_size must be >= 1 and window_s >= 0")
        self.api = api
        self.window_s = window_s
        self.max_batch_size = max_batch_size
        self._queue: asyncio.Queue[PendingRequest] = asyncio.Queue()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama3med-generate")
        self._task: asyncio.Task | None = None
        self.generate_calls = 0  # generate calls made; with `requests_answered`, shows how well requests batch
        self.requests_answered = 0

    async def start(self) -> None:
        """Start collecting requests (call from the running event loop)."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop collecting; the batch being generated finishes in its thread."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def submit(
        self, request: ChatRequest, settings: GenerationSettings, on_text: Callable[[str], None] | None = None
    ) -> GenerationResult:
        """Queue one request and wait for its result; `on_text` gets its text pieces (called in the event loop)."""
        pending = PendingRequest(request, settings, asyncio.get_running_loop().create_future(), on_text)
        await self._queue.put(pending)
        return await pending.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Collect until the window closes or one group of compatible requests fills a batch.
            groups: dict[Hashable, list[PendingRequest]] = {}
            pending = await self._queue.get()
            deadline = loop.time() + self.window_s
            while True:
                group = groups.setdefault(batch_key(pending.settings), [])
                group.append(pending)
                if len(group) >= self.max_batch_size:
                    break
                if self._queue.empty():  # otherwise take what queued up while the last batch ran
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        pending = await asyncio.wait_for(self._queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                else:
                    pending = self._queue.get_nowait()
            for group in groups.values():
                live = [p for p in group if not p.future.cancelled()]  # clients that went away while waiting
                if not live:
                    continue
                try:
                    await self._answer(live)
                except Exception as error:  # keep collecting: a dead loop would hang every later request
                    logger.exception("answering a batch failed")
                    for pending in live:
                        _settle(pending, error=error)

    async def _answer(self, group: list[PendingRequest]) -> None:
        loop = asyncio.get_running_loop()

        def send(row: int, piece: str) -> None:  # called from the generate thread
            loop.call_soon_threadsafe(self._deliver, group[row], piece)

        settings = group[0].settings
        # Following the text costs a decode per row and step: only when some request streams.
        on_text = send if any(p.on_text is not None for p in group) else None
        self.generate_calls += 1
        try:
            results = await loop.run_in_executor(
                self._worker, lambda: self.api.generate([p.request for p in group], on_text=on_text, settings=settings)
            )
        except Exception as error:
            if len(group) == 1:
                _settle(group[0], error=error)
                return
            # One request must not fail the others: answer each alone (those that have not streamed yet).
            logger.warning("a batch of %d failed (%s); answering its requests one by one", len(group), error)
            for pending in group:
                if pending.text_sent:
                    _settle(pending, error=error)
                else:
                    await self._answer([pending])
            return
        self.requests_answered += len(group)
        for pending, result in zip(group, results, strict=True):
            _settle(pending, result=result)

    @staticmethod
    def _deliver(pending: PendingRequest, piece: str) -> None:
        if pending.on_text is not None and not pending.future.done():
            pending.text_sent = True
            pending.on_text(piece)


def _settle(pending: PendingRequest, *, result: GenerationResult | None = None, error: BaseException | None = None) -> None:
    """Complete a request's future unless its client went away; pieces queued before this are delivered first."""
    if pending.future.done():
        return
    if error is not None:
        pending.future.set_exception(error)
    else:
        pending.future.set_result(result)
