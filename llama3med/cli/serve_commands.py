"""`llama3med ask | chat | predict | serve | web`: use a model folder from the shell, over HTTP or in a browser."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from llama3med.cli.common import Threads, fail, option_groups, set_threads
from llama3med.generation import GenerationSettings
from llama3med.serve.limits import ServerLimits

console = Console(stderr=True)
DEFAULTS = ServerLimits()

ModelDir = Annotated[
    Path,
    typer.Option(
        "--model", "-m", envvar="LLAMA3MED_MODEL",
        help="A Llama3-Med model folder (config.json, weights, processor), or a LoRA adapter folder over one.",
    ),
]
Device = Annotated[str | None, typer.Option(help="torch device, e.g. cpu or cuda (default: cpu).")]
MaxNewTokens = Annotated[int, typer.Option(min=1, help="Most tokens to generate per answer.")]
Temperature = Annotated[float, typer.Option(min=0.0, max=2.0, help="Sampling temperature; 0 decodes greedily.")]
TopP = Annotated[float, typer.Option(min=0.01, max=1.0, help="Nucleus sampling mass (with --temperature > 0).")]
Stop = Annotated[list[str] | None, typer.Option("--stop", help="Stop generating at this string (repeatable).")]
Seed = Annotated[int | None, typer.Option(help="Random seed for sampling.")]
Window = Annotated[
    str | None,
    typer.Option(help="Intensity window for DICOM/NIfTI: lung, mediastinum, bone, brain, abdomen, minmax or CENTER,WIDTH."),
]
Frame = Annotated[int | None, typer.Option(min=0, help="Frame of a multi-frame image (DICOM cine, TIFF, GIF).")]
Slice = Annotated[int | None, typer.Option("--slice", min=0, help="Slice of a 3-D volume (NIfTI, DICOM).")]


def settings_from_options(
    max_new_tokens: MaxNewTokens = 256, temperature: Temperature = 0.0, top_p: TopP = 1.0, stop: Stop = None, seed: Seed = None
) -> GenerationSettings:
    """The decoding options (an option group of `ask`, `chat` and `predict`) as `Llama3Med.generate`'s settings
    (no `--stop` given: no stop strings). A temperature below the sampling minimum decodes greedily."""
    return GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop=stop or None, seed=seed)


def image_options(window: Window = None, frame: Frame = None, slice_index: Slice = None) -> dict[str, Any]:
    """The image options (an option group of `ask`, `chat` and `predict`) as keyword arguments for `load_image`;
    a bad `--window` is refused before the model loads."""
    from llama3med.io.intensity import parse_window

    try:
        parse_window(window)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--window") from None
    return {"window": window, "frame": frame, "slice_index": slice_index}


def check_model(model: Path) -> None:
    """Refuse a `--model` that is neither a model folder nor a LoRA adapter folder over one, before loading."""
    from llama3med.folders import ModelFolderError, resolve_model_folder

    try:
        resolve_model_folder(model)
    except ModelFolderError as error:
        raise typer.BadParameter(str(error), param_hint="--model") from None


def load_api(model: Path, device: str | None) -> Any:
    from llama3med.api import Llama3Med
    from llama3med.folders import ModelFolderError

    check_model(model)
    try:
        return Llama3Med.from_pretrained(model, device=device)
    except ModelFolderError as error:
        raise typer.BadParameter(str(error), param_hint="--model") from None


@dataclass(frozen=True)
class ModelChoice:
    """Which model answers and how it runs: an option group of `ask`, `chat` and `predict` (`option_groups`)."""

    model: ModelDir
    device: Device = None
    threads: Threads = None

    def load(self) -> Any:
        """Apply `--threads`, then load the model folder as `Llama3Med` (a bad `--model` is a usage error)."""
        set_threads(self.threads)
        return load_api(self.model, self.device)


def open_image(path: Path, options: dict[str, Any]) -> Any:
    """Load an image or exit with the loader's reason."""
    from llama3med.io.images import ImageLoadError, load_image

    try:
        return load_image(path, **options)
    except ImageLoadError as error:
        raise fail(f"{error.source}: {error.reason}") from None


