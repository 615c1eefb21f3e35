"""How fast the fine-detail probe is generated (one process, so one core: numpy and Pillow run single-threaded).

    .venv/bin/python bench/probe_generation.py --train 200 --test 100 --size 1024

Prints wall and CPU seconds, per image, and the size on disk. CPU time is the figure to compare on a busy
machine (wall time there includes waiting for a core).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from llama3med.experiments.probe.generate import generate_probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=200, help="training images")
    parser.add_argument("--test", type=int, default=100, help="test images")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="probe seed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        wall, cpu = time.perf_counter(), time.process_time()
        summary = generate_probe(
            Path(folder) / "probe", seed=args.seed, n_train=args.train, n_test=args.test, size=args.size
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        megabytes = sum(p.stat().st_size for p in summary.out_dir.rglob("*") if p.is_file()) / 1e6
    n = args.train + args.test
    print(
        f"{n} images of {args.size} px: {wall:.1f} s wall, {cpu:.1f} s CPU "
        f"({1000 * cpu / n:.0f} ms CPU per image), {megabytes:.0f} MB, "
        f"{summary.questions['train']} + {summary.questions['test']} questions"
    )


if __name__ == "__main__":
    main()
