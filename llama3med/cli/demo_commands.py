"""`llama3med demo`: the main job on the embedded default (what `make demo` runs)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.panel import Panel

from llama3med.cli.common import Threads, set_threads
from llama3med.experiments.demo import DemoSettings, run_demo

console = Console(soft_wrap=True)


def demo(
    out: Path = typer.Option(Path("outputs/demo"), help="Where the probe, the model folders and the report are written."),
    data: Path | None = typer.Option(
        None, help="A folder laid out like the VQA-RAD benchmark folder (train.jsonl, test.jsonl, images/): fine-tune "
        "on its train split and evaluate on its test split instead of the probe (reported as fine-tuned)."
    ),
    preset: str = typer.Option("small", help="Model preset: small (real pretrained parts) or tiny (random, seconds)."),
    seed: int = typer.Option(0, help="Seed of the probe, the training and the decoding."),
    align_steps: int = typer.Option(DemoSettings.align_steps, min=1, help="Stage 1 (connector only) optimiser steps."),
    instruct_steps: int = typer.Option(DemoSettings.instruct_steps, min=1, help="Stage 2 (LLM + connector) optimiser steps."),
    probe_train: int = typer.Option(DemoSettings.probe_train, min=1, help="Probe training images."),
    probe_test: int = typer.Option(DemoSettings.probe_test, min=1, help="Probe test images (2–4 questions each)."),
    eval_limit: int | None = typer.Option(None, min=1, help="Evaluate only the first N test questions."),
    batch_size: int = typer.Option(DemoSettings.batch_size, min=1, help="Training batch size (both stages)."),
    instruct_data: str = typer.Option(
        DemoSettings.instruct_data, help="Stage 2 on a probe: presence (its presence questions; only those are evaluated), vqa (all its short "
        "questions) or conversations."
    ),
    threads: Threads = None,
) -> None:
    """Generate the fine-detail probe, align (stage 1), instruction-tune (stage 2), evaluate, and answer a question.

    Everything runs offline on the CPU; a rerun reuses the finished stages in --out.
    """
    set_threads(threads)
    start = time.perf_counter()
    settings = DemoSettings(preset=preset, seed=seed, probe_train=probe_train, probe_test=probe_test,
                            align_steps=align_steps, instruct_steps=instruct_steps, eval_limit=eval_limit,
                            batch_size=batch_size, instruct_data=instruct_data)
    result = run_demo(out, settings, data_dir=data, log=lambda line: console.print(f"[cyan]•[/] {line}"))
    from rich.table import Table

    from llama3med.experiments.demo import probe_rows

    table = Table(title=f"{result.data_dir / 'test.jsonl'} — {result.label}")
    for column in ("question type", "n", "LLaVA-Med metric %", "strict metric %"):
        table.add_column(column, justify="left" if column == "question type" else "right")
    for row in probe_rows(result.report):
        table.add_row(row[0], str(row[1]), row[2], row[3])
    console.print(table)
    console.print("closed: accuracy (substring rule / first yes-no word); open: recall / exact match")
    if result.presence is not None:
        from llama3med.experiments.linear_probe import fmt_ci

        pres, ceiling = result.presence, result.presence["ceiling"]
        console.print(
            f"[bold]presence (PRES) accuracy {pres['accuracy']:.3f} {fmt_ci(pres['ci95'])}[/] on {pres['n']} unseen "
            f"test images (95 % bootstrap CI); linear-probe ceiling of the same frozen features "
            f"{ceiling['test_accuracy']:.3f} {fmt_ci(ceiling['ci95'])}"
        )
    ex = result.example
    why = f"\ntargets: {ex['why']}" if "why" in ex else ""
    console.print(Panel(f"image: {ex['image']}\nquestion: {ex['question']}\n[bold]answer:[/] {ex['answer']}\n"
                        f"reference: {ex['reference']}{why}", title="one test question"), soft_wrap=False)  # wrap, not cut
    console.print(
        f"[bold green]done[/] in {time.perf_counter() - start:.0f} s — {result.label}\n"
        f"  data:         {result.data_dir}\n  stage 1:      {result.align_dir}\n"
        f"  model folder: {result.model_dir}\n  report:       {result.eval_dir / 'report.md'} (+ report.json,"
        f" breakdowns.png, predictions/)\n  try:          llama3med ask {ex['image']} \"{ex['question']}\" --model {result.model_dir}"
    )


experiment_app = typer.Typer(help="Experiments on the fine-detail probe.", no_args_is_help=True)


@experiment_app.command("scales")
def scales_experiment(
    out: Path = typer.Option(Path("outputs/experiment-scales"), help="Where every run and summary.json go."),
    seeds: str = typer.Option("0,1,2", help="Comma-separated training seeds (>= 3 for confidence intervals)."),
    arms: str = typer.Option("single-224,hierarchical,single-896", help="Arms to run (see docs/EXPERIMENTS.md)."),
    align_steps: int = typer.Option(DemoSettings.align_steps, min=1, help="Stage 1 steps per run."),
    instruct_steps: int = typer.Option(DemoSettings.instruct_steps, min=1, help="Stage 2 steps per run."),
    probe_train: int = typer.Option(DemoSettings.probe_train, min=1, help="Probe training images."),
    probe_test: int = typer.Option(DemoSettings.probe_test, min=1, help="Probe test images (2–4 questions each)."),
    threads: Threads = None,
) -> None:
    """One scale vs hierarchical scales vs one high-resolution scale, same data, steps and token budget."""
    set_threads(threads)
    from llama3med.experiments.scales import markdown_table, run_scales_experiment

    settings = DemoSettings(probe_train=probe_train, probe_test=probe_test, align_steps=align_steps,
                            instruct_steps=instruct_steps)
    summaries = run_scales_experiment(out, settings, [int(s) for s in seeds.split(",")], arms.split(","),
                                      log=lambda line: console.print(f"[cyan]•[/] {line}"))
    console.print(markdown_table(summaries))
    console.print("\nstrict score per question type (closed: accuracy; open: exact match):")
    console.print(markdown_table(summaries, by_question_type=True))


@experiment_app.command("linear-probe")
def linear_probe_experiment(
    out: Path = typer.Option(Path("outputs/linear-probe"), help="Where the probe and summary.json go."),
    arms: str = typer.Option("single-224,hierarchical,single-896", help="Arms to measure (see docs/EXPERIMENTS.md)."),
    probe_train: int = typer.Option(200, min=8, help="Probe training images (a quarter is the validation split)."),
    probe_test: int = typer.Option(100, min=2, help="Probe test images (unseen; the interval is over these)."),
    probe_seed: int = typer.Option(0, min=0, help="Seed of the probe images."),
    probe_format: int | None = typer.Option(
        None, help="Probe format (default: the calibrated 3, wide stippled targets; 2 = narrow stippled; 1 = the first)."
    ),
    seed: int = typer.Option(0, min=0, help="Seed of the validation split and the bootstrap."),
    feature_cache: Path | None = typer.Option(None, help="Frozen-feature cache folder (default: $LLAMA3MED_CACHE/features)."),
) -> None:
    """Ceiling of each arm: a regularised linear classifier on the frozen `small` features of the probe.

    Encodes the probe once (cached), fits presence, count and position per arm and per scale slice with the
    regularisation chosen on a validation split of train, and reports test accuracy with 95 % bootstrap intervals.
    """
    from rich.table import Table

    from llama3med.experiments.linear_probe import run_linear_probe, summary_rows
    from llama3med.experiments.scales import ARMS

    unknown = [a for a in arms.split(",") if a not in ARMS]
    if unknown:
        raise typer.BadParameter(f"unknown arm(s) {unknown}; choose from {sorted(ARMS)}", param_hint="--arms")
    report = run_linear_probe(out, {a: ARMS[a] for a in arms.split(",")}, probe_train=probe_train,
                              probe_test=probe_test, probe_seed=probe_seed, probe_version=probe_format, seed=seed,
                              feature_cache=feature_cache, log=lambda line: console.print(f"[cyan]•[/] {line}"))
    table = Table(title=f"linear probe on frozen features — {report['probe']['n_test']} unseen test images")
    for column in ("arm", "features", "task", "test accuracy [95 % CI]", "majority class"):
        table.add_column(column, justify="right" if column == "majority class" else "left")
    for row in summary_rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(f"summary: {Path(out) / 'summary.json'} ({report['seconds']:.0f} s)")


def register(app: typer.Typer) -> None:
    """Add `demo` and `experiment` to the CLI."""
    app.command()(demo)
    app.add_typer(experiment_app, name="experiment")