@option_groups(model=ModelChoice, settings=settings_from_options, loading=image_options)
def ask(
    image: Annotated[Path, typer.Argument(help="Image file (PNG, JPEG, TIFF, DICOM, NIfTI, ...).")],
    question: Annotated[str, typer.Argument(help="The question about the image.")],
    model: ModelChoice,
    settings: GenerationSettings,
    loading: dict[str, Any],
) -> None:
    """Answer one question about one image (streamed to stdout)."""
    loaded = open_image(image, loading)
    api = model.load()
    for piece in api.stream_chat(loaded, question, settings=settings):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


CHAT_HELP = "Commands: /image PATH switches the image (history kept), /reset clears the history, /exit quits."


@option_groups(model=ModelChoice, settings=settings_from_options, loading=image_options)
def chat(
    image: Annotated[Path, typer.Argument(help="The image to talk about.")],
    model: ModelChoice,
    settings: GenerationSettings,
    loading: dict[str, Any],
) -> None:
    """Talk about an image interactively: multi-turn, streamed answers. /image PATH, /reset, /exit."""
    from llama3med.io.images import ImageLoadError, load_image
    from llama3med.serve.session import ChatSession

    session = ChatSession(model.load(), open_image(image, loading))
    print(f"Talking about {image}. {CHAT_HELP}", flush=True)
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return
        if line == "/reset":
            session.reset()
            print("(history cleared)", flush=True)
        elif line == "/image" or line.startswith("/image "):
            path = line[len("/image"):].strip()
            try:
                session.set_image(load_image(Path(path).expanduser(), **loading))
                print(f"(now talking about {path})", flush=True)
            except ImageLoadError as error:
                print(f"error: {error.source}: {error.reason}", flush=True)
        elif line.startswith("/"):
            print(f"unknown command {line.split()[0]}. {CHAT_HELP}", flush=True)
        else:
            print("assistant> ", end="", flush=True)
            try:
                for piece in session.ask(line, settings):
                    print(piece, end="", flush=True)
            except KeyboardInterrupt:
                print(" (interrupted)", end="")
            print(flush=True)


@option_groups(model=ModelChoice, settings=settings_from_options, loading=image_options)
def predict(
    input_path: Annotated[Path, typer.Option("--input", "-i", exists=True, dir_okay=False, help="Questions: JSONL with id, image, question.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Answers: JSONL, appended; ids already in it are skipped.")],
    model: ModelChoice,
    batch_size: Annotated[int, typer.Option(min=1, help="Questions answered per generate call.")] = 8,
    *,
    settings: GenerationSettings,
    loading: dict[str, Any],
    feature_cache: Annotated[
        Path | None,
        typer.Option(help="Also keep the frozen encoder's image features in this folder, so later runs with the same encoder skip encoding."),
    ] = None,
) -> None:
    """Answer a JSONL file of questions in batches, grouped by image; rerun to resume after an interruption."""
    from llama3med.serve.predict import PredictionInputError, predict_file, read_questions

    try:
        total = len(read_questions(input_path))
    except PredictionInputError as error:
        raise fail(str(error)) from None
    api = model.load()
    if feature_cache is not None:
        api.use_feature_cache(feature_cache)
    from llama3med.progress import ProgressDisplay

    with ProgressDisplay(console, unit="questions") as progress:
        task = progress.add_task("answering", total=total)
        try:
            answered, skipped = predict_file(
                api,
                input_path,
                out,
                batch_size=batch_size,
                image_options=loading,
                settings=settings,
                on_batch=lambda n: progress.advance(task, n),
            )
        except PredictionInputError as error:
            raise fail(f"{error} (answers so far are kept in {out}; rerun to resume)") from None
    typer.echo(f"answered {answered}, skipped {skipped} already in {out}", err=True)


