"""`llama3med build` and `llama3med info`: create a model folder from a preset; describe a model folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def build(
    preset: str = typer.Argument(..., help="Preset: tiny (random, for tests), small (SmolLM2-135M + EfficientNet-Lite0), llama3-med-8b."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (config, safetensors, processor)."),
    scales: str = typer.Option("", help="Comma-separated scales overriding the preset's, e.g. 224,448,896."),
    vision: str = typer.Option("clip", help="llama3-med-8b only: clip, siglip or pathology."),
    llm_path: Path | None = typer.Option(None, help="llama3-med-8b only: local Llama-3.1-8B-Instruct folder."),
    vision_path: Path | None = typer.Option(None, help="llama3-med-8b only: local vision encoder folder."),
) -> None:
    """Build a model from a preset and save it as a Hugging Face folder."""
    from llama3med.model.presets import build_preset

    overrides: dict = {"scales": [int(s) for s in scales.split(",")]} if scales else {}
    if preset == "llama3-med-8b":
        if llm_path is None:
            raise typer.BadParameter("llama3-med-8b needs --llm-path (weights cannot be downloaded here)")
        overrides.update(vision=vision, llm_path=llm_path, vision_path=vision_path, device="cpu")
    model, processor = build_preset(preset, **overrides)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    console.print(f"[green]saved[/] {preset} -> {out}")


def info(model: Path = typer.Argument(..., help="A Llama3-Med model folder.")) -> None:
    """Describe a model folder: encoder, scales, visual tokens, connector, LLM, parameter counts."""
    import torch

    from llama3med.model.configuration import Llama3MedConfig
    from llama3med.model.modeling import Llama3MedForConditionalGeneration

    config = Llama3MedConfig.from_pretrained(model)
    with torch.device("meta"):  # shapes only: counts parameters without reading the weights
        skeleton = Llama3MedForConditionalGeneration(config)
    table = Table(title=str(model), show_header=False)
    table.add_row("vision encoder", config.vision_config.model_type)
    table.add_row("scales (px)", " / ".join(map(str, config.scales)))
    table.add_row("tiles per image", str(sum((s // config.tile_size) ** 2 for s in config.scales)))
    table.add_row("visual tokens per image", f"{config.num_image_tokens} ({config.grid_size} x {config.grid_size})")
    table.add_row("connector", f"{config.connector_type}: {config.connector_input_size} -> {config.text_config.hidden_size}")
    table.add_row("language model", f"{config.text_config.model_type}, {config.text_config.num_hidden_layers} layers")
    for name, part in (("vision", skeleton.vision_tower), ("connector", skeleton.connector), ("LLM", skeleton.language_model)):
        table.add_row(f"parameters: {name}", f"{sum(p.numel() for p in part.parameters()) / 1e6:,.2f} M")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the model commands to the CLI."""
    app.command()(build)
    app.command()(info)
