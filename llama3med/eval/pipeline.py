"""`evaluate`: run the protocol on several benchmarks, score, check contamination, write the report.

Output folder layout:

    <out>/run.json                  settings the predictions were made with (a rerun must match them)
    <out>/predictions/<name>.jsonl  one line per question (id, prediction, question, reference, answer type,
                                    per-item scores), appended as produced; a custom data set's name has a
                                    folder part (`my-data/test` -> predictions/my-data/test.jsonl)
    <out>/report.json               every figure and setting
    <out>/report.md                 the field's table beside published baselines, strict metrics, test sets
    <out>/breakdowns.png            figures per answer type and per dataset category
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llama3med.eval.answerers import Answerer
from llama3med.eval.benchmarks import Benchmark
from llama3med.eval.protocols import describe_protocol
from llama3med.eval.report import (
    CLOSED_RULE,
    PUBLISHED_LABEL,
    PUBLISHED_PROTOCOL,
    PUBLISHED_SOURCE,
    PUBLISHED_ZERO_SHOT,
    contamination_check,
    package_versions,
    write_report,
)
from llama3med.eval.runner import check_run_settings, run_benchmark
from llama3med.eval.scoring import metric_ceilings, score_benchmark
from llama3med.eval.templates import PromptTemplates
from llama3med.generation import GenerationSettings


def evaluate(
    answerer: Answerer,
    benchmarks: Sequence[Benchmark],
    templates: PromptTemplates,
    out_dir: str | Path,
    *,
    decoding: GenerationSettings,
    batch_size: int = 16,
    limit: int | None = None,
    model_dir: str | Path | None = None,
    command: str = "",
    overwrite: bool = False,
    on_batch: Callable[[str, int], None] | None = None,
    protocol: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate `answerer` on the first `limit` questions (all when None) of each full-split `benchmark`
    and write the report files into `out_dir`. Rerunning with the same settings resumes; `overwrite`
    starts over. `model_dir` is where training manifests are looked for. `protocol` is the report's protocol
    entry (`llama3med.eval.protocols.protocol_settings`); without one, the named protocol the decoding and
    prompts match is recorded, else a `custom` one. Returns the report dict."""
    out_dir = Path(out_dir)
    if overwrite:
        shutil.rmtree(out_dir / "predictions", ignore_errors=True)
        (out_dir / "run.json").unlink(missing_ok=True)
    prompts = templates.describe()
    protocol = protocol or describe_protocol(decoding, templates)
    settings = {
        "model": answerer.describe(),
        "protocol": protocol["name"],
        "decoding": decoding.as_dict(),
        "prompts": {k: v["sha256"] for k, v in prompts.items() if isinstance(v, dict)},
        "data": {b.name: {"source": b.source, "layout": b.layout, "language": b.language, **({"columns": b.columns} if b.columns else {})}
                 for b in benchmarks},
    }
    names = [b.name for b in benchmarks]
    if len(set(names)) != len(names):  # one predictions file per name: a shared name would mix two data sets
        raise ValueError(f"benchmark names must be unique, got {names}")
    check_run_settings(out_dir / "run.json", settings)
    results, runs, evaluated, ceilings = {}, {}, [], {}
    for benchmark in benchmarks:
        subset = benchmark.limited(limit)
        path = out_dir / "predictions" / f"{benchmark.name}.jsonl"
        progress = (lambda n, name=benchmark.name: on_batch(name, n)) if on_batch else None
        predictions = run_benchmark(answerer, subset, templates, path, batch_size=batch_size, on_batch=progress)
        results[benchmark.name] = score_benchmark(subset, predictions, str(path))
        ceilings[benchmark.name] = metric_ceilings(subset)
        runs[benchmark.name] = {
            "data": benchmark.source,
            "layout": benchmark.layout,
            "language": benchmark.language,
            "limit": limit,
            "full_size": len(benchmark.questions),
            "official_count_mismatches": benchmark.check_counts(),
            "predictions": str(path),
            "predictions_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
        evaluated.append(subset)
    contamination = contamination_check(model_dir, evaluated)
    report = {
        "label": contamination["label"],
        "model": answerer.describe(),
        "benchmarks": results,
        "runs": runs,
        "contamination": contamination,
        "protocol": protocol,
        "ceilings": ceilings,
        "metric_rules": {"closed": CLOSED_RULE},
        "published_baselines": {
            "label": PUBLISHED_LABEL, "source": PUBLISHED_SOURCE, "protocol": PUBLISHED_PROTOCOL, "rows": PUBLISHED_ZERO_SHOT,
        },
        "prompts": prompts,
        "decoding": decoding.as_dict(),
        "batch_size": batch_size,
        "packages": package_versions(),
        "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_report(report, out_dir)
    return report
