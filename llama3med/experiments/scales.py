"""The scales experiment: does hierarchical multi-scale encoding help on fine detail?

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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llama3med.eval.intervals import t_interval
from llama3med.experiments.demo import DemoSettings, Log, run_demo

ARMS: dict[str, dict[str, Any]] = {
    "single-224": {"scales": [224]},
    "hierarchical": {"scales": [224, 448, 896]},
    "single-896": {"scales": [896], "tile_size": 224},
}


@dataclass
class ArmSummary:
    """Per-seed scores of one arm and their mean +/- 95 % CI half-width."""

    arm: str
    seeds: list[int]
    scores: dict[str, list[float]]
    by_question_type: dict[str, list[float]] = field(default_factory=dict)
    ceiling: dict[str, Any] = field(default_factory=dict)  # linear-probe presence ceiling of the arm's features

    def interval(self, metric: str) -> tuple[float, float]:
        """Mean and 95 % CI half-width of one overall metric over the seeds."""
        return self.interval_of(self.scores[metric])

    @staticmethod
    def interval_of(values: Sequence[float]) -> tuple[float, float]:
        """Mean and two-sided 95 % Student-t half-width (nan for fewer than 2 values)."""
        return t_interval(values)


PRESENCE = "PRES accuracy"
METRICS = {
    "closed accuracy (LLaVA-Med)": ("llava_med", "closed_accuracy"),
    "closed accuracy (strict)": ("strict", "closed_accuracy"),
    "open recall (LLaVA-Med)": ("llava_med", "open_recall"),
    "open exact match": ("strict", "open_exact_match"),
}


def scores_of(report: dict[str, Any]) -> dict[str, float]:
    """The experiment's metrics from one evaluation report (nan for a metric with no questions: the open scores
    of a presence-only evaluation)."""
    results = next(iter(report["benchmarks"].values()))
    return {name: math.nan if results[group][key] is None else float(results[group][key])
            for name, (group, key) in METRICS.items()}


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
    from llama3med.experiments.probe.generate import generate_probe

    out = Path(out)
    probe = out / "probe"
    generate_probe(probe, seed=settings.seed, n_train=settings.probe_train, n_test=settings.probe_test,
                   size=settings.probe_size, version=settings.probe_format)
    summaries = []
    for arm in arms:
        scores: dict[str, list[float]] = {PRESENCE: [], **{name: [] for name in METRICS}}
        by_type: dict[str, list[float]] = {}
        ceiling: dict[str, Any] = {}
        for seed in seeds:
            run = replace(settings, seed=seed, model_args=dict(ARMS[arm]))
            log(f"arm {arm}, seed {seed}")
            result = run_demo(out / arm / f"seed-{seed}", run, data_dir=probe, log=log)
            for name, value in scores_of(result.report).items():
                scores[name].append(value)
            scores[PRESENCE].append(100.0 * result.presence["accuracy"])
            ceiling = ceiling or {k: result.presence["ceiling"][k] for k in ("test_accuracy", "ci95", "n_test")}
            for name, value in question_type_scores(result.report).items():
                by_type.setdefault(name, []).append(value)
        summaries.append(ArmSummary(arm, list(seeds), scores, by_type, ceiling))
    (out / "summary.json").write_text(summary_json(summaries))
    return summaries


def summary_json(summaries: Sequence[ArmSummary]) -> str:
    """`summary.json`'s text: strict JSON, a metric with nothing to score (nan) written as null."""

    def strict(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {key: strict(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [strict(item) for item in value]
        return value

    return json.dumps([strict(s.__dict__) for s in summaries], indent=2, allow_nan=False) + "\n"


def markdown_table(summaries: Sequence[ArmSummary], by_question_type: bool = False) -> str:
    """Mean +/- 95 % CI half-width (t over seeds) per arm and metric, in %; with `by_question_type`, the strict
    score per probe question type instead of the overall metrics."""
    columns = sorted({t for s in summaries for t in s.by_question_type}) if by_question_type else [PRESENCE, *METRICS]
    ceiling = [] if by_question_type else ["linear-probe PRES ceiling"]
    header = ["arm", "seeds", *columns, *ceiling]
    lines = ["| " + " | ".join(header) + " |", "| --- | --- | " + " | ".join("---:" for _ in columns + ceiling) + " |"]
    for summary in summaries:
        values = summary.by_question_type if by_question_type else summary.scores
        cells = []
        for column in columns:
            mean, half = ArmSummary.interval_of(values.get(column, []))
            cells.append("–" if math.isnan(mean) else f"{mean:.1f} ± {half:.1f}")
        if ceiling:
            c = summary.ceiling
            cells.append(f"{100 * c['test_accuracy']:.1f} [{100 * c['ci95'][0]:.1f}, {100 * c['ci95'][1]:.1f}]"
                         if c else "–")
        lines.append(f"| {summary.arm} | {len(summary.seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
