"""Reports: the field's table beside published zero-shot baselines, a JSON file with every figure and
setting, a PNG chart of the breakdowns, and the training-data contamination check behind the
"zero-shot" label.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from llama3med.data.jsonl import read_jsonl
from llama3med.eval.benchmarks import BENCHMARKS, DISPLAY_NAMES, Benchmark

# REFERENCE.md §3: LLaVA-Med v1 evaluation notebook, zero-shot; (open recall, closed accuracy) per benchmark.
PUBLISHED_ZERO_SHOT: list[dict[str, Any]] = [
    {"model": "LLaVA-7B (general)", "vqa-rad": (20.74, 59.19), "slake": (26.82, 50.24), "pathvqa": (8.74, 45.65), "avg": 35.23},
    {"model": "LLaVA-Med 60K-IM, 3 ep", "vqa-rad": (28.23, 61.40), "slake": (39.17, 52.16), "pathvqa": (12.30, 54.05), "avg": 41.22},
    {"model": "LLaVA-Med BiomedCLIP", "vqa-rad": (37.84, 60.66), "slake": (39.73, 54.33), "pathvqa": (11.65, 49.07), "avg": 42.21},
    {"model": "LLaVA-Med 13B", "vqa-rad": (31.66, 61.40), "slake": (37.71, 49.76), "pathvqa": (11.34, 49.63), "avg": 40.25},
]
PUBLISHED_LABEL = "published, not re-run"
PUBLISHED_SOURCE = "LLaVA-Med v1 evaluation notebook, zero-shot (REFERENCE.md §3)"

ZERO_SHOT, NOT_ZERO_SHOT, UNVERIFIED = "zero-shot", "not zero-shot", "zero-shot (unverified: no training manifest)"
MANIFEST_GLOB = "training_manifest*.jsonl"
PACKAGES = ("llama3med", "torch", "transformers", "tokenizers", "numpy", "pillow", "nltk", "pyarrow", "openai", "matplotlib")


# Contamination -----------------------------------------------------------------------------------------
class ManifestError(ValueError):
    """A training manifest line is malformed."""


def training_image_hashes(model_dir: Path) -> tuple[list[Path], set[str]]:
    """Manifests `<model_dir>/training_manifest*.jsonl` and the set of their `image_sha256` values.

    Each manifest line is a JSON object with at least `image_sha256`: the hex sha256 of the bytes of the
    image file used in training (null for text-only examples); see docs/EVALUATION.md.
    """
    manifests = sorted(Path(model_dir).glob(MANIFEST_GLOB))
    hashes: set[str] = set()
    for path in manifests:
        for number, record in read_jsonl(path, ManifestError):
            if "image_sha256" not in record:
                raise ManifestError(f'{path}:{number}: each manifest line needs an "image_sha256" field')
            digest = record["image_sha256"]
            if digest is not None:
                if not isinstance(digest, str) or len(digest) != 64:
                    raise ManifestError(f"{path}:{number}: image_sha256 must be 64 hex characters, got {digest!r}")
                hashes.add(digest.lower())
    return manifests, hashes


def contamination_check(model_dir: str | Path | None, benchmarks: Sequence[Benchmark]) -> dict[str, Any]:
    """How many test images appear in the model's training manifests, and the resulting label:
    "zero-shot" (manifests found, no overlap), "not zero-shot" (any overlap) or unverified (no manifest)."""
    manifests, hashes = training_image_hashes(Path(model_dir)) if model_dir and Path(model_dir).is_dir() else ([], set())
    per_benchmark = {}
    for benchmark in benchmarks:
        by_hash: dict[str, list[str]] = {}
        for question in benchmark.questions:
            by_hash.setdefault(question.image_sha256(), []).append(question.id)
        seen = sorted(h for h in by_hash if h in hashes)
        per_benchmark[benchmark.name] = {
            "test_images": len(by_hash),
            "images_in_training_data": len(seen),
            "questions_on_those_images": sum(len(by_hash[h]) for h in seen),
            "example_question_ids": [by_hash[h][0] for h in seen[:5]],
        }
    overlap = sum(v["images_in_training_data"] for v in per_benchmark.values())
    label = UNVERIFIED if not manifests else (NOT_ZERO_SHOT if overlap else ZERO_SHOT)
    return {
        "label": label,
        "manifests": [str(p) for p in manifests],
        "training_images": len(hashes),
        "benchmarks": per_benchmark,
    }


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
    lines = [
        f"# Evaluation of {title}",
        "",
        f"Label: **{label}**. {contamination_sentence(report['contamination'])}",
        "",
    ]
    comparable = comparable_with_published(report)
    if comparable:
        header = "| Model | Setting | " + " | ".join(f"{DISPLAY_NAMES[n]} Open | {DISPLAY_NAMES[n]} Closed" for n in BENCHMARKS) + " | Avg |"
        rule = "| --- | --- | " + " | ".join("---: | ---:" for _ in BENCHMARKS) + " | ---: |"
        cells = our_row_cells({name: results[name] for name in comparable})
        lines += [
            "## LLaVA-Med metrics (Open = recall on open questions, Closed = accuracy on closed questions, %)",
            "",
            header,
            rule,
            f"| **{title}** | {label} | " + " | ".join(cell(v) for v in cells) + " |",
            *(
                f"| {row['model']} | {PUBLISHED_LABEL} | " + " | ".join(f"{row[n][0]:.2f} | {row[n][1]:.2f}" for n in BENCHMARKS)
                + f" | {row['avg']:.2f} |"
                for row in PUBLISHED_ZERO_SHOT
            ),
            "",
            f"Published rows: {PUBLISHED_SOURCE}; {PUBLISHED_LABEL}. Avg is the mean of the six cells, given only when all"
            " three benchmarks were evaluated on their whole test split.",
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


def contamination_sentence(check: dict[str, Any]) -> str:
    if not check["manifests"]:
        return "The model folder records no training manifest, so test/training image overlap could not be checked."
    overlap = {n: v["images_in_training_data"] for n, v in check["benchmarks"].items()}
    found = ", ".join(f"{DISPLAY_NAMES.get(n, n)} {k} of {check['benchmarks'][n]['test_images']}" for n, k in overlap.items() if k)
    if found:
        return f"Test images found in the training manifests: {found} — these results are not zero-shot."
    return f"No test image appears in the training manifests ({check['training_images']} training images checked)."


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
