"""One training run: recipe -> data checks -> (feature cache) -> Trainer -> model folder + manifest + report.

The same code runs in one process or in every rank of `torchrun` / `accelerate launch` / `deepspeed`:
the Trainer does the distribution; data preparation runs on the main process first and is reused by
the others; the feature cache is filled by all ranks, each a shard.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from llama3med.train.data.conversations import DataReport, read_mixture
from llama3med.train.data.dataset import (
    ConversationDataset,
    RightPaddingCollator,
    TrainingSample,
    prepare_samples,
)
from llama3med.train.outputs import REPORT_FILE
from llama3med.train.recipe import Recipe

console = Console(stderr=True)


@dataclass
class TrainResult:
    """Where the model went, the report of the data, the logged losses and the wall time of each phase
    (`prepare`: data checks; `feature_cache`: encoding uncached images; `train`: the training loop)."""

    output_dir: Path
    report: DataReport
    losses: list[float]
    global_step: int
    seconds: dict[str, float]


def feature_cache_for(recipe: Recipe, model: Any, processor: Any) -> Any:
    """The recipe's feature cache for this model's encoder (None when the cache is off)."""
    if not recipe.use_feature_cache:
        return None
    from llama3med.folders import feature_cache_dir
    from llama3med.model.feature_cache import FeatureCache, encoder_fingerprint
    from llama3med.train.model_setup import gathered

    root = Path(recipe.feature_cache_dir) if recipe.feature_cache_dir else feature_cache_dir()
    dtype = getattr(torch, recipe.feature_cache_dtype) if recipe.feature_cache_dtype else None
    with gathered(model.vision_tower.parameters()):
        return FeatureCache(root, encoder_fingerprint(model, processor.image_processor), dtype)


def training_images(samples: list[TrainingSample]) -> list[tuple[str, Path]]:
    """The distinct training images as (sha256, path), sorted: the same list, in the same order, on every rank."""
    return [(sha, Path(path)) for sha, path in sorted({(s.image_sha256, str(s.conversation.image)) for s in samples
                                                        if s.image_sha256})]


def encode_image_files(model: Any, processor: Any, paths: list[Path]) -> torch.Tensor:
    """Frozen features [N, g*g, k*C] of image files, on the vision tower's device (call under inference mode)."""
    pixels = processor.image_processor(paths)["pixel_values"]  # [N, 3, S, S]
    return model.encode_images(pixels.to(next(model.vision_tower.parameters()).device))


def fill_feature_cache(cache: Any, model: Any, processor: Any, samples: list[TrainingSample], args: Any) -> None:
    """Encode every training image not yet cached; ranks split the work, then wait for each other."""
    from tqdm.auto import tqdm

    from llama3med.train.model_setup import gathered

    shard = training_images(samples)[args.process_index :: args.world_size]
    batch_size = max(1, args.per_device_train_batch_size)
    with gathered(model.vision_tower.parameters()), torch.inference_mode():
        if not any(hasattr(p, "ds_id") for p in model.vision_tower.parameters()):
            model.vision_tower.to(args.device)  # (ZeRO-3-partitioned parameters already live on the device)
        bar = tqdm(total=len(shard), desc="feature cache", unit="img", disable=not args.should_log or not shard)
        cache.fill(shard, lambda paths: encode_image_files(model, processor, paths), batch_size, progress=bar.update)
        bar.close()
    barrier(args)


STANDARDIZER_IMAGES = 1024  # training images the feature standardisation is fitted on, at most (evenly spread)


