"""Benchmark: batched multi-scale (S2) encoding vs the reference per-scale loop, and chunking's memory.

    .venv/bin/python bench/multiscale_encoding.py [--encoder efficientnet|vit] [--batch 4] [--repeats 5]

Each arm runs in a fresh subprocess so its peak resident memory (ru_maxrss) is its own. Results go to
docs/PERFORMANCE.md by hand, with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def build_encoder(kind: str):
    """(tower, scales): EfficientNet-Lite0 at 224/448/896 (the small preset) or a ViT-B/16-shaped CLIP at
    224/672/1344 (the paper's hierarchy), random weights: speed does not depend on the values."""
    from transformers import CLIPVisionConfig

    from llama3med.model.efficientnet_lite import EfficientNetLiteConfig
    from llama3med.model.vision_tower import build_vision_tower

    if kind == "efficientnet":
        return build_vision_tower(EfficientNetLiteConfig(), -2, None), [224, 448, 896]
    vit = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=224, patch_size=16)
    return build_vision_tower(vit, -2, None), [224, 672, 1344]


def run_arm(kind: str, arm: str, batch: int, repeats: int, chunk: int) -> dict:
    from llama3med.model.multiscale import multiscale_encode, multiscale_encode_per_scale

    torch.manual_seed(0)
    tower, scales = build_encoder(kind)
    images = torch.randn(batch, 3, scales[-1], scales[-1])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats + 1):  # first run warms up allocators and kernels
        start = time.perf_counter()
        if arm == "loop":
            out = multiscale_encode_per_scale(tower, images, scales)
        else:
            out = multiscale_encode(tower, images, scales, chunk)
        times.append(time.perf_counter() - start)
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    return {"arm": arm, "chunk": chunk, "median_s": statistics.median(times[1:]), "peak_extra_mb": peak_mb,
            "out_shape": list(out.shape), "checksum": float(out.double().sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", choices=["efficientnet", "vit"], default="efficientnet")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.arm:
        print(json.dumps(run_arm(args.encoder, args.arm, args.batch, args.repeats, args.chunk)))
        return
    tiles = None
    results = []
    for arm, chunk in (("loop", 0), ("batched", 0), ("batched", 16), ("batched", 4)):
        cmd = [sys.executable, __file__, "--encoder", args.encoder, "--batch", str(args.batch), "--repeats",
               str(args.repeats), "--threads", str(args.threads), "--arm", arm, "--chunk", str(chunk)]
        results.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
    _, scales = build_encoder(args.encoder)
    tiles = args.batch * sum((s // scales[0]) ** 2 for s in scales)
    loop = results[0]["median_s"]
    print(f"encoder={args.encoder} scales={scales} batch={args.batch} tiles={tiles} threads={args.threads} torch={torch.__version__}")
    print("| path | chunk (tiles/call) | median time (s) | time / loop | peak extra RSS (MB) | same output |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        same = abs(r["checksum"] - results[0]["checksum"]) <= 1e-3 * max(1.0, abs(results[0]["checksum"]))
        chunk = "all" if r["chunk"] == 0 else r["chunk"]
        print(f"| {r['arm']} | {chunk if r['arm'] == 'batched' else 'one call per scale'} | {r['median_s']:.3f} |"
              f" {r['median_s'] / loop:.2f} | {r['peak_extra_mb']:.0f} | {same} |")


if __name__ == "__main__":
    main()
