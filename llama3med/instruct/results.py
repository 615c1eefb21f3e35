"""What happens to one reply: validate, de-duplicate, store, count."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from llama3med.instruct.backends import Completion
from llama3med.instruct.dedup import DuplicateIndex, conversation_text
from llama3med.instruct.generators import GeneratorSpec
from llama3med.instruct.prompting import PromptTemplate, human_question
from llama3med.instruct.records import CaptionRecord
from llama3med.instruct.store import OutputStore, ResultKey
from llama3med.instruct.validate import Rejection, check_reply, to_llava


@dataclass(frozen=True)
class Task:
    """One request to make: a kind of conversation for a record, by a generator."""

    record: CaptionRecord
    generator: GeneratorSpec
    kind: str

    @property
    def key(self) -> ResultKey:
        """The key its result is stored under."""
        return ResultKey(self.record.id, self.generator.name, self.kind)


@dataclass
class GeneratorTally:
    """Counts and token usage of one generator in one run."""

    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


class ProgressListener(Protocol):
    """Told after every finished task (for the progress bar)."""

    def advance(self, generator: str, tally: GeneratorTally) -> None:
        """One more task of `generator` finished."""
        ...


class ResultSink:
    """Validates replies and appends every outcome to the store; remembers what is done."""

    def __init__(
        self,
        store: OutputStore,
        templates: dict[str, PromptTemplate],
        duplicates: DuplicateIndex,
        seed: int,
        progress: ProgressListener | None = None,
    ) -> None:
        self.store = store
        self.templates = templates
        self.duplicates = duplicates
        self.seed = seed
        self.progress = progress
        self.done: set[ResultKey] = set(store.contents.done)
        self.tallies: dict[str, GeneratorTally] = {}

    def tally(self, generator: str) -> GeneratorTally:
        """The running tally of a generator."""
        return self.tallies.setdefault(generator, GeneratorTally())

    def question_for(self, task: Task) -> str | None:
        """The person's question for `answer`-format kinds (fixed by seed and record id)."""
        template = self.templates[task.kind]
        return human_question(template, task.record.id, self.seed) if template.output_format == "answer" else None

    def _base(self, task: Task, completion: Completion | None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "record_id": task.record.id,
            "generator": task.generator.name,
            "kind": task.kind,
            "provider": task.generator.provider,
            "model": task.generator.model,
            "batch": task.generator.batch,
        }
        if completion is not None:
            entry["usage"] = {"input_tokens": completion.input_tokens, "output_tokens": completion.output_tokens}
        return entry

    def accept(self, task: Task, completion: Completion) -> bool:
        """Store the reply as a conversation or as a rejection; True when it was kept."""
        if task.key in self.done:
            return False
        tally = self.tally(task.generator.name)
        tally.input_tokens += completion.input_tokens
        tally.output_tokens += completion.output_tokens
        template = self.templates[task.kind]
        try:
            turns = check_reply(completion.text, completion.truncated, template, self.question_for(task))
            conversation = to_llava(task.record, turns, task.generator.name, task.kind)
            self.duplicates.check_and_add(
                task.kind, conversation["id"], task.record.image, conversation_text(conversation["conversations"])
            )
        except Rejection as rejection:
            self.store.rejected.append(
                {
                    **self._base(task, completion),
                    "image": task.record.image,
                    "reason": rejection.reason,
                    "detail": rejection.detail,
                    "output": completion.text,
                }
            )
            tally.rejected += 1
            tally.rejected_by_reason[rejection.reason] = tally.rejected_by_reason.get(rejection.reason, 0) + 1
            self._finish(task)
            return False
        self.store.accepted.append({**conversation, **self._base(task, completion)})
        tally.accepted += 1
        self._finish(task)
        return True

    def fail(self, task: Task, error: str, attempts: int) -> None:
        """Log a request that failed after every retry; the next run tries it again."""
        self.store.failures.append(
            {
                **self._base(task, None),
                "error": error,
                "attempts": attempts,
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        )
        self.tally(task.generator.name).failed += 1
        if self.progress is not None:
            self.progress.advance(task.generator.name, self.tally(task.generator.name))

    def _finish(self, task: Task) -> None:
        self.done.add(task.key)
        if self.progress is not None:
            self.progress.advance(task.generator.name, self.tally(task.generator.name))
