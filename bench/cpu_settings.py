"""EfficientNet-Lite0 (the `small` preset's encoder) on CPU: glibc malloc thresholds x channels-last.

Each configuration runs in a fresh process (malloc settings cannot be undone inside one), times `--repeats`
calls on `--tiles` random 224 px tiles after one warm-up call, and reports seconds per call with the user and
system CPU time (system time is the page faults that the malloc settings remove). With `--before REV`, one more row: both settings
with the encoder of git revision REV, to compare the code before a change. Results: docs/PERFORMANCE.md.

    python bench/cpu_settings.py --threads 2 --tiles 16 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import unpack_revision  # bench/ is on sys.path when a script in it runs

CHILD = r"""
import json, resource, sys, time
import torch
settings = json.loads(sys.argv[1])
if settings["tuned_malloc"]:
    from llama3med.runtime import tune_cpu_allocator
    assert tune_cpu_allocator(), "malloc thresholds could not be set (not glibc, or MALLOC_* variables set)"
torch.set_num_threads(settings["threads"])
from llama3med.model.efficientnet_lite import EfficientNetLiteConfig, EfficientNetLiteModel
from llama3med.model.pretrained import efficientnet_lite0_weights
encoder = EfficientNetLiteModel(EfficientNetLiteConfig()).eval()
encoder.load_state_dict(efficientnet_lite0_weights())
tiles = torch.randn(settings["tiles"], 3, 224, 224, generator=torch.Generator().manual_seed(0))
if settings["channels_last"]:
    encoder.to(memory_format=torch.channels_last)
    tiles = tiles.contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    encoder(tiles)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(settings["repeats"]):
        encoder(tiles)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
import llama3med
print(json.dumps({"package": llama3med.__file__, "seconds_per_call": seconds / settings["repeats"],
                  "user_s": after.ru_utime - before.ru_utime, "system_s": after.ru_stime - before.ru_stime}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiles", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", help="A git revision whose encoder to time as well (both settings on).")
    args = parser.parse_args()
    configurations = [(tuned_malloc, channels_last, None) for tuned_malloc in (False, True) for channels_last in (False, True)]
    if args.before:
        configurations.append((True, True, args.before))
    rows = []
    # The children run in an empty folder (`python -c` puts the working directory first on sys.path); an older
    # revision's package is unpacked beside it and put on PYTHONPATH for its row only.
    with tempfile.TemporaryDirectory() as neutral, tempfile.TemporaryDirectory() as unpacked:
        for tuned_malloc, channels_last, revision in configurations:
            settings = {"tuned_malloc": tuned_malloc, "channels_last": channels_last, "threads": args.threads,
                        "tiles": args.tiles, "repeats": args.repeats}
            env = {**os.environ, "PYTHONPATH": str(unpack_revision(revision, Path(unpacked)))} if revision else None
            result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(settings)], check=True,
                                    capture_output=True, text=True, env=env, cwd=neutral)
            row = {**settings, "revision": revision or "this checkout", **json.loads(result.stdout.strip().splitlines()[-1])}
            if row["package"].startswith(unpacked) != bool(revision):
                raise SystemExit(f"the child for {row['revision']} imported {row['package']}")
            rows.append(row)
    base = rows[0]["seconds_per_call"]
    print("| code | glibc malloc | layout | s per call | user s | system s | speed-up |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['revision']} | {'tuned' if row['tuned_malloc'] else 'default'} | "
              f"{'channels-last' if row['channels_last'] else 'contiguous'} | {row['seconds_per_call']:.3f} | "
              f"{row['user_s']:.1f} | {row['system_s']:.1f} | {base / row['seconds_per_call']:.2f} x |")


if __name__ == "__main__":
    main()