def fit_feature_standardizer(model: Any, processor: Any, samples: list[TrainingSample], cache: Any, args: Any) -> int:
    """Fit the connector's feature standardisation (`connector_input_norm: standardize`) on the training images'
    frozen features, when it has not been fitted before (a connector from stage 1 brings its own statistics).
    Features come from the feature cache when the recipe uses one, else from the encoder. Every rank fits on the
    same images, so the statistics agree without communication. Returns the images used (0: nothing to fit)."""
    standardizer = model.feature_standardizer
    if standardizer is None or bool(standardizer.fitted):
        return 0
    images = training_images(samples)
    if not images:
        raise ValueError("connector_input_norm is standardize, but the training data has no images to fit it on")
    step = max(1, -(-len(images) // STANDARDIZER_IMAGES))  # ceil: at most STANDARDIZER_IMAGES, spread over the set
    chosen = images[::step]
    batch_size = max(1, args.per_device_train_batch_size)

    def batches() -> Any:
        for start in range(0, len(chosen), batch_size):
            batch = chosen[start : start + batch_size]
            if cache is not None:
                yield torch.stack([cache.load(sha) for sha, _ in batch])  # [N, g*g, k*C]
            else:
                yield encode_image_files(model, processor, [path for _, path in batch]).cpu()

    from llama3med.train.model_setup import gathered

    with gathered(model.vision_tower.parameters()), torch.inference_mode():
        standardizer.fit(batches())
    return len(chosen)


def barrier(args: Any) -> None:
    """Wait for every rank (no-op in a single process)."""
    from accelerate import PartialState

    _ = args.device  # makes sure the distributed state is set up
    if args.deepspeed:
        import deepspeed

        # ZeRO-3 partitions weights while they load, before the Trainer starts DeepSpeed: its
        # communication layer must already know the process group (a no-op where accelerate did it).
        deepspeed.init_distributed(dist_backend=torch.distributed.get_backend() if torch.distributed.is_initialized() else None)
    PartialState().wait_for_everyone()


def print_summary(report: DataReport, output_dir: Path) -> None:
    """Records read, skipped (by reason), truncated and dropped: counts in a table, then the ids of each kind on
    lines of their own, never cut (a table column would shorten long ids with an ellipsis)."""
    table = Table(title="data summary", show_lines=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    listed: list[tuple[str, list[str]]] = [(f"skipped: {reason}", items) for reason, items in report.skipped.items()]
    listed += [("truncated (text only)", report.truncated), ("dropped: too long", report.dropped_too_long)]
    for source, count in report.read.items():
        table.add_row(f"read: {source}", str(count))
    for what, items in listed:
        table.add_row(what, str(len(items)))
    console.print(table)
    for what, items in listed:
        if items:
            more = f", ... and {len(items) - 20} more (all in {output_dir / REPORT_FILE})" if len(items) > 20 else ""
            console.print(f"  {what}: {', '.join(items[:20])}{more}", soft_wrap=True, highlight=False, markup=False)


def recap_line(report: DataReport, output_dir: Path) -> str:
    """One line restating the data summary after training: the counts, and where the ids are."""
    skipped = sum(len(items) for items in report.skipped.values())
    return (f"data: {sum(report.read.values())} records read, {skipped} skipped, {len(report.truncated)} truncated, "
            f"{len(report.dropped_too_long)} dropped as too long (ids in {output_dir / REPORT_FILE})")


def train(recipe: Recipe, *, resume: bool = False, strict: bool = False) -> TrainResult:
    """Run a recipe to the end; with `resume`, continue from the last complete checkpoint."""
    from transformers import TrainingArguments, set_seed

    from llama3med.train.model_setup import (
        base_spec,
        load_base,
        lora_base_folder,
        prepare_for_stage,
        save_lora_base,
    )
    from llama3med.train.outputs import manifest_entries, read_manifest, run_info, write_run_files
    from llama3med.train.trainer import Llama3MedTrainer, discard_interrupted_saves, last_complete_checkpoint

    recipe.check_data_files()  # before anything is built: a missing file's message names the setting to change
    output_dir = Path(recipe.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    last = last_complete_checkpoint(checkpoint_dir)
    if last is not None and not resume:
        raise FileExistsError(f"{checkpoint_dir} already holds checkpoints (last: {last.name}); pass --resume to continue or choose another output_dir")
    if resume:
        console.print(f"resuming from {last}" if last else f"--resume: no checkpoint in {checkpoint_dir}; starting from the beginning")
    # Created before the model so that DeepSpeed ZeRO-3 partitions the weights while they load.
    try:
        args = TrainingArguments(**recipe.training_arguments(checkpoint_dir))
    except TypeError as error:
        raise ValueError(f"recipe `training:` section: {error}") from error
    if args.gradient_checkpointing and args.gradient_checkpointing_kwargs is None:
        args.gradient_checkpointing_kwargs = {"use_reentrant": False}  # works with frozen inputs (stage 1)
    if "disable_tqdm" not in recipe.training and not sys.stderr.isatty():
        args.disable_tqdm = True  # a redrawn bar is one unreadable line in a log: progress lines come instead
    if args.should_save:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        discard_interrupted_saves(checkpoint_dir)
    barrier(args)

    # The Trainer seeds python, numpy and torch when it is created, after the model: seed them here too, so that
    # what is drawn before (LoRA's adapter initialisation in `prepare_for_stage`) follows the recipe's seed.
    # `load_base` seeds the model's own random initialisation (e.g. the `small` connector) from the spec.
    set_seed(recipe.seed)
    report = DataReport(strict=strict)
    conversations = read_mixture(recipe.sources, report, seed=recipe.seed)
    spec = base_spec(recipe)
    # `hf_deepspeed_config` exists on TrainingArguments only when `deepspeed` is set.
    model, processor = load_base(spec, recipe.quantization, getattr(args, "hf_deepspeed_config", None))
    if recipe.system_prompt is not None:
        processor.system_prompt = recipe.system_prompt or None
    model.use_special_tokens_of(processor.tokenizer)
    clock = time.perf_counter()
    with args.main_process_first(desc="checking images and tokenisation"):
        samples = prepare_samples(
            conversations, processor, report, recipe.max_length, recipe.truncation, image_index=checkpoint_dir / "image_scan.json"
        )
    seconds = {"prepare": time.perf_counter() - clock}
    clock = time.perf_counter()
    cache = feature_cache_for(recipe, model, processor)
    if cache is not None:
        fill_feature_cache(cache, model, processor, samples, args)
    seconds["feature_cache"] = time.perf_counter() - clock
    fitted_on = fit_feature_standardizer(model, processor, samples, cache, args)
    if fitted_on and args.should_log:
        console.print(f"feature standardisation fitted on {fitted_on} training images")
    base_folder = lora_base_folder(spec, output_dir) if recipe.lora else None
    if base_folder is not None and not Path(spec["model"]).is_dir() and args.should_save:
        save_lora_base(model, processor, base_folder)
    trainable = prepare_for_stage(model, recipe, args.gradient_checkpointing, str(base_folder) if base_folder else None)
    trainer = Llama3MedTrainer(
        model=trainable,
        args=args,
        train_dataset=ConversationDataset(samples, processor, recipe.max_length, recipe.truncation, cache),
        data_collator=RightPaddingCollator(processor.tokenizer.pad_token_id),
        processing_class=processor,
        module_learning_rates=recipe.learning_rates,
    )
    if args.should_log:
        print_summary(report, output_dir)
    clock = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(last) if last is not None else None)
    seconds["train"] = time.perf_counter() - clock
    trainer.save_model(str(output_dir))
    if args.should_save:
        inherited = [read_manifest(spec["model"]), read_manifest(spec["connector"])]
        seeds = {"training": args.seed, "data_order": args.data_seed if args.data_seed is not None else args.seed,
                 "initialisation": spec["seed"]}
        info = run_info(seeds, args.world_size, str(args.device))
        write_run_files(output_dir, recipe.to_dict(), report.to_dict(), [*inherited, manifest_entries(samples, {s.label: str(s.path) for s in recipe.sources})], info)
        console.print(recap_line(report, output_dir), soft_wrap=True, highlight=False, markup=False)  # the table scrolled away
    trainer.accelerator.wait_for_everyone()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return TrainResult(output_dir, report, losses, output.global_step, seconds)
