"""Progress per generator, with kept / rejected / failed counts: a live bar on a terminal, plain lines at least
every 30 s in logs (`llama3med.progress.ProgressDisplay`)."""

from __future__ import annotations

from types import TracebackType

from llama3med.instruct.results import GeneratorTally, Task
from llama3med.progress import ProgressDisplay


class GenerationProgress:
    """Context manager showing one task per generator; does nothing when `enabled` is False."""

    def __init__(self, tasks_by_generator: dict[str, list[Task]], enabled: bool = True) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.enabled = enabled
        self._progress: ProgressDisplay | None = None
        self._ids: dict[str, int] = {}
        if not enabled:
            return
        self._progress = ProgressDisplay(
            unit="requests",
            columns=(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("kept {task.fields[kept]} · rejected {task.fields[rejected]} · failed {task.fields[failed]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            ),
        )
        self._tasks_by_generator = tasks_by_generator

    def advance(self, generator: str, tally: GeneratorTally) -> None:
        """One more task of `generator` finished; refresh its counts."""
        task_id = self._ids.get(generator)
        if self._progress is None or task_id is None:
            return
        self._progress.update(task_id, advance=1, kept=tally.accepted, rejected=tally.rejected, failed=tally.failed)

    def __enter__(self) -> GenerationProgress:
        if self._progress is not None:
            self._progress.__enter__()
            self._ids = {
                name: self._progress.add_task(name, total=len(tasks), kept=0, rejected=0, failed=0)
                for name, tasks in self._tasks_by_generator.items()
            }
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
