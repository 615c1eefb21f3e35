"""`llama3med train` and `llama3med merge` (see docs/TRAINING.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from llama3med.cli.common import BAD_INPUT, Threads, fail, set_threads


def train(
    recipe: str = typer.Argument(
        ..., help="Recipe YAML file, or a shipped recipe name: tiny-align, tiny-instruct, small-align, small-instruct, llama3-med-8b-align, llama3-med-8b-instruct, llama3-med-8b-instruct-lora."
    ),
    overrides: list[str] | None = typer.Argument(
        None, help="key=value overrides, dotted for nested keys: training.max_steps=10 data.0.max_samples=64 learning_rates.llm=0."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last complete checkpoint in OUTPUT_DIR/checkpoints (same data order and RNG state)."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first bad record instead of skipping and counting it."),
    data_root: Path | None = typer.Option(
        None, help="Folder the recipe's relative data paths are under (default: the recipe's data_root, which is "
        "$LLAMA3MED_DATA_ROOT in the shipped recipes, else the recipe file's folder)."
    ),
    threads: Threads = None,
    local_rank: int | None = typer.Option(None, "--local_rank", "--local-rank", hidden=True, help="Set by the deepspeed launcher (the rank is read from the environment)."),
) -> None:
    """Train a model with a recipe: stage `align` (connector) or `instruct` (LLM + connector, full or LoRA)."""
    set_threads(threads)
    from llama3med.train.data.conversations import BadRecordError
    from llama3med.train.data.supervision import SupervisionError
    from llama3med.train.recipe import load_recipe
    from llama3med.train.run import train as run_training

    try:
        loaded = load_recipe(recipe, overrides or [], data_root=data_root)
        result = run_training(loaded, resume=resume, strict=strict)
    except (BadRecordError, SupervisionError, OSError, ValueError, RuntimeError, ImportError) as error:
        raise fail(str(error), BAD_INPUT) from error
    typer.echo(f"trained {result.global_step} steps -> {result.output_dir}")


def merge(
    adapter_dir: Path = typer.Argument(..., help="A LoRA adapter folder, e.g. a LoRA recipe's output (its adapter_config.json names the base model folder)."),
    out_dir: Path = typer.Argument(..., help="Folder to write the merged, plain model to."),
) -> None:
    """Fold LoRA adapters into the base model: a plain model folder that generates what the adapter model does."""
    from llama3med.train.outputs import merge_adapter

    try:
        merge_adapter(adapter_dir, out_dir)
    except (OSError, ValueError) as error:
        raise fail(str(error), BAD_INPUT) from error
    typer.echo(f"merged {adapter_dir} -> {out_dir}")


def register(app: typer.Typer) -> None:
    """Add the training commands to the CLI."""
    app.command()(train)
    app.command()(merge)
