"""A rich progress bar per generator, with kept / rejected / failed counts."""

from __future__ import annotations

from types import TracebackType

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from llama3med.instruct.results import GeneratorTally, Task


class GenerationProgress:
    """Context manager showing one bar per generator; does nothing when `enabled` is False."""

    def __init__(self, tasks_by_generator: dict[str, list[Task]], enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.fields[generator]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("kept {task.fields[kept]} · rejected {task.fields[rejected]} · failed {task.fields[failed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not enabled,
        )
        self._ids: dict[str, TaskID] = {
            name: self._progress.add_task(
                name, total=len(tasks), generator=name, kept=0, rejected=0, failed=0
            )
            for name, tasks in tasks_by_generator.items()
        }

    def advance(self, generator: str, tally: GeneratorTally) -> None:
        """One more task of `generator` finished; refresh its counts."""
        task_id = self._ids.get(generator)
        if task_id is None:
            return
        self._progress.update(
            task_id, advance=1, kept=tally.accepted, rejected=tally.rejected, failed=tally.failed
        )

    def __enter__(self) -> GenerationProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()
