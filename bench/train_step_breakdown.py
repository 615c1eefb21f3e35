"""Training step time vs the sum of its parts measured separately (target: overhead <= 10 %), `small` preset, stage 2.

On one batch of real VQA-RAD train samples (`vqa-rad/` under `--data-root`, default `$LLAMA3MED_DATA_ROOT`),
built by the training dataset and collator:
- step: `Llama3MedTrainer.training_step` — forward and backward of the whole model as training runs it;
- parts, each timed alone on the same batch: vision forward (frozen S2 encoder), connector forward + backward
  (with the gradient the LLM sends back), LLM forward + backward from input embeddings.
overhead = step / (vision + connector + LLM) - 1: the embedding merge, loss bookkeeping and Trainer plumbing.
The optimizer step is reported beside it (it is neither part of the step above nor of the parts).

    .venv/bin/python bench/train_step_breakdown.py --batch 8 --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from common import add_data_root  # bench/ is on sys.path when a script in it runs
from transformers import TrainingArguments

from llama3med.train.data.conversations import DataReport, DataSource, read_source
from llama3med.train.data.dataset import ConversationDataset, RightPaddingCollator, prepare_samples
from llama3med.train.model_setup import load_base, prepare_for_stage
from llama3med.train.recipe import load_recipe
from llama3med.train.trainer import Llama3MedTrainer


def median_seconds(run: Callable[[], None], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    add_data_root(parser, "vqa-rad/")
    args = parser.parse_args()
    rad = args.data_root / "vqa-rad"
    recipe = load_recipe("small-instruct", ["connector=null"])
    model, processor = load_base({"model": "small"})
    model = prepare_for_stage(model, recipe)
    source = DataSource(rad / "train.jsonl", "vqa", image_root=rad / "images", max_samples=args.batch)
    report = DataReport()
    samples = prepare_samples(read_source(source, report), processor, report, recipe.max_length)
    dataset = ConversationDataset(samples, processor, recipe.max_length)
    batch = RightPaddingCollator(processor.tokenizer.pad_token_id)([dataset[i] for i in range(len(dataset))])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Llama3MedTrainer(
            model=model, args=TrainingArguments(output_dir=tmp, report_to="none", use_cpu=True),
            module_learning_rates=recipe.learning_rates,
        )
        trainer.create_optimizer()
        trainer.current_gradient_accumulation_steps = 1  # set by the training loop in transformers 5; one step here

        def step() -> None:
            trainer.training_step(model, dict(batch))
            model.zero_grad(set_to_none=True)

        pixel_values = batch["pixel_values"]  # [B, 3, S, S]
        features = model.encode_images(pixel_values)  # [B, g*g, k*C]
        with torch.no_grad():
            embeds = model.embed_inputs(batch["input_ids"], image_features=features)  # [B, L, D]
            upstream = torch.randn_like(model.project_image_features(features))  # gradient the LLM sends back

        def vision() -> None:
            model.encode_images(pixel_values)

        def connector() -> None:
            model.project_image_features(features).backward(upstream)
            model.zero_grad(set_to_none=True)

        def llm() -> None:
            inputs = embeds.clone().requires_grad_(True)
            model.language_model(inputs_embeds=inputs, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss.backward()
            model.zero_grad(set_to_none=True)

        def optimizer_step() -> None:
            for p in model.parameters():
                if p.requires_grad:
                    p.grad = torch.zeros_like(p)
            trainer.optimizer.step()
            model.zero_grad(set_to_none=True)

        model.train()
        parts = {name: median_seconds(fn, args.repeats) for name, fn in
                 (("vision forward", vision), ("connector forward+backward", connector), ("LLM forward+backward", llm))}
        whole = median_seconds(step, args.repeats)
        optimizer = median_seconds(optimizer_step, args.repeats)
    total = sum(parts.values())
    tokens = int(batch["attention_mask"].sum())
    print(f"\n`small` preset, stage 2 (full LLM + connector), batch {args.batch} ({tokens} tokens, padded length"
          f" {batch['input_ids'].shape[1]}), torch {torch.__version__}, {torch.get_num_threads()} threads,"
          f" {platform.processor() or platform.machine()}, median of {args.repeats}\n")
    print("| measured | seconds |")
    print("| --- | --- |")
    for name, seconds in parts.items():
        print(f"| {name} | {seconds:.3f} |")
    print(f"| sum of parts | {total:.3f} |")
    print(f"| training step (Trainer.training_step) | {whole:.3f} |")
    print(f"| overhead = step / sum - 1 | {100 * (whole / total - 1):+.1f} % |")
    print(f"| optimizer step (AdamW, not in the above) | {optimizer:.3f} |")


if __name__ == "__main__":
    main()