def serve(
    model: ModelDir,
    host: Annotated[str, typer.Option(help="Address to bind; the default accepts local connections only.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    model_name: Annotated[str | None, typer.Option(help="Model id clients send (default: the folder's name).")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="LLAMA3MED_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1/* (env LLAMA3MED_API_KEY).")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="max_tokens when a request gives none.")] = 256,
    max_tokens: Annotated[int, typer.Option(min=1, help="Largest max_tokens a request may ask for.")] = DEFAULTS.max_tokens,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body (bytes).")] = DEFAULTS.max_body_bytes,
    max_image_bytes: Annotated[int, typer.Option(min=1, help="Largest image file (bytes, after base64 decoding).")] = DEFAULTS.max_image_bytes,
    max_image_pixels: Annotated[int, typer.Option(min=1, help="Largest image (width x height); refuses decompression bombs.")] = DEFAULTS.max_image_pixels,
    max_image_decompressed_bytes: Annotated[
        int, typer.Option(min=1, help="Most bytes a compressed image container (deflated DICOM, gzip NIfTI) may inflate to.")
    ] = DEFAULTS.max_image_decompressed_bytes,
    max_prompt_chars: Annotated[int, typer.Option(min=1, help="Most characters of text in a request's messages.")] = DEFAULTS.max_prompt_chars,
    max_prompt_tokens: Annotated[
        int | None, typer.Option(min=1, help="Most prompt tokens (default: context length minus max_tokens).")
    ] = None,
    max_concurrent_requests: Annotated[int, typer.Option(min=1, help="Requests in flight before new ones get a 429.")] = DEFAULTS.max_concurrent_requests,
    allow_text_only: Annotated[
        bool, typer.Option(help="Answer conversations without an image with the language model alone (off: such requests get a 400).")
    ] = False,
    batch_window_ms: Annotated[float, typer.Option(min=0.0, help="How long to collect concurrent requests into one batch.")] = 10.0,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Most requests per generate call (1 turns batching off).")] = 16,
    device: Device = None,
    threads: Threads = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level: critical, error, warning, info, debug.")] = "info",
) -> None:
    """Serve the model over an OpenAI-compatible HTTP API (POST /v1/chat/completions, GET /v1/models, /health)."""
    set_threads(threads)
    from llama3med.serve.openai_server import run_server

    limits = ServerLimits(
        max_body_bytes=max_body_bytes,
        max_image_bytes=max_image_bytes,
        max_image_pixels=max_image_pixels,
        max_image_decompressed_bytes=max_image_decompressed_bytes,
        max_tokens=max_tokens,
        max_prompt_chars=max_prompt_chars,
        max_prompt_tokens=max_prompt_tokens,
        max_concurrent_requests=max_concurrent_requests,
        require_image=not allow_text_only,
    )
    check_model(model)
    run_server(
        model,
        host=host,
        port=port,
        model_name=model_name,
        api_key=api_key,
        limits=limits,
        default_max_tokens=max_new_tokens,
        batch_window_s=batch_window_ms / 1000,
        max_batch_size=max_batch_size,
        device=device,
        log_level=log_level,
    )


def web(
    model: ModelDir,
    host: Annotated[str, typer.Option(help="Address to bind; the default accepts local connections only.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 7860,
    examples: Annotated[Path | None, typer.Option(file_okay=False, help="Folder of example images shown under the upload box.")] = None,
    max_new_tokens: MaxNewTokens = 256,
    temperature: Temperature = 0.0,
    top_p: TopP = 1.0,
    device: Device = None,
    threads: Threads = None,
) -> None:
    """Serve a Gradio web page: upload an image, chat about it, tune generation."""
    set_threads(threads)
    from llama3med.serve.web import run_web

    if examples is not None and not examples.is_dir():
        raise typer.BadParameter(f"{examples} is not a folder", param_hint="--examples")
    check_model(model)
    run_web(
        model,
        host=host,
        port=port,
        examples_dir=examples,
        device=device,
        generation=GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p),
    )


def register(app: typer.Typer) -> None:
    """Add the commands that use a model."""
    for command in (ask, chat, predict, serve, web):
        app.command()(command)
