"""Benchmark: evaluation as `llama3med eval` runs it (grouped by image, batched, features reused) vs one
question per `generate` call (the peer projects' loop), on several benchmark slices in one run.

    .venv/bin/python bench/eval_batched_vs_loop.py [--slices pathvqa:300,vqa-rad] [--preset small | --model DIR]
        [--batch-size 16] [--max-new-tokens 64] [--threads N]

A slice is `NAME` (the whole test split) or `NAME:N` (its first N questions), read from `--data-root`.
Both arms use the same model, prompt templates and greedy decoding, and time everything after the model is
built, image loading included:

- loop: for each question in file order, load its image and answer it alone; nothing is kept between calls,
  so every question's image goes through the encoder;
- grouped: `llama3med.eval.runner.run_benchmark`, the code `eval` runs — questions grouped by image, batches of
  `--batch-size`, each image encoded once and its features reused, predictions written to a JSONL file.

Every answer must be identical in both arms (the script exits with status 1 otherwise). Prints one JSON
object per slice (questions/s of each arm, speed-up, encoder time and images encoded) and a Markdown table
with the machine and the load average before and after; results go to docs/PERFORMANCE.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import add_data_root  # bench/ is on sys.path when a script in it runs


def parse_slice(spec: str) -> tuple[str, int | None]:
    name, _, count = spec.partition(":")
    return name, int(count) if count else None


def load_avg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def run_slice(api_for, spec: str, args: argparse.Namespace) -> dict:
    from llama3med.eval.answerers import Llama3MedAnswerer
    from llama3med.eval.benchmarks import load_benchmark
    from llama3med.eval.runner import run_benchmark
    from llama3med.eval.templates import PromptTemplates
    from llama3med.generation import GenerationSettings
    from llama3med.io.images import load_image

    name, count = parse_slice(spec)
    benchmark = load_benchmark(name, args.data_root / name).limited(count)
    questions = benchmark.questions
    templates = PromptTemplates.load()
    decoding = GenerationSettings(max_new_tokens=args.max_new_tokens)

    loop = Llama3MedAnswerer(api_for(0), decoding)  # no feature memory: every call encodes its image
    start = time.perf_counter()
    loop_answers = [loop.answer([load_image(q.image)], [templates.render(q)])[0] for q in questions]
    loop_s = time.perf_counter() - start

    grouped = Llama3MedAnswerer(api_for(None), decoding)
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        predictions = run_benchmark(grouped, benchmark, templates, Path(scratch) / "predictions.jsonl", batch_size=args.batch_size)
        grouped_s = time.perf_counter() - start
    differing = [q.id for q, answer in zip(questions, loop_answers, strict=True) if predictions[q.id] != answer]
    return {
        "slice": spec,
        "questions": len(questions),
        "images": len({q.image_sha256() for q in questions}),
        "loop_s": loop_s,
        "grouped_s": grouped_s,
        "loop_questions_per_s": len(questions) / loop_s,
        "grouped_questions_per_s": len(questions) / grouped_s,
        "speedup": loop_s / grouped_s,
        "loop_encoder_s": loop.api.image_features.stats.encode_seconds,
        "loop_images_encoded": loop.api.image_features.stats.encoded,
        "grouped_encoder_s": grouped.api.image_features.stats.encode_seconds,
        "grouped_images_encoded": grouped.api.image_features.stats.encoded,
        "same_answers": not differing,
        "differing_ids": differing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", default="pathvqa:300,vqa-rad", help="Comma-separated NAME or NAME:N (first N questions).")
    parser.add_argument("--preset", default="small", help="Model preset to build in memory (tiny, small), without --model.")
    parser.add_argument("--model", type=Path, help="A saved Llama3-Med model folder instead of a preset.")
    parser.add_argument("--batch-size", type=int, default=16, help="Questions per generate call in the grouped arm (eval's default).")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="Longest answer in tokens (eval's default).")
    add_data_root(parser, "one folder per benchmark")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
    args = parser.parse_args()
    from llama3med.runtime import tune_cpu_allocator

    tune_cpu_allocator()  # as the `llama3med` command does, for both arms
    if args.threads:
        torch.set_num_threads(args.threads)

    from llama3med.api import Llama3Med
    from llama3med.model.image_feature_cache import DEFAULT_MAX_BYTES

    if args.model:
        base = Llama3Med.from_pretrained(args.model)
        model, processor = base.model, base.processor
    else:
        from llama3med.model.presets import build_preset

        model, processor = build_preset(args.preset)
    warm = Llama3Med(model, processor, feature_memory_bytes=0)
    warm.chat(None, "Warm-up.", max_new_tokens=2)  # allocator, kernels

    def api_for(memory_bytes: int | None) -> Llama3Med:
        """A fresh API on the one loaded model: its own (empty) feature memory, nothing carried between arms."""
        return Llama3Med(model, processor, DEFAULT_MAX_BYTES if memory_bytes is None else memory_bytes)

    load_before = load_avg()
    started = time.time()
    rows = []
    for spec in args.slices.split(","):
        rows.append(run_slice(api_for, spec.strip(), args))
        print(json.dumps(rows[-1]), flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, {torch.get_num_threads()} threads"
    print(f"\nmachine: {machine}; load average (1/5/15 min) before: {load_before}, after: {load_avg()}; "
          f"{(time.time() - started) / 60:.1f} min; model {args.model or args.preset}, batch {args.batch_size}, "
          f"max_new_tokens {args.max_new_tokens}\n")
    print("| slice | questions | images | loop (q/s) | grouped (q/s) | speed-up | encoder s (loop / grouped) | images encoded (loop / grouped) | same answers |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r['slice']} | {r['questions']} | {r['images']} | {r['loop_questions_per_s']:.3f} | {r['grouped_questions_per_s']:.3f} "
              f"| {r['speedup']:.2f} x | {r['loop_encoder_s']:.0f} / {r['grouped_encoder_s']:.0f} "
              f"| {r['loop_images_encoded']} / {r['grouped_images_encoded']} | {'yes' if r['same_answers'] else 'NO'} |")
    if not all(r["same_answers"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
