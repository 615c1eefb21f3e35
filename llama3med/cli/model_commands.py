"""`llama3med build` and `llama3med info`: create a model folder from a preset; describe a model folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from llama3med.cli.common import fail

console = Console()


PRESET_HELP = (
    "Preset: tiny (random, for tests); small (SmolLM2-135M + EfficientNet-Lite0); llama3-med-8b-authors (the Llama3-Med"
    " authors' setup: Llama-3.1-8B-Instruct + CLIP ViT-L/14-224 or H-optimus-0, scales 224/672/1344, 256 tokens,"
    " 46 encoder passes); llava-s2-8b, also called llama3-med-8b (LLaVA-S2's setup: CLIP ViT-L/14-336, scales"
    " 336/672/1008, 576 tokens, 14 passes). docs/MODEL.md compares them."
)


def build(
    preset: str = typer.Argument(..., help=PRESET_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (config, safetensors, processor)."),
    scales: str = typer.Option("", help="Comma-separated scales overriding the preset's, e.g. 224,448,896."),
    vision: str = typer.Option(
        "clip",
        help="8B presets: clip, h-optimus-0 (timm: pip install 'llama3med\\[pathology]'), or siglip (llava-s2-8b only)."
        " Ignored with --vision-path.",
    ),
    llm_path: Path | None = typer.Option(None, help="8B presets: local Llama-3.1-8B-Instruct folder (required)."),
    vision_path: Path | None = typer.Option(
        None,
        help="8B presets: local vision encoder folder (required): Hugging Face (CLIP, SigLIP, ...) or timm format"
        " (config.json with architecture + model_args, e.g. H-optimus-0). Its preprocessor_config.json, or a timm"
        " folder's pretrained_cfg, sets the image normalisation.",
    ),
    seed: int = typer.Option(0, help="Seed of the weights that start random: the connector (all of tiny's weights)."),
) -> None:
    """Build a model from a preset and save it as a Hugging Face folder; 8B weights load strictly from local folders."""
    import torch

    from llama3med.model.presets import PRESETS_8B, build_preset
    from llama3med.model.timm_vision import TimmUnavailableError
    from llama3med.model.weights import WeightLoadingError

    overrides: dict = {"scales": [int(s) for s in scales.split(",")]} if scales else {}
    if preset in PRESETS_8B:
        if llm_path is None or vision_path is None:
            raise typer.BadParameter(
                f"{preset} needs --llm-path and --vision-path (local folders: weights cannot be downloaded here; a"
                " model with a random encoder or LLM is not worth saving)"
            )
        for option, folder in (("--llm-path", llm_path), ("--vision-path", vision_path)):
            if not folder.is_dir():
                raise typer.BadParameter(f"{folder} is not a folder (weights are read from local folders only)", param_hint=option)
        overrides.update(vision=vision, llm_path=llm_path, vision_path=vision_path, device="cpu")
    if preset == "tiny":
        overrides["seed"] = seed  # tiny seeds its own random weights
    try:
        torch.manual_seed(seed)  # the same seed builds the same random connector (stage 1 starts from it)
        model, processor = build_preset(preset, **overrides)
    except (WeightLoadingError, TimmUnavailableError, OSError, ValueError) as error:
        raise fail(str(error)) from error
    model.save_pretrained(out)
    processor.save_pretrained(out)
    console.print(f"[green]saved[/] {preset} -> {out}")


def info(model: Path = typer.Argument(..., help="A Llama3-Med model folder, or a LoRA adapter folder over one.")) -> None:
    """Describe a model folder: encoder, scales, visual tokens, connector, LLM, parameter counts."""
    from llama3med.folders import ModelFolderError, read_json, resolve_model_folder

    try:
        folder = resolve_model_folder(model)
    except ModelFolderError as error:
        raise typer.BadParameter(str(error), param_hint="MODEL") from None
    import torch

    from llama3med.model.configuration import Llama3MedConfig
    from llama3med.model.modeling import Llama3MedForConditionalGeneration
    from llama3med.model.processing import Llama3MedImageProcessor

    described = folder.base or folder.path
    config = Llama3MedConfig.from_pretrained(described)
    images = Llama3MedImageProcessor.from_pretrained(described)
    with torch.device("meta"):  # shapes only: counts parameters without reading the weights
        skeleton = Llama3MedForConditionalGeneration(config)
    table = Table(title=str(model), show_header=False)
    if folder.is_adapter:
        adapter = read_json(folder.path / "adapter_config.json")
        table.add_row("LoRA adapter", f"r {adapter.get('r')}, alpha {adapter.get('lora_alpha')} over the base model {folder.base}")
    vision = config.vision_config
    table.add_row("vision encoder", f"{vision.model_type}" + (f" ({vision.architecture})" if hasattr(vision, "architecture") else ""))
    table.add_row("vision feature layer", str(config.vision_feature_layer))
    table.add_row("scales (px)", f"{' / '.join(map(str, config.scales))} (tile {config.tile_size})")
    table.add_row("encoder passes (tiles) per image", str(config.encoder_passes_per_image))
    table.add_row(
        "image normalisation",
        f"mean {tuple(round(m, 6) for m in images.image_mean)}, std {tuple(round(s, 6) for s in images.image_std)},"
        f" {images.resample}, {'padded to a square with the mean colour' if images.pad_to_square else 'stretched to a square'}"
        f" ({images.normalization_source or 'source not recorded'})",
    )
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
