"""Progress of long jobs that stays visible in logs: a live bar on a terminal; elsewhere (a log file, CI,
`nohup`, a pipe) a plain line per task when it starts, then at least every `interval` seconds — also while
one slow step is running — and when it ends.

`ProgressDisplay` has the subset of `rich.progress.Progress` the commands use (`add_task`, `advance`,
`update`, context manager), so a command switches by changing one line. The interval is 30 s unless
`LLAMA3MED_PROGRESS_SECONDS` sets another. Tasks run side by side (each line covers every running task) or,
with `sequential=True`, one after the other (eval's benchmarks): then only the current task is reported and
its clock starts when the one before it ends.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

INTERVAL_ENV = "LLAMA3MED_PROGRESS_SECONDS"
DEFAULT_INTERVAL_S = 30.0


def progress_interval() -> float:
    """Seconds between progress lines when not on a terminal."""
    value = os.environ.get(INTERVAL_ENV, "")
    try:
        return float(value) if value else DEFAULT_INTERVAL_S
    except ValueError:
        raise ValueError(f"{INTERVAL_ENV} must be a number of seconds, got {value!r}") from None


def duration(seconds: float) -> str:
    """`45s`, `12m05s`, `3h02m`."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class TaskState:
    """One task's counts and extra fields (shown as `name value` after the counts)."""

    description: str
    total: float | None
    unit: str
    completed: float = 0
    fields: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished: bool = False

    def line(self, now: float) -> str:
        elapsed = now - self.started
        done = f"{self.completed:g}" + (f"/{self.total:g}" if self.total else "") + f" {self.unit}"
        parts = [f"{self.description}: {done}"]
        if self.total:
            parts[0] += f" ({100 * self.completed / self.total:.0f}%)"
        parts.append(f"{duration(elapsed)} elapsed")
        if self.completed and elapsed > 0:
            rate = self.completed / elapsed
            parts.append(f"{rate:.3g} {self.unit}/s")
            if self.total and not self.finished and self.completed < self.total:
                parts.append(f"~{duration((self.total - self.completed) / rate)} left")
        parts += [f"{name} {value}" for name, value in self.fields.items()]
        return ", ".join(parts) + (" — done" if self.finished else "")


class ProgressDisplay:
    """A rich progress bar on a terminal, timed plain lines elsewhere (see the module docstring).

    `console` is where both go (default: stderr, so stdout keeps only results). `columns`, if given, are the
    rich columns of the terminal bar.
    """

    def __init__(self, console: Any = None, *, unit: str = "items", interval: float | None = None,
                 sequential: bool = False, columns: tuple = ()) -> None:
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True, soft_wrap=True)
        self.unit = unit
        self.sequential = sequential
        self.interval = progress_interval() if interval is None else interval
        self.live = self.console.is_terminal
        self.tasks: dict[int, TaskState] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Any = None
        if self.live:
            from rich.progress import Progress

            self._bar = Progress(*columns, console=self.console, transient=True) if columns else Progress(console=self.console, transient=True)

    # rich.progress.Progress's interface ---------------------------------------------------------------
    def add_task(self, description: str, total: float | None = None, unit: str | None = None, **fields: Any) -> int:
        """Start a task; returns its id."""
        if self._bar is not None:
            task_id = self._bar.add_task(description, total=total, **fields)
        else:
            task_id = len(self.tasks)
        with self._lock:
            self.tasks[task_id] = TaskState(description, total, unit or self.unit, fields=dict(fields))
            current = self._running()
        if task_id in current:
            self._print(task_id)
        return task_id

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, completed: float | None = None, advance: float | None = None,
               total: float | None = None, **fields: Any) -> None:
        """Set or advance a task's count and fields; a task that reaches its total prints its last line."""
        if self._bar is not None:
            self._bar.update(task_id, completed=completed, advance=advance, total=total, **fields)
        with self._lock:
            state = self.tasks[task_id]
            if total is not None:
                state.total = total
            if completed is not None:
                state.completed = completed
            if advance is not None:
                state.completed += advance
            state.fields.update(fields)
            reached = bool(state.total) and state.completed >= state.total and not state.finished
            if reached:
                state.finished = True
                following = self._running() if self.sequential else []
                for next_state in (self.tasks[i] for i in following):
                    next_state.started = time.monotonic()  # its clock starts when the task before it ends
        if reached:
            self._print(task_id)
            for next_id in following:
                self._print(next_id)

    def __enter__(self) -> ProgressDisplay:
        if self._bar is not None:
            self._bar.start()
        elif self.interval > 0:
            self._thread = threading.Thread(target=self._heartbeat, name="progress-lines", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._bar.stop()
        elif exc_type is None:
            for task_id, state in list(self.tasks.items()):
                if not state.finished:
                    state.finished = True
                    self._print(task_id)

    # Plain lines ----------------------------------------------------------------------------------------
    def _running(self) -> list[int]:
        """Ids of the tasks being worked on (call with the lock held): every unfinished task, or the first."""
        unfinished = [task_id for task_id, state in self.tasks.items() if not state.finished]
        return unfinished[:1] if self.sequential else unfinished

    def _print(self, task_id: int) -> None:
        if self.live:
            return
        with self._lock:
            line = self.tasks[task_id].line(time.monotonic())
        self.console.print(line, highlight=False, markup=False)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                running = self._running()
            for task_id in running:
                self._print(task_id)
