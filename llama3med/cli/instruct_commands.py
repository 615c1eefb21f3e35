"""`llama3med instruct ...`: biomedical instruction-data generation (see docs/INSTRUCT_DATA.md)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from llama3med.cli.common import BAD_INPUT, fail

instruct_app = typer.Typer(
    name="instruct",
    help="Generate LLaVA-format instruction conversations from image captions with LLMs (Claude, Llama-3-70B, ...).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

GENERATOR_HELP = (
    "A generator and its weight, repeatable: PROVIDER:MODEL[@BASE_URL][:WEIGHT] with PROVIDER anthropic, "
    "anthropic-batch (Message Batches) or openai (OpenAI-compatible server at BASE_URL, e.g. "
    "openai:llama-3-70b@http://gpu:8000/v1:1), or NAME[:WEIGHT] for a generator in --generators-file."
)


@instruct_app.command("generate")
def generate_command(
    input_path: Path = typer.Option(..., "--input", help="Caption JSONL: id, image, caption, optional mentions/context."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder (conversations.jsonl, rejects.jsonl, ...); rerun to resume."),
    generator: list[str] = typer.Option([], "--generator", "-g", help=GENERATOR_HELP),
    generators_file: Path | None = typer.Option(
        None, "--generators-file", help="YAML file with named generators (all are used when no --generator is given)."
    ),
    kind: list[str] = typer.Option(
        [], "--kind", help="Kinds to generate, repeatable: conversation, detailed_description, closed_qa, open_qa (default: all)."
    ),
    seed: int = typer.Option(0, help="Seed for the generator draw per record and the description questions."),
    limit: int | None = typer.Option(None, min=1, help="Use only the first N records."),
    concurrency: int = typer.Option(8, min=1, help="Requests in flight per generator (default for generators-file entries too)."),
    timeout: float = typer.Option(120.0, min=0.001, help="Seconds before a request counts as hung and is retried."),
    max_tokens: int = typer.Option(1024, min=1, help="Reply length limit in tokens; replies that hit it are rejected as truncated."),
    temperature: float | None = typer.Option(
        None, min=0.0, help="Sampling temperature (default: the provider's; newer Claude models accept none)."
    ),
    max_attempts: int = typer.Option(6, min=1, help="Attempts per request on 429, 5xx, timeouts and dropped connections."),
    retry_base_delay: float = typer.Option(1.0, min=0.0, help="First backoff delay in seconds (doubles per attempt, with jitter)."),
    retry_max_delay: float = typer.Option(60.0, min=0.0, help="Longest backoff delay in seconds (a longer retry-after is honoured)."),
    prompts_dir: Path | None = typer.Option(None, help="Folder with <kind>.yaml prompt files (default: the packaged ones)."),
    prices: Path | None = typer.Option(None, help="Price table YAML for cost estimates (default: the packaged prices.yaml)."),
    batch_size: int = typer.Option(5000, min=1, help="Requests per Anthropic Message Batch (anthropic-batch generators)."),
    batch_poll_interval: float = typer.Option(30.0, min=0.001, help="Seconds between Message Batch status checks."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per generator."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every retry."),
) -> None:
    """Generate conversations for every record (one generator per record, drawn by weight), validate them,
    and append them to OUT; a rerun after a crash finishes the job with no duplicates."""
    from rich.console import Console

    from llama3med.instruct.generate import GenerationAborted, GenerationConfig, generate
    from llama3med.instruct.generators import GeneratorSpecError, resolve_generators
    from llama3med.instruct.pricing import DEFAULT_PRICES_FILE, PriceTableError
    from llama3med.instruct.prompting import KINDS, PromptFileError
    from llama3med.instruct.records import RecordError
    from llama3med.instruct.retry import RetryPolicy
    from llama3med.instruct.store import CONVERSATIONS_FILE, StoreError

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    defaults = {"concurrency": concurrency, "timeout": timeout, "max_tokens": max_tokens, "temperature": temperature}
    try:
        specs = resolve_generators(generator, generators_file, defaults)
        config = GenerationConfig(
            input_path=input_path,
            out_dir=out_dir,
            generators=tuple(specs),
            kinds=tuple(kind) or KINDS,
            seed=seed,
            prompts_dir=prompts_dir,
            prices_path=prices or DEFAULT_PRICES_FILE,
            retry=RetryPolicy(max_attempts=max_attempts, base_delay=retry_base_delay, max_delay=retry_max_delay),
            limit=limit,
            batch_size=batch_size,
            batch_poll_interval=batch_poll_interval,
            show_progress=progress,
        )
        summary = generate(config)
    except (GeneratorSpecError, RecordError, PromptFileError, PriceTableError, StoreError, GenerationAborted) as error:
        raise fail(str(error), BAD_INPUT) from None
    except KeyboardInterrupt:
        raise fail("interrupted; results written so far are kept — rerun the same command to continue", 130) from None

    from rich.table import Table

    console = Console()
    table = Table(title=f"This run: {summary.planned} request(s) planned, {summary.already_done} already done")
    for column in ("generator", "kept", "rejected", "failed", "retries", "input tokens", "output tokens", "cost"):
        table.add_column(column, justify="left" if column == "generator" else "right")
    for name, tally in summary.tallies.items():
        cost = summary.costs[name]
        table.add_row(
            name, str(tally.accepted), str(tally.rejected), str(tally.failed), str(tally.retries),
            f"{tally.input_tokens:,}", f"{tally.output_tokens:,}", "no price" if cost is None else f"${cost:,.2f}",
        )
    console.print(table)
    if summary.repaired_bytes:
        console.print(f"Cut a torn last line ({summary.repaired_bytes} bytes) left by an interrupted run.")
    console.print(f"LLaVA-format conversations: {out_dir / CONVERSATIONS_FILE}")
    if summary.failed:
        raise fail(
            f"{summary.failed} request(s) failed after every retry (see failures.jsonl); "
            "rerun the same command to retry them",
            1,
        )


@instruct_app.command("stats")
def stats_command(
    out_dir: Path = typer.Option(..., "--out", help="Output folder of `instruct generate`."),
    prices: Path | None = typer.Option(None, help="Price table YAML (default: the packaged prices.yaml)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Counts by generator, kind and rejection reason, answer-length distribution, tokens and cost."""
    from rich.console import Console

    from llama3med.instruct.pricing import DEFAULT_PRICES_FILE, PriceTable, PriceTableError
    from llama3med.instruct.stats import compute_stats, render_stats
    from llama3med.instruct.store import StoreError

    try:
        stats = compute_stats(out_dir, PriceTable.from_file(prices or DEFAULT_PRICES_FILE))
    except (FileNotFoundError, PriceTableError, StoreError) as error:
        raise fail(str(error), BAD_INPUT) from None
    if as_json:
        typer.echo(json.dumps(stats.as_dict(), indent=2))
    else:
        render_stats(stats, Console())


