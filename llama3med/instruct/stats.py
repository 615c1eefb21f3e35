"""Report over an output folder: counts by generator, kind and rejection reason, length distributions,
token usage and estimated cost."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from llama3med.instruct.pricing import PriceTable
from llama3med.instruct.store import ResultKey, load_contents
from llama3med.instruct.validate import word_count


@dataclass(frozen=True)
class Distribution:
    """Summary of a list of counts."""

    count: int
    min: int
    median: float
    p90: float
    max: int

    @classmethod
    def of(cls, values: list[int]) -> Distribution:
        """Summarise `values` (all zeros for an empty list)."""
        if not values:
            return cls(0, 0, 0.0, 0.0, 0)
        ordered = sorted(values)
        p90 = statistics.quantiles(ordered, n=10, method="inclusive")[-1] if len(ordered) > 1 else float(ordered[0])
        return cls(len(ordered), ordered[0], float(statistics.median(ordered)), float(p90), ordered[-1])


@dataclass
class GeneratorUsage:
    """Tokens reported by the provider for every stored result of a generator, and their cost."""

    results: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


@dataclass
class FolderStats:
    """Everything `instruct stats` reports."""

    accepted: dict[str, dict[str, int]] = field(default_factory=dict)  # generator -> kind -> count
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)  # generator -> kind -> count
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    pending_failures: int = 0  # keys that failed and have no result yet
    answer_words: dict[str, Distribution] = field(default_factory=dict)  # kind -> words per answer
    turns: dict[str, Distribution] = field(default_factory=dict)  # kind -> question-answer pairs
    usage: dict[str, GeneratorUsage] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _nested_counts(entries: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in entries:
        counts[entry["generator"]][entry["kind"]] += 1
    return {generator: dict(sorted(kinds.items())) for generator, kinds in sorted(counts.items())}


def compute_stats(out_dir: Path, prices: PriceTable) -> FolderStats:
    """Read `conversations.jsonl`, `rejects.jsonl` and `failures.jsonl` of a folder and summarise."""
    if not out_dir.is_dir():
        raise FileNotFoundError(f"{out_dir}: output folder not found")
    contents = load_contents(out_dir)
    stats = FolderStats(
        accepted=_nested_counts(contents.accepted),
        rejected=_nested_counts(contents.rejected),
        rejected_by_reason=dict(Counter(e["reason"] for e in contents.rejected).most_common()),
        pending_failures=len({ResultKey.of(e) for e in contents.failures} - contents.done),
    )
    words: dict[str, list[int]] = defaultdict(list)
    turns: dict[str, list[int]] = defaultdict(list)
    for entry in contents.accepted:
        answers = [turn["value"] for turn in entry["conversations"] if turn["from"] == "gpt"]
        words[entry["kind"]].extend(word_count(answer) for answer in answers)
        turns[entry["kind"]].append(len(answers))
    stats.answer_words = {kind: Distribution.of(values) for kind, values in sorted(words.items())}
    stats.turns = {kind: Distribution.of(values) for kind, values in sorted(turns.items())}
    costs: dict[str, list[float | None]] = defaultdict(list)
    for entry in contents.accepted + contents.rejected:
        usage = stats.usage.setdefault(entry["generator"], GeneratorUsage())
        tokens = entry.get("usage") or {}
        usage.results += 1
        usage.input_tokens += int(tokens.get("input_tokens", 0))
        usage.output_tokens += int(tokens.get("output_tokens", 0))
        costs[entry["generator"]].append(
            prices.cost(
                entry.get("provider", ""),
                entry.get("model", ""),
                int(tokens.get("input_tokens", 0)),
                int(tokens.get("output_tokens", 0)),
                bool(entry.get("batch", False)),
            )
        )
    for generator, values in costs.items():
        if all(value is not None for value in values):
            stats.usage[generator].cost_usd = sum(values)  # type: ignore[arg-type]
    return stats


def _money(value: float | None) -> str:
    return "no price" if value is None else f"${value:,.2f}"


def render_stats(stats: FolderStats, console: Console) -> None:
    """Print the report as rich tables."""
    counts = Table(title="Results by generator and kind")
    for column in ("generator", "kind", "kept", "rejected"):
        counts.add_column(column, justify="right" if column in ("kept", "rejected") else "left")
    for generator in sorted(set(stats.accepted) | set(stats.rejected)):
        kinds = sorted(set(stats.accepted.get(generator, {})) | set(stats.rejected.get(generator, {})))
        for kind in kinds:
            counts.add_row(
                generator,
                kind,
                str(stats.accepted.get(generator, {}).get(kind, 0)),
                str(stats.rejected.get(generator, {}).get(kind, 0)),
            )
    console.print(counts)
    if stats.rejected_by_reason:
        reasons = Table(title="Rejections by reason")
        reasons.add_column("reason")
        reasons.add_column("count", justify="right")
        for reason, count in stats.rejected_by_reason.items():
            reasons.add_row(reason, str(count))
        console.print(reasons)
    lengths = Table(title="Kept conversations: words per answer and question-answer pairs")
    for column in ("kind", "answers", "words min", "median", "p90", "max", "pairs median", "pairs max"):
        lengths.add_column(column, justify="left" if column == "kind" else "right")
    for kind, words in stats.answer_words.items():
        pairs = stats.turns[kind]
        lengths.add_row(
            kind, str(words.count), str(words.min), f"{words.median:g}", f"{words.p90:g}", str(words.max),
            f"{pairs.median:g}", str(pairs.max),
        )
    console.print(lengths)
    usage = Table(title="Token usage (as reported by the providers) and estimated cost")
    for column in ("generator", "results", "input tokens", "output tokens", "cost"):
        usage.add_column(column, justify="left" if column == "generator" else "right")
    for generator, entry in sorted(stats.usage.items()):
        usage.add_row(
            generator, str(entry.results), f"{entry.input_tokens:,}", f"{entry.output_tokens:,}", _money(entry.cost_usd)
        )
    console.print(usage)
    if stats.pending_failures:
        console.print(
            f"[yellow]{stats.pending_failures} request(s) failed after every retry and have no result yet; "
            "run the same `instruct generate` command again to retry them.[/yellow]"
        )
