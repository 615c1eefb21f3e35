"""Stage-1 epoch time on the `small` preset: frozen-feature cache cold vs warm (target: warm <= 0.6 x cold).

- cold: empty cache; the epoch's time is encoding every image once (S2: 21 EfficientNet-Lite0 tiles per image at
  scales 224/448/896) plus the training loop reading the features;
- warm: the same run again; features are read from disk;
- off: no cache; the frozen encoder runs inside every step (reference).

The real `llama3med train` code path runs each time (`llama3med.train.run.train`) on real image–caption pairs
from `captions-sample/` under `--data-root` (default `$LLAMA3MED_DATA_ROOT`); model building and data checks are
excluded from the epoch time.

    .venv/bin/python bench/feature_cache.py --samples 32 --batch 8
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch
from common import add_data_root  # bench/ is on sys.path when a script in it runs

from llama3med.train.recipe import load_recipe
from llama3med.train.run import train


def epoch(captions: Path, work: Path, run: str, cache: str, samples: int, batch: int) -> dict[str, float]:
    data = [{"path": str(captions / "captions.jsonl"), "format": "caption", "image_root": str(captions / "images"), "max_samples": samples}]
    recipe = load_recipe("small-align", [
        f"data={json.dumps(data)}", f"output_dir={work / run}", f"feature_cache={cache}", f"feature_cache_dir={work / 'features'}",
        "training.num_train_epochs=1", f"training.per_device_train_batch_size={batch}", "training.save_steps=100000",
        "training.dataloader_num_workers=0", "training.logging_steps=1000",
    ])
    seconds = train(recipe).seconds
    return {"encode": seconds["feature_cache"], "train": seconds["train"], "epoch": seconds["feature_cache"] + seconds["train"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32, help="image–caption pairs in the epoch")
    parser.add_argument("--batch", type=int, default=8, help="per-device batch size")
    add_data_root(parser, "captions-sample/")
    args = parser.parse_args()
    captions = args.data_root / "captions-sample"
    if not captions.is_dir():
        raise SystemExit(f"caption data not found at {captions}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs = {
            "off (encoder in every step)": epoch(captions, work, "off", "false", args.samples, args.batch),
            "cold (encode once, then train)": epoch(captions, work, "cold", "true", args.samples, args.batch),
            "warm (features from disk)": epoch(captions, work, "warm", "true", args.samples, args.batch),
        }
    cold = runs["cold (encode once, then train)"]["epoch"]
    print(f"\n`small` preset, stage 1, {args.samples} samples, batch {args.batch}, torch {torch.__version__},"
          f" {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}\n")
    print("| cache | encoding (s) | training loop (s) | epoch (s) | epoch / cold |")
    print("| --- | --- | --- | --- | --- |")
    for name, t in runs.items():
        print(f"| {name} | {t['encode']:.1f} | {t['train']:.1f} | {t['epoch']:.1f} | {t['epoch'] / cold:.2f} |")


if __name__ == "__main__":
    main()