@instruct_app.command("estimate")
def estimate_command(
    input_path: Path = typer.Option(..., "--input", help="Caption JSONL to estimate for."),
    generator: list[str] = typer.Option([], "--generator", "-g", help=GENERATOR_HELP),
    generators_file: Path | None = typer.Option(None, "--generators-file", help="YAML file with named generators."),
    kind: list[str] = typer.Option([], "--kind", help="Kinds, repeatable (default: all four)."),
    from_out: Path | None = typer.Option(
        None, "--from-out", help="Output folder of an earlier run: use its measured reply tokens per kind."
    ),
    records: int = typer.Option(10_000, min=1, help="Number of records to price."),
    prompts_dir: Path | None = typer.Option(None, help="Folder with <kind>.yaml prompt files."),
    prices: Path | None = typer.Option(None, help="Price table YAML (default: the packaged prices.yaml)."),
) -> None:
    """Tokens per request (Llama-3 tokenizer) and estimated cost of RECORDS records per generator."""
    from rich.console import Console
    from rich.table import Table

    from llama3med.instruct.estimate import (
        cost_for_records,
        estimate_kinds,
        llama3_token_counter,
        measured_output_tokens,
    )
    from llama3med.instruct.generators import GeneratorSpecError, resolve_generators
    from llama3med.instruct.pricing import DEFAULT_PRICES_FILE, PriceTable, PriceTableError
    from llama3med.instruct.prompting import KINDS, PromptFileError, load_prompts
    from llama3med.instruct.records import RecordError, read_records
    from llama3med.instruct.store import StoreError

    try:
        specs = resolve_generators(generator, generators_file) if generator or generators_file else []
        table_of_prices = PriceTable.from_file(prices or DEFAULT_PRICES_FILE)
        estimates = estimate_kinds(
            read_records(input_path),
            load_prompts(prompts_dir, tuple(kind) or KINDS),
            llama3_token_counter(),
            measured_output_tokens(from_out) if from_out else None,
        )
    except (GeneratorSpecError, RecordError, PromptFileError, PriceTableError, StoreError, RuntimeError) as error:
        raise fail(str(error), BAD_INPUT) from None
    console = Console()
    tokens = Table(title=f"Tokens per request (Llama-3 tokenizer; {estimates[0].requests} records of {input_path.name})")
    for column in ("kind", "prompt tokens", "reply tokens", "reply tokens from"):
        tokens.add_column(column, justify="right" if "tokens" in column and "from" not in column else "left")
    for estimate in estimates:
        tokens.add_row(estimate.kind, f"{estimate.input_tokens:,.0f}", f"{estimate.output_tokens:,.0f}", estimate.output_source)
    console.print(tokens)
    if specs:
        costs = Table(title=f"Estimated cost of {records:,} records x {len(estimates)} kind(s)")
        costs.add_column("generator")
        costs.add_column("batch")
        costs.add_column("cost", justify="right")
        for spec in specs:
            cost = cost_for_records(estimates, spec, table_of_prices, records)
            costs.add_row(spec.name, "yes" if spec.batch else "no", "no price" if cost is None else f"${cost:,.2f}")
        console.print(costs)


@instruct_app.command("medpix-context")
def medpix_context_command(
    captions: Path = typer.Option(..., help="captions.jsonl of the caption sample (rows with case_id)."),
    cases: Path = typer.Option(..., help="MedPix case reports (original/medpix/data_test.jsonl)."),
    out: Path = typer.Option(..., help="Where to write the captions with a `context` field."),
) -> None:
    """Add each MedPix row's case history, exam, findings and diagnosis as `context`."""
    from llama3med.instruct.medpix_context import attach_medpix_context
    from llama3med.instruct.records import RecordError

    try:
        rows, with_context = attach_medpix_context(captions, cases, out)
    except (RecordError, OSError) as error:
        raise fail(str(error), BAD_INPUT) from None
    typer.echo(f"{out}: {rows} rows, {with_context} with context")


def register(app: typer.Typer) -> None:
    """Add the `instruct` command group to the main CLI."""
    app.add_typer(instruct_app, name="instruct")
