"""The probe experiment: does hierarchical multi-scale encoding help on fine detail? (issue 8)

Three arms with the same data, steps and visual-token budget (the base grid of one tile), on the `small`
preset (EfficientNet-Lite0, 7 x 7 = 49 visual tokens per image in every arm):

- `single-224`: one 224 px view (what a plain 224 px encoder sees);
- `hierarchical`: 224 / 448 / 896 px, S2 channel concatenation (the paper's scheme);
- `single-896`: one 896 px view tiled at 224 px and pooled to the same 7 x 7 grid (plain higher resolution).

Each arm runs stage 1 and stage 2 on the probe's train split for several seeds and is evaluated on its test
split; the table gives mean and 95 % confidence intervals (t over seeds) of closed accuracy and open scores.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama3med.experiments.demo import DemoSettings, Log, run_demo

ARMS: dict[str, dict[str, Any]] = {
    "single-224": {"scales": [224]},
    "hierarchical": {"scales": [224, 448, 896]},
    "single-896": {"scales": [896], "tile_size": 224},
}

# Two-sided 95 % Student-t quantiles by degrees of freedom (n - 1).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass
class ArmSummary:
    """Per-seed scores of one arm and their mean +/- 95 % CI half-width."""

    arm: str
    seeds: list[int]
    scores: dict[str, list[float]]
    by_question_type: dict[str, list[float]] = field(default_factory=dict)

    def interval(self, metric: str) -> tuple[float, float]:
        """Mean and 95 % CI half-width of one overall metric over the seeds."""
        return self.interval_of(self.scores[metric])

    @staticmethod
    def interval_of(values: Sequence[float]) -> tuple[float, float]:
        """Mean and two-sided 95 % Student-t half-width (nan for fewer than 2 values)."""
        if not values:
            return math.nan, math.nan
        mean = statistics.fmean(values)
        if len(values) < 2:
            return mean, math.nan
        return mean, T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


METRICS = {
    "closed accuracy (LLaVA-Med)": ("llava_med", "closed_accuracy"),
    "closed accuracy (strict)": ("strict", "closed_accuracy"),
    "open recall (LLaVA-Med)": ("llava_med", "open_recall"),
    "open exact match": ("strict", "open_exact_match"),
}


def scores_of(report: dict[str, Any]) -> dict[str, float]:
    """The experiment's metrics from one evaluation report."""
    results = next(iter(report["benchmarks"].values()))
    return {name: float(results[group][key]) for name, (group, key) in METRICS.items()}


def question_type_scores(report: dict[str, Any]) -> dict[str, float]:
    """Strict score per probe question type: closed accuracy (presence) or exact match (count, place, size)."""
    results = next(iter(report["benchmarks"].values()))
    return {
        name: float(stats["strict_closed_accuracy"] if stats["closed"] else stats["open_exact_match"])
        for name, stats in sorted(results["breakdowns"].get("question_type", {}).items())
    }


def run_scales_experiment(
    out: Path, settings: DemoSettings, seeds: Sequence[int], arms: Sequence[str] = tuple(ARMS), log: Log = print
) -> list[ArmSummary]:
    """Run every arm for every seed (reusing finished runs in `out`); the probe is the same for all runs."""
    from llama3med.data.probe import generate_probe

    out = Path(out)
    probe = out / "probe"
    generate_probe(probe, seed=settings.seed, n_train=settings.probe_train, n_test=settings.probe_test, size=settings.probe_size)
    summaries = []
    for arm in arms:
        scores: dict[str, list[float]] = {name: [] for name in METRICS}
        by_type: dict[str, list[float]] = {}
        for seed in seeds:
            model_args = [f"model_args.{key}={json.dumps(value)}" for key, value in ARMS[arm].items()]
            run = DemoSettings(**{**settings.__dict__, "seed": seed, "model_overrides": model_args})
            log(f"arm {arm}, seed {seed}")
            result = run_demo(out / arm / f"seed-{seed}", run, data_dir=probe, log=log)
            for name, value in scores_of(result.report).items():
                scores[name].append(value)
            for name, value in question_type_scores(result.report).items():
                by_type.setdefault(name, []).append(value)
        summaries.append(ArmSummary(arm, list(seeds), scores, by_type))
    (out / "summary.json").write_text(json.dumps([s.__dict__ for s in summaries], indent=2))
    return summaries


def markdown_table(summaries: Sequence[ArmSummary], by_question_type: bool = False) -> str:
    """Mean +/- 95 % CI half-width (t over seeds) per arm and metric, in %; with `by_question_type`, the strict
    score per probe question type instead of the overall metrics."""
    columns = sorted({t for s in summaries for t in s.by_question_type}) if by_question_type else list(METRICS)
    lines = ["| arm | seeds | " + " | ".join(columns) + " |", "| --- | --- | " + " | ".join("---:" for _ in columns) + " |"]
    for summary in summaries:
        values = summary.by_question_type if by_question_type else summary.scores
        cells = []
        for column in columns:
            mean, half = ArmSummary.interval_of(values.get(column, []))
            cells.append(f"{mean:.1f} ± {half:.1f}")
        lines.append(f"| {summary.arm} | {len(summary.seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
