"""Reports: the field's table beside published zero-shot baselines, a JSON file with every figure and
setting, a PNG chart of the breakdowns, and the training-data contamination check behind the
"zero-shot" label.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from llama3med.eval.benchmarks import BENCHMARKS, DISPLAY_NAMES, Benchmark
from llama3med.io.jsonl import read_jsonl
from llama3med.io.manifest import MANIFEST_GLOB

# LLaVA-Med v1 evaluation notebook, zero-shot; (open recall, closed accuracy) per benchmark.
PUBLISHED_ZERO_SHOT: list[dict[str, Any]] = [
    {"model": "LLaVA-7B (general)", "vqa-rad": (20.74, 59.19), "slake": (26.82, 50.24), "pathvqa": (8.74, 45.65), "avg": 35.23},
    {"model": "LLaVA-Med 60K-IM, 3 ep", "vqa-rad": (28.23, 61.40), "slake": (39.17, 52.16), "pathvqa": (12.30, 54.05), "avg": 41.22},
    {"model": "LLaVA-Med BiomedCLIP", "vqa-rad": (37.84, 60.66), "slake": (39.73, 54.33), "pathvqa": (11.65, 49.07), "avg": 42.21},
    {"model": "LLaVA-Med 13B", "vqa-rad": (31.66, 61.40), "slake": (37.71, 49.76), "pathvqa": (11.34, 49.63), "avg": 40.25},
]
PUBLISHED_LABEL = "published, not re-run; other protocol"
PUBLISHED_SOURCE = "LLaVA-Med v1 evaluation notebook (microsoft/LLaVA-Med), zero-shot"
PUBLISHED_PROTOCOL = (
    "LLaVA-Med's zero-shot protocol (sampling at temperature 0.7, up to 1,024 new tokens), scored before LLaVA-Med's"
    " closed-rule fix #35, when wrong yes/no answers were left out of the closed denominator"
)
# The closed metric we compute, stated in every report.
CLOSED_RULE = (
    "Closed accuracy is LLaVA-Med's rule as `llava/eval/run_eval.py` computes it after fix #35 (commit b9a98a7,"
    " 2023-12-11): a hit when the normalised prediction contains \"yes\" or \"no\" and the normalised answer is a"
    " substring of it, with every closed question in the denominator."
)

ZERO_SHOT, NOT_ZERO_SHOT, UNVERIFIED = "zero-shot", "not zero-shot", "zero-shot (unverified: no training manifest)"
FINE_TUNED_ON = "fine-tuned on "
# A benchmark's name inside a training data source (its label or data file, e.g. `slake/train.jsonl`,
# `VQA_RAD Dataset Public.json`, `pathvqa_train`): any split of it makes the results on it not zero-shot.
SOURCE_PATTERNS = {
    "vqa-rad": re.compile(r"(?<![a-z0-9])vqa[-_ ]?rad(?![a-z])"),
    "slake": re.compile(r"(?<![a-z0-9])slake(?![a-z])"),
    "pathvqa": re.compile(r"(?<![a-z0-9])(?:path[-_ ]?vqa|pvqa)(?![a-z])"),
}
PACKAGES = ("llama3med", "torch", "transformers", "tokenizers", "numpy", "pillow", "nltk", "pyarrow", "openai", "matplotlib")


# Contamination -----------------------------------------------------------------------------------------
class ManifestError(ValueError):
    """A training manifest line is malformed."""


def read_manifests(model_dir: Path) -> tuple[list[Path], set[str], set[str]]:
    """Manifests `<model_dir>/training_manifest*.jsonl`, the set of their `image_sha256` values and the set of
    their data sources (each line's `source` and `data_file`, when present).

    Each manifest line is a JSON object with at least `image_sha256`: the hex sha256 of the bytes of the
    image file used in training (null for text-only examples); see docs/EVALUATION.md.
    """
    manifests = sorted(Path(model_dir).glob(MANIFEST_GLOB))
    hashes: set[str] = set()
    sources: set[str] = set()
    for path in manifests:
        for number, record in read_jsonl(path, ManifestError):
            if "image_sha256" not in record:
                raise ManifestError(f'{path}:{number}: each manifest line needs an "image_sha256" field')
            digest = record["image_sha256"]
            if digest is not None:
                if not isinstance(digest, str) or len(digest) != 64:
                    raise ManifestError(f"{path}:{number}: image_sha256 must be 64 hex characters, got {digest!r}")
                hashes.add(digest.lower())
            sources.update(str(record[key]) for key in ("source", "data_file") if record.get(key))
    return manifests, hashes, sources


def training_image_hashes(model_dir: Path) -> tuple[list[Path], set[str]]:
    """Manifests `<model_dir>/training_manifest*.jsonl` and the set of their `image_sha256` values."""
    manifests, hashes, _ = read_manifests(model_dir)
    return manifests, hashes


def benchmarks_in_sources(sources: set[str]) -> dict[str, list[str]]:
    """{official benchmark: the training sources naming it (sorted)} for the benchmarks any source names."""
    found: dict[str, list[str]] = {}
    for source in sorted(sources):
        for name, pattern in SOURCE_PATTERNS.items():
            if pattern.search(source.lower()):
                found.setdefault(name, []).append(source)
    return found


def contamination_check(model_dir: str | Path | None, benchmarks: Sequence[Benchmark]) -> dict[str, Any]:
    """Whether each benchmark's results are zero-shot, from the model's training manifests: a training source
    naming the benchmark (any split: `slake/train.jsonl`) makes it "fine-tuned on SLAKE"; test images among the
    training images make it "not zero-shot"; otherwise "zero-shot", or unverified without a manifest. The run's
    `label` is the worst of its benchmarks'."""
    folder = Path(model_dir) if model_dir and Path(model_dir).is_dir() else None
    manifests, hashes, sources = read_manifests(folder) if folder else ([], set(), set())
    trained_on = benchmarks_in_sources(sources)
    per_benchmark = {}
    for benchmark in benchmarks:
        by_hash: dict[str, list[str]] = {}
        for question in benchmark.questions:
            by_hash.setdefault(question.image_sha256(), []).append(question.id)
        seen = sorted(h for h in by_hash if h in hashes)
        sources_naming_it = trained_on.get(benchmark.name, [])
        if not manifests:
            label = UNVERIFIED
        elif sources_naming_it:
            label = FINE_TUNED_ON + DISPLAY_NAMES.get(benchmark.name, benchmark.name)
        else:
            label = NOT_ZERO_SHOT if seen else ZERO_SHOT
        per_benchmark[benchmark.name] = {
            "label": label,
            "training_sources_naming_it": sources_naming_it,
            "test_images": len(by_hash),
            "images_in_training_data": len(seen),
            "questions_on_those_images": sum(len(by_hash[h]) for h in seen),
            "example_question_ids": [by_hash[h][0] for h in seen[:5]],
        }
    return {
        "label": run_label(bool(manifests), per_benchmark),
        "manifests": [str(p) for p in manifests],
        "training_images": len(hashes),
        "training_sources": sorted(sources),
        "benchmarks_in_training_sources": sorted(trained_on),
        "benchmarks": per_benchmark,
    }


def run_label(has_manifest: bool, per_benchmark: dict[str, dict[str, Any]]) -> str:
    """One label for the run: "fine-tuned on X, Y" when sources name evaluated benchmarks, else "not zero-shot"
    on any image overlap, else "zero-shot" (unverified without a manifest)."""
    if not has_manifest:
        return UNVERIFIED
    fine_tuned = [v["label"].removeprefix(FINE_TUNED_ON) for v in per_benchmark.values() if v["label"].startswith(FINE_TUNED_ON)]
    if fine_tuned:
        return FINE_TUNED_ON + ", ".join(fine_tuned)
    return NOT_ZERO_SHOT if any(v["images_in_training_data"] for v in per_benchmark.values()) else ZERO_SHOT


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# Markdown ----------------------------------------------------------------------------------------------
def cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def our_row_cells(results: dict[str, dict[str, Any]]) -> list[float | None]:
    """Open, closed per benchmark in table order, then the average (only when all six are present)."""
    values: list[float | None] = []
    for name in BENCHMARKS:
        scores = results.get(name, {}).get("llava_med", {})
        values += [scores.get("open_recall"), scores.get("closed_accuracy")]
    complete = [v for v in values if v is not None]
    return values + [sum(complete) / len(complete) if len(complete) == len(values) else None]


def model_title(model: dict[str, Any]) -> str:
    """The model's name as the report shows it, tagged "(ours)" only for a Llama3-Med checkpoint."""
    if model.get("path") and model["kind"] != "openai-endpoint":
        name = Path(model["path"]).name
    else:
        name = model.get("model") or model.get("path") or "model"
    return f"{name} (ours)" if model["kind"] == "llama3med" else name


def is_partial(run: dict[str, Any]) -> bool:
    return run["limit"] is not None and run["limit"] < run["full_size"]


def comparable_with_published(report: dict[str, Any]) -> list[str]:
    """The official benchmarks evaluated on their whole English test split: only these sit beside the
    published full-test rows."""
    runs = report["runs"]
    return [name for name in report["benchmarks"]
            if name in BENCHMARKS and not is_partial(runs[name]) and runs[name].get("language", "en") == "en"]


def size_text(scores: dict[str, Any], run: dict[str, Any]) -> str:
    questions = scores["counts"]["questions"]
    return f"first {questions} of {run['full_size']}" if is_partial(run) else str(questions)


def markdown_report(report: dict[str, Any]) -> str:
    """The report as Markdown: the field's table (ours beside the published baselines, for official benchmarks
    evaluated in full), the other test sets and partial runs, strict metrics, test sets."""
    results, label, runs = report["benchmarks"], report["label"], report["runs"]
    title = model_title(report["model"])
    protocol = report.get("protocol")
    lines = [
        f"# Evaluation of {title}",
        "",
        f"Label: **{label}**. {contamination_sentence(report['contamination'])}",
        "",
        *([protocol_sentence(protocol), ""] if protocol else []),
    ]
    comparable = comparable_with_published(report)
    if comparable:
        header = "| Model | Setting | " + " | ".join(f"{DISPLAY_NAMES[n]} Open | {DISPLAY_NAMES[n]} Closed" for n in BENCHMARKS) + " | Avg |"
        rule = "| --- | --- | " + " | ".join("---: | ---:" for _ in BENCHMARKS) + " | ---: |"
        cells = our_row_cells({name: results[name] for name in comparable})
        setting = f"{label}; protocol {protocol['name']}" if protocol else label
        lines += [
            "## LLaVA-Med metrics (Open = recall on open questions, Closed = accuracy on closed questions, %)",
            "",
            header,
            rule,
            f"| **{title}** | {setting} | " + " | ".join(cell(v) for v in cells) + " |",
            *(
                f"| {row['model']} | {PUBLISHED_LABEL} | " + " | ".join(f"{row[n][0]:.2f} | {row[n][1]:.2f}" for n in BENCHMARKS)
                + f" | {row['avg']:.2f} |"
                for row in PUBLISHED_ZERO_SHOT
            ),
            "",
            f"Published rows: {PUBLISHED_SOURCE}; not re-run, and measured under another protocol: {PUBLISHED_PROTOCOL}."
            " Avg is the mean of the six cells, given only when all three benchmarks were evaluated on their whole test split.",
            "",
        ]
    others = [name for name in results if name not in comparable]
    if others:
        lines += [
            "## LLaVA-Med metrics on other test sets and partial runs (%; not comparable with published full-test figures)",
            "",
            "| Test set | Questions | Open recall | Closed accuracy |",
            "| --- | ---: | ---: | ---: |",
            *(
                f"| {DISPLAY_NAMES.get(n, n)} | {size_text(results[n], runs[n])} | {cell(results[n]['llava_med']['open_recall'])} | "
                f"{cell(results[n]['llava_med']['closed_accuracy'])} |"
                for n in others
            ),
            "",
        ]
    ceilings = report.get("ceilings")
    if ceilings:
        lines += [
            "## Metric ceilings (the gold answers scored as predictions, %)",
            "",
            "| Test set | Open recall | Closed accuracy (LLaVA-Med) | Closed accuracy (strict) | Open exact match | Open token F1 | Open BLEU-1 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            *(
                f"| {DISPLAY_NAMES.get(n, n)} | {cell(c['llava_med_open_recall'])} | {cell(c['llava_med_closed_accuracy'])} | "
                f"{cell(c['strict_closed_accuracy'])} | {cell(c['open_exact_match'])} | {cell(c['open_f1'])} | {cell(c['bleu1'])} |"
                for n, c in ceilings.items()
            ),
            "",
            "No model can score above these. LLaVA-Med's closed rule needs \"yes\" or \"no\" in the prediction, so closed"
            " option questions (\"left or right?\" -> \"left\") never score and its closed ceiling stays below 100 %.",
            "",
        ]
    lines += [CLOSED_RULE, ""]
    lines += [
        "## Strict metrics (%)",
        "",
        "| Benchmark | Closed accuracy (first yes/no word) | Open exact match | Open token F1 | Open BLEU-1 | Open / closed questions |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, scores in results.items():
        strict, counts = scores["strict"], scores["counts"]
        lines.append(
            f"| {DISPLAY_NAMES.get(name, name)} | {cell(strict['closed_accuracy'])} | {cell(strict['open_exact_match'])} | "
            f"{cell(strict['open_f1'])} | {cell(scores['bleu1'])} | {counts['open']} / {counts['closed']} |"
        )
    lines += ["", "## Test sets", "", "| Test set | Questions | Images | Source | Official size check |", "| --- | ---: | ---: | --- | --- |"]
    for name, scores in results.items():
        counts, run = scores["counts"], runs[name]
        if name in BENCHMARKS and run.get("language", "en") == "en":
            check = "; ".join(run["official_count_mismatches"]) or "matches"
        else:
            check = "– (no official size)"
        lines.append(f"| {DISPLAY_NAMES.get(name, name)} | {size_text(scores, run)} | {counts['images']} | {run['data']} ({run['layout']}) | {check} |")
    decoding = ", ".join(f"{k}={v}" for k, v in report["decoding"].items())
    prompts = report["prompts"]
    lines += [
        "",
        f"Decoding: {decoding}; batch size {report['batch_size']}. Prompts: closed sha256 {prompts['closed']['sha256'][:12]}, "
        f"open sha256 {prompts['open']['sha256'][:12]} (texts in report.json).",
        "",
        f"Reproduce: `{report['command']}`",
        "",
    ]
    return "\n".join(lines)


def protocol_sentence(protocol: dict[str, Any]) -> str:
    """The protocol line of report.md: name, what it is, its source and anything changed from it."""
    changed = protocol.get("changed") or {}
    suffix = "; changed here: " + ", ".join(f"{k}={v}" for k, v in changed.items()) if changed else ""
    return f"Protocol: **{protocol['name']}** ({protocol['description']}; {protocol['reference']}){suffix}."


def contamination_sentence(check: dict[str, Any]) -> str:
    if not check["manifests"]:
        return "The model folder records no training manifest, so test/training image overlap could not be checked."
    parts = []
    benchmarks = check["benchmarks"]
    trained = [n for n, v in benchmarks.items() if v.get("training_sources_naming_it")]
    if trained:
        parts.append("The training data includes " + "; ".join(
            f"{DISPLAY_NAMES.get(n, n)} ({', '.join(benchmarks[n]['training_sources_naming_it'])})" for n in trained
        ) + " — results on it are fine-tuned, not zero-shot.")
    overlap = {n: v["images_in_training_data"] for n, v in benchmarks.items()}
    found = ", ".join(f"{DISPLAY_NAMES.get(n, n)} {k} of {benchmarks[n]['test_images']}" for n, k in overlap.items() if k)
    if found:
        parts.append(f"Test images found in the training manifests: {found} — these results are not zero-shot.")
    elsewhere = [n for n in check.get("benchmarks_in_training_sources", []) if n not in benchmarks]
    if elsewhere:
        parts.append("Also in the training data, not evaluated here: " + ", ".join(DISPLAY_NAMES.get(n, n) for n in elsewhere) + ".")
    if not trained and not found:
        parts.insert(0, f"No test image appears in the training manifests ({check['training_images']} training images checked)"
                        " and no training source names an evaluated benchmark.")
    return " ".join(parts)


# PNG chart -------------------------------------------------------------------------------------------
def chart_title(report: dict[str, Any]) -> str:
    """Model, protocol, zero-shot / fine-tuned label and question count, for the chart."""
    total = sum(scores["counts"]["questions"] for scores in report["benchmarks"].values())
    protocol = report.get("protocol") or "greedy, fixed prompt templates"
    if isinstance(protocol, dict):
        protocol = protocol.get("name") or ", ".join(f"{k}={v}" for k, v in protocol.items())
    return f"{model_title(report['model'])}: {protocol}; {report['label']}; n = {total} questions"


def breakdown_figure(report: dict[str, Any]) -> Any:
    """A matplotlib `Figure`: horizontal bars per category value (LLaVA-Med open recall and closed accuracy)
    with their values, one panel per benchmark and category, labels with question counts, a title naming the
    model, protocol, label and n. A metric with no question of its type in a row is drawn as no bar, labelled
    "n/a". Drawn with the Agg canvas (no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    results = report["benchmarks"]
    panels = [(name, category, values) for name, scores in results.items() for category, values in scores["breakdowns"].items()]
    heights = [max(1.5, 0.35 * len(values) + 1.0) for _, _, values in panels]
    figure = Figure(figsize=(8, sum(heights) + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(chart_title(report), fontsize=10)
    axes = figure.subplots(len(panels), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0]
    for axis, (name, category, values) in zip(axes, panels, strict=True):
        labels = [f"{value} (n={stats['count']})" for value, stats in values.items()]
        positions = list(range(len(labels)))
        for offset, key, legend in ((-0.2, "llava_med_open_recall", "open recall"), (0.2, "llava_med_closed_accuracy", "closed accuracy")):
            scores = [stats[key] for stats in values.values()]
            bars = axis.barh([p + offset for p in positions], [v or 0.0 for v in scores], height=0.4, label=legend)
            axis.bar_label(bars, labels=["n/a" if v is None else f"{v:.1f}" for v in scores], fontsize=7, padding=2)
        axis.set_yticks(positions, labels, fontsize=8)
        axis.invert_yaxis()
        axis.set_xlim(0, 110)  # room for the value labels of 100 % bars
        n = results[name]["counts"]["questions"]
        axis.set_title(f"{DISPLAY_NAMES.get(name, name)} by {category} (n={n})", fontsize=10)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=2, fontsize=8)
    axes[-1].set_xlabel("% (LLaVA-Med metrics)")
    return figure


def breakdown_chart(report: dict[str, Any], path: Path) -> None:
    """`breakdown_figure` saved as a PNG (100 dpi, 800 px wide)."""
    breakdown_figure(report).savefig(path, dpi=100)


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write `report.json`, `report.md` and `breakdowns.png` into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md", "chart": out_dir / "breakdowns.png"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown_report(report), encoding="utf-8")
    breakdown_chart(report, paths["chart"])
    return paths
