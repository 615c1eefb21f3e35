"""Start-up time of the `llama3med` command, which must not import torch or transformers before a command
needs them (target: `llama3med --help` <= 1.5 s on a quiet 2-core machine).

Each measurement is a fresh interpreter, timed from spawn to exit:
- `python -c pass` (the interpreter alone: the floor, and the unit of the ratios);
- `python -c "import llama3med"`;
- `python -m llama3med --help` and `python -m llama3med score --help` (what the `llama3med` script runs);
- with `--before REV`, the same two help screens from git revision REV of the package (unpacked with
  `git archive` into a temporary folder that comes first on PYTHONPATH), to compare with the code before a change.

The commands run round robin, so load from other jobs on the machine affects all of them alike; the median of
`--repeat` runs is reported, with the load average at the start (a busy machine slows every row).

    .venv/bin/python bench/startup.py --before 3730d94 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT, unpack_revision  # bench/ is on sys.path when a script in it runs


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds from spawn to exit. `cwd` is a neutral folder: `python -m` puts the working directory first on
    sys.path, which must not shadow the package under test."""
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="Runs of each command (the median is reported).")
    parser.add_argument("--before", help="A git revision to compare with, e.g. the commit before a change.")
    parser.add_argument("--out", type=Path, help="Also write the figures to this JSON file.")
    args = parser.parse_args()

    python = sys.executable
    base_env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    now_env = {**base_env, "PYTHONPATH": str(REPO_ROOT)}
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": ([python, "-c", "pass"], base_env),
        "import llama3med": ([python, "-c", "import llama3med"], now_env),
        "llama3med --help": ([python, "-m", "llama3med", "--help"], now_env),
        "llama3med score --help": ([python, "-m", "llama3med", "score", "--help"], now_env),
    }
    with tempfile.TemporaryDirectory() as scratch, tempfile.TemporaryDirectory() as neutral:
        if args.before:
            before_env = {**base_env, "PYTHONPATH": str(unpack_revision(args.before, Path(scratch)))}
            commands[f"llama3med --help ({args.before})"] = ([python, "-m", "llama3med", "--help"], before_env)
            commands[f"llama3med score --help ({args.before})"] = ([python, "-m", "llama3med", "score", "--help"], before_env)
        load = os.getloadavg()[0]
        for command, env in commands.values():  # warm the file cache once, untimed
            timed(command, env, Path(neutral))
        runs: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, (command, env) in commands.items():
                runs[name].append(timed(command, env, Path(neutral)))
    medians = {name: statistics.median(times) for name, times in runs.items()}
    floor = medians["python -c pass"]
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average {load:.2f} at the start; median of {args.repeat} runs\n")
    print("| command | median s | min s | x `python -c pass` |")
    print("| --- | ---: | ---: | ---: |")
    for name, times in runs.items():
        print(f"| `{name}` | {medians[name]:.2f} | {min(times):.2f} | {medians[name] / floor:.1f} |")
    if args.before:
        for screen in ("llama3med --help", "llama3med score --help"):
            print(f"\n`{screen}`: {medians[f'{screen} ({args.before})'] / medians[screen]:.1f}x faster than at {args.before}")
    if args.out:
        args.out.write_text(json.dumps({"load_average": load, "cpus": os.cpu_count(), "runs": runs, "medians": medians}, indent=2) + "\n")


if __name__ == "__main__":
    main()
