"""`llama3med eval` (run a model on VQA-RAD / SLAKE / PathVQA and write the report) and `llama3med score`
(score an existing predictions JSONL, no model needed)."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from llama3med.cli.common import BAD_INPUT, Threads, fail, option_groups, set_threads

if TYPE_CHECKING:
    from llama3med.eval.benchmarks import Benchmark

console = Console(soft_wrap=True)  # tables and paths stay on one line each
errors = Console(stderr=True, soft_wrap=True)  # soft wrap: paths in messages stay on one line

LAYOUT_HELP = "Layout of the official benchmarks: auto, jsonl (shared layout), original (release files) or parquet (Hugging Face folder)."
DATA_ROOT_HELP = "Folder holding one folder per official benchmark (vqa-rad/, slake/, pathvqa/). No default: give it here or in LLAMA3MED_DATA_ROOT."
COLUMNS_HELP = ("Custom data sets: which column holds each field, e.g. question=query,answer=label,image=img,id=qid,answer_type=kind "
                "(default: id/qid/question_id, image, question/text, answer/gpt4_answer, answer_type).")
CATEGORIES_HELP = "Custom data sets: comma-separated columns to break the figures down by (default: every other column of JSONL/CSV rows)."
SPLIT_HELP = "Custom data set folders (datasets' save_to_disk, parquet, <split>.jsonl): the split to read."
IMAGE_DIR_HELP = "Custom data sets: folder their image paths are relative to (default: the file's folder, or a data set folder's images/)."


@dataclass(frozen=True)
class DataOptions:
    """Where the benchmarks are and how to read them: an option group of `eval` and `score` (`option_groups`)."""

    data_root: Annotated[Path | None, typer.Option(envvar="LLAMA3MED_DATA_ROOT", help=DATA_ROOT_HELP)] = None
    layout: Annotated[str, typer.Option(help=LAYOUT_HELP)] = "auto"
    slake_language: Annotated[str, typer.Option(help="SLAKE questions: en (official English test split) or zh.")] = "en"
    columns: Annotated[str | None, typer.Option(help=COLUMNS_HELP)] = None
    categories: Annotated[str | None, typer.Option(help=CATEGORIES_HELP)] = None
    split: Annotated[str, typer.Option(help=SPLIT_HELP)] = "test"
    image_dir: Annotated[Path | None, typer.Option(help=IMAGE_DIR_HELP)] = None

    def load(self, specs: list[str]) -> list[Benchmark]:
        """The benchmarks `specs` name (`resolve_benchmarks`); a bad spec, column map or file raises `ValueError`
        or `OSError`."""
        from llama3med.eval.data_specs import ColumnMap, resolve_benchmarks

        return resolve_benchmarks(specs, self.data_root, layout=self.layout, language=self.slake_language,
                                  columns=ColumnMap.parse(self.columns, self.categories), split=self.split, image_dir=self.image_dir)

    def changed_options(self) -> list[str]:
        """The options set to other than their defaults, as command-line words for the reproduce line (`--data-root`
        aside: the line names it beside the benchmarks)."""
        return [word for field in fields(self) if field.name != "data_root" and (value := getattr(self, field.name)) != field.default
                for word in (f"--{field.name.replace('_', '-')}", str(value))]


def build_answerer(model: Path | None, backend: str, endpoint: str | None, served_model: str | None, api_key_env: str,
                   concurrency: int, retries: int, decoding, device: str | None, dtype: str | None):
    """The answerer for the CLI options: an endpoint, our checkpoint, or any HF image-text-to-text folder."""
    from llama3med.eval.answerers import HFImageTextAnswerer, Llama3MedAnswerer, OpenAIChatAnswerer

    if endpoint:
        name = served_model or (str(model) if model else None)
        if not name:
            raise ValueError("--endpoint needs --served-model (the model name the endpoint serves)")
        return OpenAIChatAnswerer(endpoint, name, decoding, api_key=os.environ.get(api_key_env), max_concurrency=concurrency, max_retries=retries)
    if model is None:
        raise ValueError("give --model (a model folder) or --endpoint")
    from llama3med.folders import merge_hint, read_json, resolve_model_folder

    folder = resolve_model_folder(model)  # a model folder, or a LoRA adapter folder over a Llama3-Med model
    if backend == "auto":
        backend = "llama3med" if read_json(folder.model_config_path).get("model_type") == "llama3med" else "hf"
    if backend == "hf" and folder.is_adapter:
        raise ValueError(f"--backend hf takes model folders and {model} is a LoRA adapter folder: {merge_hint(model)}")
    if backend == "llama3med":
        return Llama3MedAnswerer.from_pretrained(model, decoding, device=device, dtype=dtype)
    if backend == "hf":
        return HFImageTextAnswerer.from_pretrained(model, decoding, device=device, dtype=dtype)
    raise ValueError(f"--backend must be auto, llama3med or hf, got {backend!r}")


@option_groups(data=DataOptions)
def eval_command(
    model: Path | None = typer.Option(None, "--model", help="Model folder: a Llama3-Med checkpoint or any Hugging Face image-text-to-text model."),
    benchmarks: str = typer.Option(
        "vqa-rad,slake,pathvqa", help="Comma-separated: vqa-rad, slake, pathvqa, or your own data sets as PATH or NAME=PATH "
        "(.jsonl, .csv, LLaVA-Med question .jsonl or test .json, .parquet, or a Hugging Face dataset folder)."
    ),
    *,
    data: DataOptions,
    out: Path | None = typer.Option(None, help="Output folder (predictions, report.md/json, breakdowns.png); default eval-results/<model name>."),
    limit: int | None = typer.Option(None, min=1, help="Evaluate only the first N questions of each benchmark."),
    batch_size: int = typer.Option(16, min=1, help="Questions per generate call (left padded, KV cache)."),
    protocol: str = typer.Option(
        "ours", help="Evaluation protocol: ours (format instruction per answer type, greedy, 64 new tokens) or llava-med "
        "(LLaVA-Med's zero-shot VQA: the bare question, sampling at temperature 0.7, 1,024 new tokens). Named in the report."
    ),
    seed: int = typer.Option(0, help="Random seed (matters only when sampling)."),
    max_new_tokens: int | None = typer.Option(None, min=1, help="Longest answer in tokens (default: the protocol's)."),
    temperature: float | None = typer.Option(None, min=0.0, help="0 = greedy decoding (default: the protocol's)."),
    top_p: float | None = typer.Option(None, min=0.0, max=1.0, help="Nucleus sampling threshold, when sampling (default: the protocol's)."),
    prompts: Path | None = typer.Option(None, help="Folder with closed.txt and open.txt prompt templates (default: the protocol's)."),
    backend: str = typer.Option("auto", help="auto (from config.json), llama3med, or hf (AutoModelForImageTextToText)."),
    endpoint: str | None = typer.Option(None, help="Base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1 (instead of a local model)."),
    served_model: str | None = typer.Option(None, help="Model name to request from --endpoint."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="Environment variable holding the endpoint's API key."),
    concurrency: int = typer.Option(8, min=1, help="Endpoint only: most requests in flight at once."),
    retries: int = typer.Option(3, min=0, help="Endpoint only: retries per request (exponential backoff)."),
    device: str | None = typer.Option(None, help="Torch device for local models, e.g. cuda or cpu."),
    dtype: str | None = typer.Option(None, help="Torch dtype for local models, e.g. bfloat16 (default float32)."),
    threads: Threads = None,
    overwrite: bool = typer.Option(False, help="Discard earlier predictions in --out instead of resuming."),
    feature_cache: Path | None = typer.Option(
        None, help="Llama3-Med checkpoints: also keep the frozen encoder's image features in this folder, so later runs "
        "with the same encoder and scales skip encoding (the layout of training's feature cache)."
    ),
) -> None:
    """Zero-shot evaluation under a named protocol (prompts, decoding, token budget), batched; predictions stream to
    JSONL and a rerun resumes. The report names the protocol, anything changed from it, and each metric's ceiling."""
    from llama3med.eval.pipeline import evaluate
    from llama3med.eval.protocols import get_protocol, protocol_decoding, protocol_settings
    from llama3med.progress import ProgressDisplay

    set_threads(threads)

    specs = [s.strip() for s in benchmarks.split(",") if s.strip()]
    out = out or Path("eval-results") / (model.name if model else (served_model or "endpoint"))
    try:
        chosen = get_protocol(protocol)
        # GenerationSettings refuses what the option ranges let through (top_p 0)
        decoding = protocol_decoding(chosen, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
    except ValueError as error:
        raise fail(str(error), BAD_INPUT) from error
    given = [("--max-new-tokens", max_new_tokens), ("--temperature", temperature), ("--top-p", top_p)]
    command = ["llama3med", "eval", *(["--model", str(model)] if model else []), *(["--endpoint", endpoint] if endpoint else []),
               *(["--served-model", served_model] if served_model else []), "--benchmarks", ",".join(specs),
               *(["--data-root", str(data.data_root)] if data.data_root else []), "--out", str(out), "--batch-size", str(batch_size),
               "--protocol", chosen.name, "--seed", str(seed),
               *[item for option, value in given if value is not None for item in (option, str(value))],
               *(["--limit", str(limit)] if limit else []), *(["--prompts", str(prompts)] if prompts else []),
               *data.changed_options()]
    try:
        loaded = data.load(specs)
        for benchmark in loaded:
            console.print(f"[cyan]data:[/] {benchmark.describe()}", highlight=False)
            for mismatch in benchmark.check_counts():
                errors.print(f"[yellow]warning:[/] split size differs from the official count: {mismatch}")
        templates = chosen.templates(prompts)
        answerer = build_answerer(model, backend, endpoint, served_model, api_key_env, concurrency, retries, decoding, device, dtype)
        if feature_cache is not None:
            use_feature_cache(answerer, feature_cache)
        with ProgressDisplay(errors, unit="questions", sequential=True) as progress:
            tasks = {b.name: progress.add_task(b.name, total=len(b.limited(limit).questions)) for b in loaded}
            report = evaluate(answerer, loaded, templates, out, decoding=decoding, batch_size=batch_size, limit=limit,
                              model_dir=model if not endpoint else None, command=shlex.join(command), overwrite=overwrite,
                              on_batch=lambda name, n: progress.advance(tasks[name], n),
                              protocol=protocol_settings(chosen, decoding, templates, prompts))
    except (OSError, ValueError, RuntimeError) as error:
        resumable = (out / "predictions").is_dir()
        raise fail(f"{error}" + ("\n(predictions made so far are kept; rerun the same command to resume)" if resumable else "")) from error
    console.print((out / "report.md").read_text(encoding="utf-8"))
    console.print(f"[green]label:[/] {report['label']}; protocol {report['protocol']['name']}; files in {out}")
    from llama3med.eval.answerers import Llama3MedAnswerer

    if isinstance(answerer, Llama3MedAnswerer):
        stats = answerer.api.image_features.stats
        console.print(f"[cyan]vision encoder:[/] {stats.encoded} images encoded in {stats.encode_seconds:.1f} s "
                      f"({stats.encode_calls} calls); features reused {stats.memory_hits} times from memory, "
                      f"{stats.disk_hits} from disk", highlight=False)


def use_feature_cache(answerer: object, folder: Path) -> None:
    """`--feature-cache`: a Llama3-Med checkpoint keeps its frozen image features on disk under `folder` too."""
    from llama3med.eval.answerers import Llama3MedAnswerer

    if not isinstance(answerer, Llama3MedAnswerer):
        raise ValueError("--feature-cache needs a Llama3-Med checkpoint (the features of its frozen encoder are what is cached)")
    answerer.api.use_feature_cache(folder)


@option_groups(data=DataOptions)
def score_command(
    benchmark: str = typer.Option(..., help="vqa-rad, slake, pathvqa, or your own data set as PATH or NAME=PATH (the formats of eval --benchmarks)."),
    predictions: Path = typer.Option(
        ..., exists=True, dir_okay=False,
        help='JSONL with one {"id", "prediction"} per question, or a LLaVA-Med answers file ({"question_id", "text"}).',
    ),
    out: Path = typer.Option(..., help="JSON file to write the figures to."),
    limit: int | None = typer.Option(None, min=1, help="Score only the first N questions (as `eval --limit N` produced)."),
    *,
    data: DataOptions,
) -> None:
    """Score an existing predictions JSONL without loading any model (predictions from anywhere)."""
    from llama3med.eval.scoring import score_file

    try:
        [full] = data.load([benchmark])
        console.print(f"[cyan]data:[/] {full.describe()}", highlight=False)
        scores = score_file(full.limited(limit), predictions)
        console.print(f"[cyan]predictions:[/] {scores['source']['predictions_format']} ({predictions})", highlight=False)
    except (OSError, ValueError) as error:
        raise fail(str(error)) from error
    result = {"benchmarks": {full.name: {**scores, "official_count_mismatches": full.check_counts(), "limit": limit}}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    llava, strict = scores["llava_med"], scores["strict"]

    def show(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    console.print(
        f"{full.name}: LLaVA-Med open recall {show(llava['open_recall'])}, closed accuracy {show(llava['closed_accuracy'])}; "
        f"strict closed {show(strict['closed_accuracy'])}, open EM {show(strict['open_exact_match'])}, "
        f"open F1 {show(strict['open_f1'])}, BLEU-1 {show(scores['bleu1'])} "
        f"({scores['counts']['open']} open / {scores['counts']['closed']} closed) -> {out}"
    )


def register(app: typer.Typer) -> None:
    """Add `eval` and `score` to the CLI."""
    app.command("eval")(eval_command)
    app.command("score")(score_command)
