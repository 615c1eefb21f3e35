"""`llama3med demo`: the main job on the embedded default (what `make demo` runs)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

console = Console()

SHARED_BENCHMARKS = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"


def demo(
    out: Path = typer.Option(Path("outputs/demo"), help="Where the model folder and reports are written."),
    data_root: Path = typer.Option(SHARED_BENCHMARKS, help="Benchmarks folder holding vqa-rad/ (for the example image)."),
) -> None:
    """Build the `small` preset (real pretrained parts, offline), save it, and answer a question about an image."""
    from llama3med.api import Llama3Med
    from llama3med.model.presets import build_preset

    model_dir = out / "model"
    with console.status("building the small preset (SmolLM2-135M-Instruct + EfficientNet-Lite0, multi-scale)"):
        model, processor = build_preset("small")
        model.save_pretrained(model_dir)
        processor.save_pretrained(model_dir)
    console.print(f"model folder: [bold]{model_dir}[/]")
    record_file = data_root / "vqa-rad" / "test.jsonl"
    if not record_file.is_file():
        raise typer.BadParameter(f"no VQA-RAD test set at {record_file}; pass --data-root")
    record = json.loads(record_file.read_text().splitlines()[0])
    image = data_root / "vqa-rad" / "images" / record["image"]
    api = Llama3Med.from_pretrained(model_dir)
    answer = api.chat(image, record["question"], max_new_tokens=48)
    console.print(f"image: {image}\nquestion: {record['question']}\n[bold]answer:[/] {answer}")
    console.print(f"reference answer: {record['answer']}  (untrained connector: the answer is not expected to be right)")


def register(app: typer.Typer) -> None:
    """Add `demo` to the CLI."""
    app.command()(demo)
