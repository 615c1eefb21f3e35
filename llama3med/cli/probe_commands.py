"""`llama3med probe generate`: write the fine-detail probe dataset (see llama3med/experiments/probe/generate.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from llama3med.cli.common import BAD_INPUT, fail
from llama3med.experiments.probe.generate import (
    DEFAULT_TEST,
    DEFAULT_TRAIN,
    FORMAT_VERSION,
    MAX_SIZE,
    MIN_SIZE,
)

probe_app = typer.Typer(
    name="probe",
    help="The fine-detail probe: generated images with targets a few pixels across, to test multi-scale encoding.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@probe_app.command("generate")
def generate_command(
    out: Path = typer.Option(
        ..., "--out", help="Output folder (images/, train.jsonl, test.jsonl, captions, ...)."
    ),
    seed: int = typer.Option(0, min=0, help="Seed: the same seed gives byte-identical files."),
    train: int = typer.Option(DEFAULT_TRAIN, "--train", min=0, help="Number of training images."),
    test: int = typer.Option(DEFAULT_TEST, "--test", min=0, help="Number of test images."),
    size: int | None = typer.Option(
        None, min=MIN_SIZE, max=MAX_SIZE,
        help="Image side in pixels (default: the format's, 896 for formats 2 and 3 = the small preset's largest scale).",
    ),
    probe_format: int = typer.Option(
        FORMAT_VERSION, "--format", help="3: calibrated (wide stippled targets, 896 px); 2: narrow stippled targets; 1: the first probe (solid, 1024 px)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Regenerate even when a complete probe with these parameters is there."
    ),
) -> None:
    """Generate the probe into --out, or keep the complete one already there with the same parameters."""
    from rich.console import Console
    from rich.progress import Progress

    from llama3med.experiments.probe.generate import ProbeError, generate_probe

    console = Console()
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("drawing probe images", total=train + test)
            summary = generate_probe(
                out, seed=seed, n_train=train, n_test=test, size=size, version=probe_format, force=force,
                progress=lambda done, total: bar.update(task, completed=done),
            )  # fmt: skip
    except ProbeError as error:
        raise fail(str(error), BAD_INPUT) from error
    verb = "wrote" if summary.generated else "kept the complete probe already in"
    console.print(
        f"{verb} [bold]{summary.out_dir}[/]: {summary.n_train} train + {summary.n_test} test images of {summary.size} px, "
        f"{summary.questions['train']} train + {summary.questions['test']} test questions ({summary.seconds:.1f} s)"
    )


def register(app: typer.Typer) -> None:
    """Add the `probe` command group to the main CLI."""
    app.add_typer(probe_app, name="probe")
