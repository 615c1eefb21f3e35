"""Benchmark: batched evaluation (our `eval`) vs one question at a time (the peer projects' loop).

    .venv/bin/python bench/eval_batched_vs_loop.py [--preset small] [--questions 48] [--batch-size 16] [--threads N]

Both arms answer the same first N VQA-RAD test questions with the same model, prompt templates and greedy
decoding, through the same `Llama3MedAnswerer`; only the number of questions per `generate` call differs.
Images are decoded before timing (both arms need them). Prints questions per second for each arm, the
speed-up, and whether every answer is identical. Results go to docs/PERFORMANCE.md by hand, with the
command and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

SHARED_BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"


def timed_answers(answerer, images, prompts, batch_size: int) -> tuple[list[str], float]:
    start = time.perf_counter()
    answers: list[str] = []
    for first in range(0, len(prompts), batch_size):
        answers += answerer.answer(images[first : first + batch_size], prompts[first : first + batch_size])
    return answers, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", help="Model preset to build in memory (tiny, small).")
    parser.add_argument("--questions", type=int, default=48, help="First N VQA-RAD test questions.")
    parser.add_argument("--batch-size", type=int, default=16, help="Questions per generate call in the batched arm.")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="Longest answer in tokens.")
    parser.add_argument("--data-root", type=Path, default=SHARED_BENCHMARKS, help="Folder holding vqa-rad/.")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from llama3med.api import Llama3Med
    from llama3med.data.images import load_image
    from llama3med.eval.answerers import Decoding, Llama3MedAnswerer
    from llama3med.eval.benchmarks import load_benchmark
    from llama3med.eval.templates import PromptTemplates
    from llama3med.model.presets import build_preset

    questions = load_benchmark("vqa-rad", args.data_root / "vqa-rad").questions[: args.questions]
    templates = PromptTemplates.load()
    prompts = [templates.render(q) for q in questions]
    images = [load_image(q.image) for q in questions]
    model, processor = build_preset(args.preset)
    answerer = Llama3MedAnswerer(Llama3Med(model, processor), Decoding(max_new_tokens=args.max_new_tokens))
    answerer.answer(images[:2], prompts[:2])  # warm-up: allocator, kernels

    loop_answers, loop_s = timed_answers(answerer, images, prompts, 1)
    batched_answers, batched_s = timed_answers(answerer, images, prompts, args.batch_size)
    differing = [q.id for q, a, b in zip(questions, loop_answers, batched_answers, strict=True) if a != b]
    result = {
        "preset": args.preset,
        "questions": len(questions),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "loop_questions_per_s": len(questions) / loop_s,
        "batched_questions_per_s": len(questions) / batched_s,
        "speedup": loop_s / batched_s,
        "same_answers": not differing,
        "differing_ids": differing,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, {torch.get_num_threads()} threads",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
